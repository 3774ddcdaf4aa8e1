"""describe(fn), its renderers, the docstring "Shapes" section in every renderer, and the picture."""

import functools
import importlib
import json
import pydoc
import re
import sys
import textwrap
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array, Float, Int, PyTree

from shapedmap import batched, describe
from shapedmap._diagram import _PALETTE
from shapedmap._docs_cli import batched_functions, document_module
from shapedmap._face import strip_shapes_section, with_shapes_section
from shapedmap._plan import plan_of
from shapedmap.examples import EXAMPLES, message_passing, mm, mv, pairwise

SVG = "{http://www.w3.org/2000/svg}"


# -- per-example functions used below ------------------------------------------------------------


def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"], *, scale: float = 2.0) -> Float[Array, "out"]:
    """A linear layer for one example."""
    return scale * x @ w


layer = batched(linear, "batch", layouts={"w": "feat out"})


def mp(a: Float[Array, "n n"], f: Float[Array, "n feat"]) -> Float[Array, "n feat"]:
    return a @ f


any_batch = batched(mp, "*batch")
shared_graph = batched(mp, "#graph n n, graph n feat -> graph n feat")


def stats(x: Float[Array, "n"], k: int) -> tuple[Float[Array, ""], Float[Array, "n"]]:
    """Sum and scaled copy."""
    return x.sum() * k, x * k


tuple_result = batched(stats, "b n -> b, n b")


