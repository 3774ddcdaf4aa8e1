"""The docs site: its build hooks, and a real ``mkdocs build --strict`` (warnings are errors)."""

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_hooks():
    pytest.importorskip("mkdocs", reason="building the docs needs the docs extra: pip install '.[docs]'")
    spec = importlib.util.spec_from_file_location("shapedmap_docs_hooks", ROOT / "docs" / "hooks" / "shapedmap_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_Page = SimpleNamespace(file=SimpleNamespace(src_uri="guide/page.md"))  # what the hook reads of a page


# -- the hooks -----------------------------------------------------------------------------------


def test_exec_blocks_run_in_order_and_show_what_they_print():
    hooks = _load_hooks()
    page = "Intro\n\n```python exec\nx = 40 + 2\nprint(x)\n```\n\nThen\n\n```python exec\nprint(x * 2)\n```\n"
    out = hooks.on_page_markdown(page, _Page, None, None)
    assert out == (
        "Intro\n\n```python\nx = 40 + 2\nprint(x)\n```\n\n```text\n42\n```\n\n\n"
        "Then\n\n```python\nprint(x * 2)\n```\n\n```text\n84\n```\n\n"
    )


def test_error_blocks_show_the_error_raised():
    hooks = _load_hooks()
    page = "```python exec error\nraise ValueError('the message\\nline two')\n```\n"
    out = hooks.on_page_markdown(page, _Page, None, None)
    assert '!!! failure "ValueError"' in out
    assert "    ValueError: the message\n    line two\n" in out
    assert out.startswith("```python\nraise ValueError")


def test_an_error_block_that_does_not_raise_fails_the_build():
    hooks = _load_hooks()
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match=r"guide/page\.md.*must raise"):
        hooks.on_page_markdown("```python exec error\nx = 1\n```\n", _Page, None, None)


def test_a_block_that_raises_fails_the_build_with_the_traceback():
    hooks = _load_hooks()
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match=r"(?s)starting 'y = 1'.*ZeroDivisionError"):
        hooks.on_page_markdown("```python exec\ny = 1\n1 / 0\n```\n", _Page, None, None)
    with pytest.raises(PluginError, match=r"unknown flag\(s\) \['hidden'\]"):
        hooks.on_page_markdown("```python exec hidden\nx = 1\n```\n", _Page, None, None)


def test_markdown_blocks_insert_their_output():
    hooks = _load_hooks()
    out = hooks.on_page_markdown("```python exec markdown\nprint('| a |\\n| - |')\n```\n", _Page, None, None)
    assert out == "| a |\n| - |\n\n"


def test_other_code_blocks_are_left_alone():
    hooks = _load_hooks()
    page = "```python\nraise SystemExit\n```\n\n    ```python exec\n    indented: not run\n    ```\n"
    assert hooks.on_page_markdown(page, _Page, None, None) == page


# -- the real build ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for package in ("mkdocs", "material", "mkdocstrings"):
        pytest.importorskip(package, reason="building the docs needs the docs extra: pip install '.[docs]'")
    target = tmp_path_factory.mktemp("site")
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml", "--site-dir", str(target)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    return target


