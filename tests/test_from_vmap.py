"""docs/from-vmap.md: every ``jax.vmap`` form beside its spec, each row run and compared.

The page's tables are ``shapedmap:same`` tables (docs/hooks/shapedmap_docs.py): the hook evaluates
both cells of each row and fails unless the shapedmap cell gives what the ``jax.vmap`` cell gives
(PyTree structure, and leaf by leaf shape, dtype and values). These tests run the page through the
hook without building the site, check that every row ran, and that the page covers every form.
"""

import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "from-vmap.md"
_Page = SimpleNamespace(file=SimpleNamespace(src_uri="from-vmap.md"))


def _hooks():
    pytest.importorskip("mkdocs", reason="the docs hooks need the docs extra: pip install '.[docs]'")
    spec = importlib.util.spec_from_file_location("shapedmap_docs_hooks", ROOT / "docs" / "hooks" / "shapedmap_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(markdown: str) -> list[list[str]]:
    """The body rows of the page's shapedmap:same tables, as cells (source or built page)."""
    hooks = _hooks()
    tables = re.findall(r"^\| form \|[^\n]*\n\|[- |]+\n((?:\|[^\n]*\n)+)", markdown, re.MULTILINE)
    return [hooks._cells(row) for table in tables for row in table.splitlines()]


@pytest.fixture(scope="module")
def built() -> str:
    return _hooks().on_page_markdown(PAGE.read_text(encoding="utf-8"), _Page, None, None)


def test_every_row_ran_and_gave_what_jax_vmap_gives(built):
    source = PAGE.read_text(encoding="utf-8")
    assert source.count("<!-- shapedmap:same -->") == 6
    rows = _rows(source)
    shown = _rows(built)
    assert len(rows) == 36
    assert [row[:3] for row in shown] == rows  # every row kept, in order, none dropped
    for row in shown:
        assert re.fullmatch(r"`[(\[{]?('?\w+'?: )?[a-z]+\d*\[[\d,]*\].*`", row[3]), row  # what both gave
    assert "<!-- shapedmap:same -->" not in built


@pytest.mark.parametrize(
    ("vmap_form", "spec"),
    [
        ("jax.vmap(sum_vector)(m)", 'batched(sum_vector, "b")(m)'),
        ("in_axes=1)", '"n b -> b"'),
        ("in_axes=-1)", '"n b -> b"'),
        ("in_axes=(-2, None)", '"m b n, n -> b m"'),
        ("in_axes=(None, 0))(w, m)", 'layouts={"w": None}'),
        ("in_axes=(0, None))(m, 3)", 'batched(power, "b")(m, 3)'),
        ("out_axes=1)", '"m n, b n -> m b"'),
        ("out_axes=-1)", '"b n, m -> n m b"'),
        ("out_axes=(0, None)", '"b n, n -> b, "'),
        ("jax.vmap(linear)(m, w=per_example_weights)", 'batched(linear, "b")(m, w=per_example_weights)'),
        ("partial(linear, w=weights)", 'layouts={"w": None})(m, w=weights)'),
        ("jnp.moveaxis(weights_n_b_m, 1, 0)", 'layouts={"w": "n b m"}'),
        ('in_axes=({"w": None, "b": 0}, 0)', 'layouts={"params": {"w": None, "b": "batch n"}}'),
        ('in_axes=({"a": 0, "b": 1},)', 'layouts={"pair": {"a": "batch n", "b": "n batch"}}'),
        ("in_axes=(None, 0)), in_axes=(0, None)", '"i f, j f -> i j 2*f"'),
        ("in_axes=(0, None)), in_axes=(None, 0)", '"i f, j f -> j i 2*f"'),
        ("in_axes=(None, 1), out_axes=1", 'batched(mv, "b a, a c -> b c")'),
        ('axis_name="b")(m)', 'batched(centred, "b")(m)'),
        ('spmd_axis_name="data"', 'shard={"b": "data"}'),
        ("axis_size=5", '"n -> copies=5 n"'),
        ("jax.grad(loss, has_aux=True)", 'batched(jax.grad(loss, has_aux=True), "b", layouts={"params": None})'),
        ("jax.vmap(slope)(m)", 'batched(slope, "b")(m)'),
        ("jax.grad(lambda p: jax.vmap(loss", "jax.grad(lambda p: per_example_loss"),
        ("jax.jit(jax.vmap(", "jax.jit(batched("),
        ("batch_size=2", 'chunk={"b": 2}'),
        ("jnp.vectorize(", '"*batch"'),
        ("jax.vmap(scale, in_axes=(0, None))", 'layouts={"x": "b ...", "w": None}'),
        ("in_axes=(-1, None), out_axes=-1", 'layouts={"x": "... b", "w": None}, out="... b"'),
        (
            "jax.vmap(functools.partial(masked_mean, mask=mask))",
            'batched(functools.partial(masked_mean, mask=mask), "h")',
        ),
        ("jax.random.split(key, 3))", 'layouts={"key": shapedmap.SplitKey()})(m, key)'),
    ],
    ids=lambda text: re.sub(r"[^\w=*-]+", "_", text).strip("_")[:40],
)
def test_the_page_pairs_each_vmap_form_with_its_spec(vmap_form, spec):
    rows = _rows(PAGE.read_text(encoding="utf-8"))
    assert any(vmap_form in row[1] and spec in row[2] for row in rows), (vmap_form, spec)


def test_a_row_whose_spec_is_wrong_fails_the_page():
    """The comparison is not vacuous: ``in_axes=1`` written as a leading batch dim is caught."""
    hooks = _hooks()
    from mkdocs.exceptions import PluginError

    source = PAGE.read_text(encoding="utf-8")
    wrong = source.replace(
        '`jax.vmap(sum_vector, in_axes=1)(m)` | `batched(sum_vector, "n b -> b")(m)`',
        '`jax.vmap(sum_vector, in_axes=1)(m)` | `batched(sum_vector, "b n -> b")(m)`',
    )
    assert wrong != source
    with pytest.raises(PluginError, match=r"row 2 \(an int\): .* the result: f32\[3\] is not f32\[4\]"):
        hooks.on_page_markdown(wrong, _Page, None, None)