def copy(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return x


repeated = batched(copy, "n -> k=5 n")


def count(x: Int[Array, "n"]) -> Int[Array, ""]:
    return x.sum()


# -- describe ------------------------------------------------------------------------------------


def test_describe_message_passing_lists_layouts_dtypes_and_axes():
    contract = describe(message_passing)
    assert contract.name == "message_passing"
    assert contract.per_example == "message_passing"
    assert contract.module == "shapedmap.examples"
    assert contract.summary == "One round of message passing on one graph: each node sums its neighbours' features."
    assert contract.signature == "graph node node, graph node feat -> graph node feat"
    a, f = contract.parameters
    assert (a.name, a.batched, a.per_example, a.dtype, a.batch_axes) == (
        "a",
        "graph node node",
        "node node",
        "Float",
        {"graph": 0},
    )
    assert (f.name, f.batched, f.per_example, f.static, f.shared) == ("f", "graph node feat", "node feat", False, False)
    assert a.annotation == "Float[Array, 'node node']"
    (output,) = contract.outputs
    assert (output.name, output.batched, output.per_example, output.batch_axes) == (
        "return",
        "graph node feat",
        "node feat",
        {"graph": 0},
    )
    (graph,) = contract.batch_dims
    assert (graph.name, graph.depth, graph.axis_name, graph.size) == ("graph", 0, "graph", None)
    assert graph.in_axes == {"a": 0, "f": 0}
    assert graph.out_axes == {"return": 0}
    assert graph.vmap_arguments() == "in_axes=(0, 0), out_axes=0"
    assert not contract.per_call


def test_describe_static_and_shared_parameters():
    contract = describe(layer)
    x, w, scale = contract.parameters
    assert x.batch_axes == {"batch": 0} and not x.shared
    assert w.shared and w.batched == "feat out" and w.batch_axes == {}
    assert scale.static and scale.annotation == "float" and scale.kind == "keyword-only" and scale.default == "2.0"
    assert contract.batch_dims[0].in_axes == {"x": 0, "w": None}  # static parameters never reach vmap


def test_describe_nested_levels_are_outermost_first():
    contract = describe(pairwise, name="pairwise")
    assert contract.name == "pairwise" and contract.per_example == "concat"
    assert [(d.name, d.depth, d.in_axes, d.out_axes) for d in contract.batch_dims] == [
        ("i", 0, {"u": 0, "v": None}, {"return": 0}),
        ("j", 1, {"u": None, "v": 0}, {"return": 0}),
    ]
    assert contract.outputs[0].batch_axes == {"i": 0, "j": 1}


def test_describe_tuple_results_and_fixed_output_size():
    contract = describe(tuple_result)
    assert [o.name for o in contract.outputs] == ["return[0]", "return[1]"]
    assert contract.batch_dims[0].out_axes == {"return[0]": 0, "return[1]": 1}
    assert contract.batch_dims[0].vmap_arguments() == "in_axes=0, out_axes=(0, 1)"
    new_dim = describe(repeated).batch_dims[0]
    assert (new_dim.name, new_dim.size, new_dim.in_axes) == ("k", 5, {"x": None})
    assert new_dim.vmap_arguments() == "in_axes=None, out_axes=0, axis_size=5"


def test_describe_call_dependent_plans():
    contract = describe(any_batch)
    assert contract.per_call
    (dim,) = contract.batch_dims
    assert dim.name == "batch" and dim.variadic and dim.broadcastable and dim.axis_name is None
    assert dim.in_axes == {"a": 0, "f": 0}  # for one leading dim
    assert "any number of dims" in contract.to_markdown()
    graph = describe(shared_graph).batch_dims[0]
    assert graph.broadcastable and not graph.variadic and graph.axis_name == "graph"
    assert "`#graph`: an argument with size 1 there is shared" in describe(shared_graph).to_markdown()


def test_describe_a_batched_function_batched_again():
    contract = describe(mm, name="mm")
    assert contract.per_example_batched
    assert contract.summary == "Vector-vector product."  # mv's generated section is not the summary
    assert "itself made by `batched`" in contract.to_markdown()
    assert contract.parameters[1].per_example == "a" and contract.parameters[1].batched == "a c"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_contract_axes_agree_with_the_wrapper(name):
    """Cross-check with the core: the same in/out axes as ``fn.in_axes``/``fn.out_axes``."""
    function = EXAMPLES[name].function
    contract = describe(function)
    plan = plan_of(function)
    arrays = [plan.arguments[i].name for i in plan.array_arguments]
    for dim in contract.batch_dims:
        per_parameter = dict(zip([a.name for a in plan.arguments], function.in_axes[dim.name], strict=True))
        assert dim.in_axes == {name: per_parameter[name] for name in arrays}
        outs = tuple(dim.out_axes.values())
        assert function.out_axes[dim.name] == (outs if plan.returns_tuple else outs[0])


def test_describe_refuses_other_functions():
    with pytest.raises(TypeError, match=r"is not a function made by shapedmap\.batched"):
        describe(linear)


# -- renderers -----------------------------------------------------------------------------------


def test_to_dict_is_json_and_complete():
    data = describe(layer).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["signature"] == "batch feat, feat out -> batch out"
    assert [p["name"] for p in data["parameters"]] == ["x", "w", "scale"]
    assert data["parameters"][2]["static"] is True
    assert data["batch_dims"][0]["in_axes"] == {"x": 0, "w": None}
    assert data["per_call"] is False


def test_to_markdown_tables_render():
    markdown = pytest.importorskip("markdown")
    text = describe(message_passing).to_markdown()
    assert text.startswith("### `message_passing`\n")
    assert "| `a` | `graph node node` | `node node` | Float | `graph` (axis 0) |" in text
    assert '| `graph` | `"graph"` | `in_axes=(0, 0), out_axes=0` |' in text
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    assert html.count("<table>") == 2
    assert "<code>graph node node</code>" in html


def test_to_markdown_marks_static_and_shared():
    text = describe(layer).to_markdown(heading_level=2)
    assert text.startswith("## `linear`")
    assert "| `w` | `feat out` | `feat out` | Float | none: shared |" in text
    assert "| `scale` | static `float` |  |  | not mapped |" in text


def test_to_rst_is_valid_restructuredtext():
    docutils_core = pytest.importorskip("docutils.core")
    from docutils import nodes

    text = describe(pairwise, name="pairwise").to_rst()
    assert text.startswith("``pairwise``\n------------\n")
    tree = docutils_core.publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 2})
    assert len(list(tree.findall(nodes.table))) == 2
    literals = [node.astext() for node in tree.findall(nodes.literal)]
    assert "i j 2*f" in literals and "in_axes=(0, None), out_axes=0" in literals
    assert "i f, j f -> i j 2*f" in [node.astext() for node in tree.findall(nodes.literal_block)]


# -- the docstring section -----------------------------------------------------------------------