def _text(site: Path, page: str) -> str:
    """The visible text of a built page."""
    raw = (site / page / "index.html").read_text(encoding="utf-8") if page else (site / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def test_the_site_builds_strict(site):
    for page in [
        "getting-started",
        "layouts",
        "from-vmap",
        "documenting",
        "errors",
        "reference/shapes",
        "reference/api",
    ]:
        assert (site / page / "index.html").is_file()


def test_the_error_catalogue_shows_the_errors_raised_at_build_time(site):
    from shapedmap.examples import message_passing

    text = _text(site, "errors")
    try:
        message_passing(__import__("jax").numpy.ones((5, 7, 7)), __import__("jax").numpy.ones((4, 7, 11)))
    except TypeError as error:
        first_line = str(error).splitlines()[0]
    assert first_line in text
    assert "SpecError: linear: the layout 'out feat' of parameter 'w' has the core dims in the order" in text
    assert text.count("ShapeError: ") >= 9 and text.count("SpecError: ") >= 7


def test_the_shape_reference_has_every_example(site):
    from shapedmap.examples import EXAMPLES

    raw = (site / "reference" / "shapes" / "index.html").read_text(encoding="utf-8")
    assert raw.count('role="img" aria-label="Shapes of ') == len(EXAMPLES)  # one picture each
    text = html.unescape(re.sub(r"<[^>]+>", "", raw))
    assert text.count("equals the naive Python loop: True") == len(EXAMPLES)
    assert "False" not in re.findall(r"equals the naive Python loop: (\w+)", text)
    assert 'jax.vmap(concat, in_axes=(None, 0), out_axes=0, axis_name="j")' in text


def test_the_api_reference_shows_batched_signatures_and_shapes(site):
    text = _text(site, "reference/api")
    assert "vmap over graph: in_axes=(0, 0), out_axes=0" in " ".join(text.split())
    assert "jaxlib" not in text
    assert '>>> mv = batched(vv, "b a, a -> b")' in text  # Example sections read as code


def test_the_vmap_page_ran_every_row(site):
    raw = (site / "from-vmap" / "index.html").read_text(encoding="utf-8")
    assert raw.count("both give (run at build)") == 6  # its six tables, each with the column the build adds
    assert raw.count("<table>") == 6
    assert "<code>f32[4,4,3]</code>" in raw  # out_axes=-1 as a trailing batch name: what both gave


def test_the_tutorial_ran(site):
    text = _text(site, "getting-started")
    assert "{'col': (1,)}" in text  # column_sums.in_axes, printed at build time
    assert "def batched_vv(x, y):" in text


# -- what a reader sees: the stylesheet and the rendered text ------------------------------------


def _css_rules(path: Path) -> dict[str, dict[str, str]]:
    """``selector -> {property: value}`` of a flat stylesheet (no @media), later rules winning."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = dict(
            (name.strip(), value.strip()) for name, value in (d.split(":", 1) for d in body.split(";") if ":" in d)
        )
        for selector in selectors.split(","):
            rules.setdefault(" ".join(selector.split()), {}).update(declarations)
    return rules


def test_code_and_error_output_wrap_clear_of_the_copy_button():
    """Long lines wrap instead of running off the edge (error boxes included), and leave room for the
    copy button Material puts in the top right corner of every block."""
    rules = _css_rules(ROOT / "docs" / "stylesheets" / "shapedmap.css")
    code = rules[".md-typeset pre > code"]
    assert code["white-space"] == "pre-wrap"
    assert code["overflow-wrap"] == "anywhere"
    assert "em" in code["padding-right"]  # wider than Material's own padding, which the button covers
    line = rules['.md-typeset pre > code > span[id^="__span-"]']  # one span per line: hanging indent
    assert line["display"] == "block" and line["padding-left"] == line["text-indent"].lstrip("-")
    keeps_columns = [s for s, d in rules.items() if d.get("white-space") == "pre"]
    assert keeps_columns == [".md-typeset .no-wrap pre > code"]  # only blocks marked { .no-wrap } scroll
    inline = rules[".md-typeset :not(pre) > code"]
    assert inline["display"] == "inline-block" and inline["max-width"] == "100%"  # a span moves whole
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert "stylesheets/shapedmap.css" in config
    assert re.search(r"pymdownx\.highlight:\n\s+line_spans: __span", config)


def test_the_built_pages_show_code_the_stylesheet_reaches(site):
    raw = (site / "errors" / "index.html").read_text(encoding="utf-8")
    assert '<link rel="stylesheet" href="../stylesheets/shapedmap.css">' in raw
    failure = raw[raw.index('<div class="admonition failure">') :]
    assert re.match(r'(?s)<div class="admonition failure">.*?<pre[^>]*>.*?<code><span id="__span-', failure)


def test_no_page_shows_a_literal_backtick_outside_code_blocks(site):
    """A backtick in the rendered prose is a broken inline code span (backticks inside backticks, or
    a span cut by a table cell)."""
    for page in sorted(site.rglob("index.html")):
        raw = page.read_text(encoding="utf-8")
        article = raw[raw.index("<article") : raw.index("</article>")]
        prose = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"(?s)<pre.*?</pre>", "", article)))
        stray = [line for line in prose.splitlines() if "`" in line]
        assert not stray, f"{page.relative_to(site)}: {stray}"
    layouts = (site / "layouts" / "index.html").read_text(encoding="utf-8")
    assert '<code>"b n, -&gt; b n"</code>' in layouts and "<td><code>graph node node</code></td>" in layouts


def test_the_performance_page_speaks_to_users(site):
    text = _text(site, "performance")
    for insider in ("seed 001", "seed workload", "seed example", "engineer"):
        assert insider not in text.lower()
    assert "Top: time per call against n" in text  # the chart's panels are stacked


# -- tables whose rows are checks (the From jax.vmap page) ---------------------------------------

_SAME_PAGE = (
    "```python exec\nimport jax\nimport jax.numpy as jnp\nx = jnp.arange(6.0).reshape(2, 3)\n```\n\n"
    "<!-- shapedmap:same -->\n| form | `jax.vmap` | other |\n| --- | --- | --- |\n"
    "| sums | `jax.vmap(jnp.sum)(x)` | `x.sum(axis=1)` |\n"
    "| a pair | `jax.vmap(lambda r: (r, r.sum()))(x)` | `(x, x.sum(1))` |\n"
)


def test_a_same_table_runs_every_row_and_shows_what_both_gave():
    hooks = _load_hooks()
    out = hooks.on_page_markdown(_SAME_PAGE, _Page, None, None)
    assert out.endswith(
        "| form | `jax.vmap` | other | both give (run at build) |\n| --- | --- | --- | --- |\n"
        "| sums | `jax.vmap(jnp.sum)(x)` | `x.sum(axis=1)` | `f32[2]` |\n"
        "| a pair | `jax.vmap(lambda r: (r, r.sum()))(x)` | `(x, x.sum(1))` | `(f32[2,3], f32[2])` |\n"
    )


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("`x.sum(axis=0)`", r"the result: f32\[3\] is not f32\[2\]"),
        ("`x.sum(axis=1) + 1`", r"the result: the values differ \(by up to 1\)"),
        ("`x.sum(axis=1).astype(jnp.float16)`", r"the result: f16\[2\] is not f32\[2\]"),
        ("`[x.sum(axis=1)]`", r"the PyTree structure PyTreeDef\(\[\*\]\) is not PyTreeDef\(\*\)"),
        ("`x.sum(axis=7)`", r"ValueError: axis 7 is out of bounds"),
        ("x.sum(axis=1)", r"its last two cells must each be one `code` span"),
    ],
    ids=["shape", "values", "dtype", "structure", "raises", "not-code"],
)
def test_a_same_table_row_that_differs_fails_the_build_naming_it(cell, why):
    hooks = _load_hooks()
    from mkdocs.exceptions import PluginError

    page = _SAME_PAGE.replace("`x.sum(axis=1)`", cell)
    with pytest.raises(
        PluginError, match=rf"(?s)guide/page\.md, a shapedmap:same table: 1 of 2 rows fail:\nrow 1 .*{why}"
    ):
        hooks.on_page_markdown(page, _Page, None, None)


def test_a_same_table_compares_pytrees_leaf_by_leaf_and_keys_by_their_data():
    hooks = _load_hooks()
    import jax
    import jax.numpy as jnp

    tree = {"w": jnp.ones((2, 3)), "b": (jnp.zeros(2), None)}
    assert hooks._difference(tree, jax.tree.map(lambda leaf: leaf + 0, tree)) is None
    changed = {"w": jnp.ones((2, 3)), "b": (jnp.ones(2), None)}
    assert hooks._difference(tree, changed) == "['b'][0]: the values differ (by up to 1)"
    keys = jax.random.split(jax.random.key(0), 3)
    assert hooks._difference(keys, jax.random.split(jax.random.key(0), 3)) is None
    assert "the values differ" in hooks._difference(keys, jax.random.split(jax.random.key(1), 3))
    assert hooks._difference(3, 3) is None and hooks._difference(3, 4) == "the result: 4 is not 3"