MESSAGE_PASSING_SECTION = """\
Shapes
------
- ``a``: ``graph node node`` (per example ``node node``)
- ``f``: ``graph node feat`` (per example ``node feat``)
- return: ``graph node feat`` (per example ``node feat``)
- vmap over ``graph``: ``in_axes=(0, 0), out_axes=0``"""


def test_shapes_section_follows_the_user_docstring():
    assert message_passing.__doc__ == (
        "One round of message passing on one graph: each node sums its neighbours' features.\n\n"
        + MESSAGE_PASSING_SECTION
    )
    assert describe(message_passing).shapes_section() == MESSAGE_PASSING_SECTION


def test_shapes_section_of_every_kind_of_parameter():
    assert layer.__doc__.splitlines() == [
        "A linear layer for one example.",
        "",
        "Shapes",
        "------",
        "- ``x``: ``batch feat`` (per example ``feat``)",
        "- ``w``: ``feat out``, shared (not mapped)",
        "- ``scale``: static, not mapped",
        "- return: ``batch out`` (per example ``out``)",
        "- vmap over ``batch``: ``in_axes=(0, None), out_axes=0``",
    ]
    assert tuple_result.__doc__.splitlines()[-3:] == [
        "- return[0]: ``b`` (per example scalar)",
        "- return[1]: ``n b`` (per example ``n``)",
        "- vmap over ``b``: ``in_axes=0, out_axes=(0, 1)``",
    ]
    assert pairwise.__doc__.splitlines()[-2:] == [
        "- vmap over ``i`` (outermost): ``in_axes=(0, None), out_axes=0``",
        "- vmap over ``j`` (innermost): ``in_axes=(None, 0), out_axes=0``",
    ]
    assert "- vmap over ``*batch``: any number of dims, broadcast" in any_batch.__doc__
    assert "an argument of size 1 there is shared" in shared_graph.__doc__
    assert repeated.__doc__.endswith("- vmap over ``k``: ``in_axes=None, out_axes=0, axis_size=5``")


def test_no_user_docstring_gives_the_section_alone():
    assert batched(count, "b").__doc__.startswith("Shapes\n------\n- ``x``: ``b n``")


def test_batched_again_has_one_section():
    assert mm.__doc__.count("Shapes\n------") == 1
    assert mm.__doc__.startswith("Vector-vector product.\n\nShapes")
    assert "vmap over ``c``" in mm.__doc__ and "vmap over ``b``" not in mm.__doc__
    assert strip_shapes_section(mv.__doc__) == "Vector-vector product."


def test_a_users_own_shapes_heading_is_kept():
    def f(x: Float[Array, "n"]) -> Float[Array, ""]:
        """Sum.

        Shapes
        ------
        Written by hand: x is a vector.
        """
        return x.sum()

    doc = batched(f, "b").__doc__
    assert "Written by hand: x is a vector." in doc
    assert doc.count("Shapes\n------") == 2


def test_help_shows_the_batched_signature_and_the_section():
    text = pydoc.render_doc(message_passing, renderer=pydoc.plaintext)
    assert (
        "message_passing(a: jaxtyping.Float[Array, 'graph node node'], f: jaxtyping.Float[Array, 'graph node feat'])"
        in text
    )
    assert "jaxlib" not in text
    assert textwrap.indent(MESSAGE_PASSING_SECTION, "    ") in text


@pytest.mark.filterwarnings("ignore:The mapping interface for autodoc options")  # inside napoleon
@pytest.mark.parametrize("custom_sections", [None, ["Shapes"]])
def test_sphinx_napoleon_renders_the_section_without_warnings(tmp_path, custom_sections):
    """A real Sphinx build, warnings as errors, with napoleon as users configure it."""
    application = pytest.importorskip("sphinx.application")
    (tmp_path / "conf.py").write_text(
        'extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]\n'
        + (f"napoleon_custom_sections = {custom_sections!r}\n" if custom_sections else "")
    )
    (tmp_path / "index.rst").write_text(
        "API\n===\n\n.. autofunction:: shapedmap.examples.message_passing\n\n"
        ".. autofunction:: shapedmap.examples.mm\n\n.. autofunction:: " + __name__ + ".layer\n"
    )
    app = application.Sphinx(
        str(tmp_path),
        str(tmp_path),
        str(tmp_path / "out"),
        str(tmp_path / "doctrees"),
        "text",
        warningiserror=True,
        status=None,
        freshenv=True,
    )
    app.build()
    text = (tmp_path / "out" / "index.txt").read_text()
    assert "message_passing(a: Float[Array, 'graph node node'], f: Float[Array, 'graph node feat'])" in text
    assert "jaxlib" not in text
    assert '* "a": "graph node node" (per example "node node")' in text
    assert '* vmap over "graph": "in_axes=(0, 0), out_axes=0"' in text
    assert '* "scale": static, not mapped' in text
    assert ("-[ Shapes ]-" in text) == bool(custom_sections)  # a rubric, or a subsection


@pytest.mark.parametrize("style", ["numpy", "google"])
def test_mkdocstrings_parsers_keep_the_section_as_markdown(style):
    """griffe (mkdocstrings' parser): NumPy style makes it an admonition, Google style keeps text."""
    griffe = pytest.importorskip("griffe")
    markdown = pytest.importorskip("markdown")
    sections = griffe.Docstring(message_passing.__doc__, parser=style).parsed
    if style == "numpy":
        admonition = sections[1]
        assert admonition.kind.value == "admonition" and admonition.title == "Shapes"
        body = admonition.value.description
    else:
        body = sections[0].value.split("Shapes\n------\n", 1)[1]
    html = markdown.markdown(body)
    assert html.count("<li>") == 4
    assert "<li><code>a</code>: <code>graph node node</code> (per example <code>node node</code>)</li>" in html


# -- the picture ---------------------------------------------------------------------------------


def _svg(fn, name=None):
    text = describe(fn, name=name).to_svg()
    return text, ET.fromstring(text)


def _texts(root):
    return [element.text for element in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_draws_valid_svg_with_every_dim(name):
    function = EXAMPLES[name].function
    _, root = _svg(function, name)
    assert root.tag == f"{SVG}svg"
    width, height = int(root.get("width")), int(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width} {height}"
    texts = _texts(root)
    contract = describe(function, name)
    for layout in [p.batched for p in contract.parameters if not p.static] + [o.batched for o in contract.outputs]:
        for token in layout.split():
            assert token in texts
    for element in root.iter(f"{SVG}text"):
        assert 0 <= float(element.get("x")) <= width and 0 <= float(element.get("y")) <= height


def test_svg_colours_batch_dims_and_draws_their_paths():
    _, root = _svg(pairwise, "pairwise")
    i, j = _PALETTE[0], _PALETTE[1]
    filled = [rect.get("fill") for rect in root.iter(f"{SVG}rect")]
    assert filled.count(i) == 2 + 1  # u's and the output's box, and the legend swatch
    assert filled.count(j) == 2 + 1
    paths = [path.get("stroke") for path in root.iter(f"{SVG}path")]
    assert sorted(paths) == sorted([i, j])  # u -> return along i, v -> return along j
    texts = _texts(root)
    read = re.sub(r",\s+", ", ", " ".join(texts))  # wrapped lines read as one
    assert 'i: jax.vmap(in_axes=(0, None), out_axes=0, axis_name="i")  (outermost)' in read
    assert "per example: concat(u: f, v: f) -> 2*f" in texts


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_picture_fits_a_phone(name):
    """The home page's picture was cut off on a 390 px screen: text wider than the boxes wraps at
    its commas, and the SVG shrinks to its container (its viewBox keeps the proportions)."""
    _, root = _svg(EXAMPLES[name].function, name)
    assert "max-width: 100%" in root.get("style") and "height: auto" in root.get("style")
    width = int(root.get("width"))
    for element in root.iter(f"{SVG}text"):  # no line runs past the right edge
        size = float(element.get("font-size"))
        if element.get("text-anchor") == "start":
            assert float(element.get("x")) + len(element.text) * size * 0.6 <= width, element.text
    if name == "message_passing":  # the home page's: on a 390 px screen it shrinks by ~0.85 at most
        assert width <= 430


def test_a_long_signature_goes_under_the_name():
    _, root = _svg(message_passing)
    texts = _texts(root)
    assert texts[:2] == ["message_passing", "graph node node, graph node feat -> graph node feat"]
    assert texts[2:4] == ["per example: message_passing(a: node node,", "  f: node feat) -> node feat"]


def test_svg_connects_each_input_to_each_output_with_the_dim():
    _, root = _svg(message_passing)
    assert len(list(root.iter(f"{SVG}path"))) == 2  # a and f, both into the one output
    _, root = _svg(tuple_result)
    assert len(list(root.iter(f"{SVG}path"))) == 2  # x into return[0] and return[1]


def test_svg_marks_shared_and_static_parameters():
    _, root = _svg(layer, "layer")
    texts = _texts(root)
    assert "shared: not mapped" in texts and "held static" in texts and "static float" in texts
    assert any(rect.get("stroke-dasharray") for rect in root.iter(f"{SVG}rect"))


def test_svg_escapes_text():
    def f(x: Float[Array, "n"]) -> Float[Array, "n+1"]:
        return jnp.concatenate([x, x[:1]])

    text, root = _svg(batched(f, "b"), "f<&>")  # a name with markup characters
    assert "f&lt;&amp;&gt;" in text
    assert "f<&>" in _texts(root)


# -- documenting modules -------------------------------------------------------------------------


def test_batched_functions_of_the_examples_module():
    examples = importlib.import_module("shapedmap.examples")
    found = batched_functions(examples)
    names = [name for _, name, _ in found]
    assert len(names) == len(set(names))
    assert {example.function for example in EXAMPLES.values()} <= {fn for _, _, fn in found}
    assert names.index("square_each") < names.index("message_passing") < names.index("mm")  # definition order


def test_one_discovery_for_the_docs_command_and_the_pytest_plugin():
    """Each function once, re-exports left to their module; the plugin asks for one module, no methods."""

    class Model:
        @batched("b")
        def __call__(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x

    module = types.ModuleType("discovered")
    module.totals = module.alias = batched(count, "b")
    module._private = batched(count, "c")
    module.mv = mv  # a re-export: shapedmap.examples made it and holds it
    module.Model, Model.__module__ = Model, "discovered"
    found = [name for _, name, _ in batched_functions(module)]
    assert found == ["totals", "_private", "Model.__call__"]
    assert [name for _, name, _ in batched_functions(module, submodules=False, methods=False)] == ["totals", "_private"]


def test_document_module_in_each_format():
    examples = importlib.import_module("shapedmap.examples")
    markdown = document_module(examples, "markdown")
    assert markdown.startswith("# Shapes of shapedmap.examples\n")
    assert "## `column_sums`" in markdown and "Maps the per-example function `sum_vector`." in markdown
    data = json.loads(document_module(examples, "json"))
    by_name = {entry["name"]: entry for entry in data["functions"]}
    assert by_name["column_sums"]["batch_dims"][0]["in_axes"] == {"x": 1}
    rst = document_module(examples, "rst")
    docutils_core = pytest.importorskip("docutils.core")
    docutils_core.publish_string(rst, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        document_module(examples, "yaml")


def test_document_a_package_and_its_submodules(tmp_path, monkeypatch):
    package = tmp_path / "shapes_pkg"
    (package / "sub").mkdir(parents=True)
    source = (
        "from jaxtyping import Array, Float\nfrom shapedmap import batched\n\n"
        "def total(x: Float[Array, 'n']) -> Float[Array, '']:\n    return x.sum()\n\n"
    )
    (package / "__init__.py").write_text(source + "totals = batched(total, 'b')\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text(
        source + "columns = batched(total, 'n c -> c')\nfrom shapes_pkg import totals\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("shapes_pkg")
    found = [(module_name, name) for module_name, name, _ in batched_functions(module)]
    assert found == [("shapes_pkg", "totals"), ("shapes_pkg.sub.deep", "columns")]  # totals once, where defined
    text = document_module(module)
    assert "## shapes_pkg.sub.deep" in text and "### `columns`" in text
    (package / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    with pytest.raises(ImportError, match=r"cannot import shapes_pkg\.broken: RuntimeError: no GPU here"):
        batched_functions(module)
    for name in [m for m in sys.modules if m.startswith("shapes_pkg")]:
        monkeypatch.delitem(sys.modules, name)


def test_describe_works_under_jit_and_does_not_call_the_function():
    calls = []

    def f(x: Float[Array, "n"]) -> Float[Array, ""]:
        calls.append(1)
        return x.sum()

    g = batched(f, "b")
    describe(g).to_svg()
    describe(g).to_markdown()
    assert calls == []
    assert jax.jit(g)(jnp.ones((2, 3))).shape == (2,)
    assert re.search(r"vmap over ``b``", g.__doc__)


def test_the_readme_shows_what_help_shows():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    shown = pydoc.render_doc(message_passing, renderer=pydoc.plaintext).splitlines()
    signature = next(line for line in shown if line.startswith("message_passing("))
    assert f"{signature}\n" in readme
    assert textwrap.indent(MESSAGE_PASSING_SECTION, "    ") in readme


def test_griffe_extension_documents_batched_functions_as_they_run():
    griffe = pytest.importorskip("griffe")
    from shapedmap.griffe_extension import BatchedFunctions

    for inspection in (False, True):  # mkdocstrings' static analysis, and its dynamic one
        module = griffe.load(
            "shapedmap.examples",
            extensions=griffe.load_extensions(BatchedFunctions),
            force_inspection=inspection,
            resolve_aliases=False,
        )
        pairwise_doc = module.members["pairwise"]  # an assignment in the source
        assert pairwise_doc.is_function
        assert [(p.name, p.annotation) for p in pairwise_doc.parameters] == [
            ("u", "Float[Array, 'i f']"),
            ("v", "Float[Array, 'j f']"),
        ]
        assert pairwise_doc.returns == "Float[Array, 'i j 2*f']"
        assert pairwise_doc.docstring.value == pairwise.__doc__
        assert module.members["message_passing"].docstring.value.endswith(MESSAGE_PASSING_SECTION)
        assert module.members["concat"].docstring.value == "Two feature vectors side by side."  # untouched


class Model:
    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, ""]:
        """Apply the model to one example."""
        return x.sum()


def test_describe_a_partial_and_a_method():
    def scaled(x: Float[Array, "n"], factor: float) -> Float[Array, "n"]:
        """Scale one vector."""
        return x * factor

    contract = describe(batched(functools.partial(scaled, factor=2.0), "b"))
    assert (contract.per_example, contract.summary) == ("scaled", "Scale one vector.")

    contract = describe(Model.apply)
    assert contract.parameters[0].static and contract.parameters[0].annotation == "unannotated"
    assert "| `self` | static |  |  | not mapped |" in contract.to_markdown()
    assert contract.per_example == "Model.apply" and contract.summary == "Apply the model to one example."


def test_svg_draws_a_dim_only_the_output_has():
    _, root = _svg(repeated, "repeated")
    (path,) = root.iter(f"{SVG}path")
    assert path.get("stroke-dasharray") and path.get("stroke") == _PALETTE[0]
    assert "new dim, axis_size=5" in _texts(root)


def test_describe_a_sharded_function():
    sharded = batched(mp, "graph", shard={"graph": "data"})  # the mesh comes at call time
    contract = describe(sharded)
    assert contract.batch_dims[0].mesh_axes == ("data",)
    assert contract.batch_dims[0].vmap_arguments() == "in_axes=(0, 0), out_axes=0, spmd_axis_name='data'"
    assert "`graph` is split over the mesh axis `data`" in contract.to_markdown()
    section = with_shapes_section(None, plan_of(sharded), {"graph": ("data",)})
    assert section.endswith("- vmap over ``graph``: ``in_axes=(0, 0), out_axes=0, spmd_axis_name='data'``")
    assert describe(message_passing).batch_dims[0].mesh_axes == ()


def test_pytrees_and_optional_arrays_say_so():
    def tree(p: PyTree[Float[Array, "n"]], bias: Float[Array, "n"] | None = None) -> PyTree[Float[Array, "n"]]:
        return p

    documented = batched(tree, "batch")
    assert documented.__doc__.splitlines()[2:5] == [
        "- ``p``: ``batch n`` on every leaf (per example ``n``)",
        "- ``bias``: ``batch n`` or None (per example ``n``)",
        "- return: ``batch n`` on every leaf (per example ``n``)",
    ]
    p, bias = describe(documented).parameters
    assert (p.pytree, p.annotation) == (True, "PyTree[Float[Array, 'n']]")
    assert (bias.optional, bias.default, bias.annotation) == (True, "None", "Float[Array, 'n'] | None")
