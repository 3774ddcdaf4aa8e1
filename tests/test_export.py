"""``jax.export`` of a batched function with symbolic shapes, for every spec form.

Each case exports ``jax.jit(batched)`` with a symbolic batch (and symbolic core dims where the
form has them), checks that ``in_avals``/``out_avals`` keep the symbols, and calls the exported
function on concrete inputs of two different sizes, against the hand-written ``jax.vmap``.

Symbolic sizes are compared as JAX compares them (docs/scaling.md, "Exporting with symbolic
shapes"): two sizes JAX proves equal (``b`` and ``b``, ``n + n`` and ``2*n``) agree; two it
proves different (``n`` and ``n + 1``) or can decide neither way are a ``ShapeError``, for
arguments and results alike, as ``jax.vmap`` and jaxtyping refuse them: two arguments whose batch
dims are the distinct symbols ``a`` and ``b``, or a result ``x[3:]`` (JAX's size ``n - min(n, 3)``)
annotated ``"n-3"`` — which the constraint ``n >= 3`` decides (tests/test_silent_results.py).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jaxtyping import Array, Float

from shapedmap import ShapeError, batched


def plus_one(x: Float[Array, "n"]) -> Float[Array, "n+1"]:
    return jnp.concatenate([x, x[:1]])


def doubled(x: Float[Array, "n"]) -> Float[Array, "2*n"]:
    return jnp.concatenate([x, 2 * x])


def outer(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n*m"]:
    return jnp.outer(x, y).reshape(-1)


def scale(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return 2 * x


def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"]) -> Float[Array, "out"]:
    return x @ w


def matmul(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return x @ y


def add(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
    return x + y


def tiled(x: Float[Array, "n"]) -> Float[Array, "k=5 n"]:
    return jnp.broadcast_to(x, (5, x.shape[0]))


def repeated(x: Float[Array, "n"], times: int) -> Float[Array, "{times}*n"]:
    return jnp.tile(x, times)


def trimmed(x: Float[Array, "n"]) -> Float[Array, "{x.shape[0]}-1"]:
    return x[1:]


def shifted(x: Float[Array, "n"], offset: float) -> Float[Array, "n"]:
    return x + offset


def dropped(x: Float[Array, "n"]) -> Float[Array, "n-3"]:
    return x[3:]  # JAX's size: n - min(n, 3), which it proves is n - 3 where n >= 3


@dataclass(frozen=True)
class Case:
    """One spec form: the batched function, its hand-written vmap, and the shapes to export and call.

    ``specs`` are the symbolic argument shapes; ``results`` the symbolic result shapes the export
    must give; ``sizes`` the values of the symbols in each concrete call (two calls);
    ``constraints`` the ``jax.export`` constraints of the symbols.
    """

    name: str
    function: Callable[..., Any]
    by_hand: Callable[..., Any]
    specs: tuple[str, ...]
    results: tuple[str, ...]
    sizes: tuple[dict[str, int], dict[str, int]]
    statics: dict[str, Any] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()


CASES = [
    Case(
        "named batch, n+1",
        batched(plus_one, "batch"),
        jax.vmap(plus_one),
        ("b, n",),
        ("b, n + 1",),
        ({"b": 3, "n": 4}, {"b": 5, "n": 2}),
    ),
    Case(
        "named batch, 2*n",
        batched(doubled, "batch"),
        jax.vmap(doubled),
        ("b, n",),
        ("b, 2*n",),
        ({"b": 2, "n": 3}, {"b": 6, "n": 1}),
    ),
    Case(
        "named batch, n*m",
        batched(outer, "batch"),
        jax.vmap(outer),
        ("b, n", "b, m"),
        ("b, n*m",),
        ({"b": 2, "n": 3, "m": 4}, {"b": 4, "n": 1, "m": 2}),
    ),
    Case(
        "non-leading batch axis, out_axes 0",
        batched(scale, "n b -> b n"),
        jax.vmap(scale, in_axes=1, out_axes=0),
        ("n, b",),
        ("b, n",),
        ({"b": 3, "n": 2}, {"b": 1, "n": 5}),
    ),
    Case(
        "shared argument",
        batched(linear, "batch", layouts={"w": "feat out"}),
        jax.vmap(linear, in_axes=(0, None)),
        ("b, f", "f, 4"),
        ("b, 4",),
        ({"b": 3, "f": 2}, {"b": 5, "f": 6}),
    ),
    Case(
        "*batch, two symbolic batch dims, one broadcast",
        batched(matmul, "*batch"),
        jax.vmap(jax.vmap(matmul), in_axes=(0, None)),
        ("b, c, 2, 3", "c, 3, 4"),
        ("b, c, 2, 4",),
        ({"b": 2, "c": 3}, {"b": 4, "c": 1}),
    ),
    Case(
        "#graph, a shared example of size 1",
        batched(add, "#graph"),
        lambda x, y: jax.vmap(add, in_axes=(0, None))(x, y[0]),
        ("b, n", "1, n"),
        ("b, n",),
        ({"b": 3, "n": 2}, {"b": 5, "n": 4}),
    ),
    Case(
        "fixed-size result dim",
        batched(tiled, "batch"),
        jax.vmap(tiled),
        ("b, n",),
        ("b, 5, n",),
        ({"b": 2, "n": 3}, {"b": 3, "n": 1}),
    ),
    Case(
        "f-string dim of a static",
        batched(repeated, "batch"),
        jax.vmap(repeated, in_axes=(0, None)),
        ("b, n",),
        ("b, 3*n",),
        ({"b": 2, "n": 3}, {"b": 4, "n": 2}),
        statics={"times": 3},
    ),
    Case(
        # jaxtyping puts a field's value in as text: a symbolic size reads as its symbols, so this
        # works where the symbols are the dims' own names (here 'n')
        "f-string dim of a shape",
        batched(trimmed, "batch"),
        jax.vmap(trimmed),
        ("b, n",),
        ("b, n - 1",),
        ({"b": 2, "n": 3}, {"b": 4, "n": 5}),
    ),
    Case(
        "static argument",
        batched(shifted, "batch"),
        jax.vmap(shifted, in_axes=(0, None)),
        ("b, n",),
        ("b, n",),
        ({"b": 3, "n": 2}, {"b": 1, "n": 4}),
        statics={"offset": 1.5},
    ),
    Case(
        "result size a constraint decides (n >= 3)",
        batched(dropped, "batch"),
        jax.vmap(dropped),
        ("b, n",),
        ("b, n - 3",),
        ({"b": 2, "n": 5}, {"b": 3, "n": 7}),
        constraints=("n >= 3",),
    ),
]


def symbolic(specs: tuple[str, ...], scope: export.SymbolicScope) -> list[tuple[Any, ...]]:
    return [export.symbolic_shape(spec, scope=scope) for spec in specs]


def concrete(shape: tuple[Any, ...], sizes: dict[str, int]) -> tuple[int, ...]:
    """A symbolic shape with its symbols given values (``b, n + 1`` with b=3, n=4: (3, 5)).

    JAX writes a symbolic size as Python arithmetic (``2*n + 1``, ``n - min(n, 3)``): it is evaluated.
    """
    return tuple(eval(str(size), {"min": min}, dict(sizes)) for size in shape)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_exported_call_equals_the_hand_written_vmap(case: Case) -> None:
    scope = export.SymbolicScope(case.constraints)
    shapes = symbolic(case.specs, scope)
    specs = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
    statics = tuple(case.statics)
    exported = export.export(jax.jit(case.function, static_argnames=statics))(*specs, **case.statics)
    assert [aval.shape for aval in exported.in_avals] == shapes
    assert [aval.shape for aval in exported.out_avals] == symbolic(case.results, scope)
    rng = np.random.default_rng(0)
    for sizes in case.sizes:
        arguments = [rng.standard_normal(concrete(shape, sizes)).astype(np.float32) for shape in shapes]
        got = exported.call(*arguments)
        expected = case.by_hand(*arguments, *case.statics.values())
        assert got.shape == expected.shape == concrete(symbolic(case.results, scope)[0], sizes)
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6)


def test_a_leading_batch_of_any_rank_exports_with_ellipsis_shapes() -> None:
    """``"*batch"`` with ``symbolic_args_specs(..., "b, ...")``: the rest of each shape from an example."""
    function = batched(matmul, "*batch")
    examples = (np.ones((5, 2, 3), np.float32), np.ones((5, 3, 4), np.float32))
    specs = export.symbolic_args_specs(examples, ["b, ...", "b, ..."])
    exported = export.export(jax.jit(function))(*specs)
    (b,) = export.symbolic_shape("b", scope=specs[0].shape[0].scope)
    assert exported.out_avals[0].shape == (b, 2, 4)
    rng = np.random.default_rng(1)
    for size in (1, 6):
        x, y = rng.standard_normal((size, 2, 3), np.float32), rng.standard_normal((size, 3, 4), np.float32)
        np.testing.assert_allclose(exported.call(x, y), jax.vmap(matmul)(x, y), rtol=1e-6)


def export_with(function: Callable[..., Any], *specs: str) -> None:
    scope = export.SymbolicScope()
    shapes = symbolic(specs, scope)
    export.export(jax.jit(function))(*(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes))


def test_batch_dims_of_distinct_symbols_are_refused_naming_the_parameter_and_the_dim() -> None:
    """JAX cannot prove ``a == b``; ``jax.vmap`` refuses such sizes, and so does shapedmap, by name."""
    message = (
        r"^add: dimension 'batch' has size a in argument 'x' \(axis 0 of f32\[a,3\]\)\n"
        r"but size b in argument 'y' \(axis 0 of f32\[b,3\]\)\n"
        r"  argument 'y' has layout 'batch n': expected \(batch=a, n=3\), got f32\[b,3\]\n"
        r"  \(JAX cannot prove these symbolic sizes equal"
    )
    with pytest.raises(ShapeError, match=message):
        export_with(batched(add, "batch"), "a, 3", "b, 3")
    with pytest.raises(ValueError, match="vmap got inconsistent sizes"):  # what jax.vmap itself does
        export_with(jax.vmap(add), "a, 3", "b, 3")


def test_sizes_jax_proves_different_are_a_shape_error_without_the_note() -> None:
    with pytest.raises(ShapeError, match=r"^add: dimension 'n' has size n in argument 'x'") as raised:
        export_with(batched(add, "batch"), "b, n", "b, n + 1")
    assert "but size n + 1 in argument 'y'" in str(raised.value)
    assert "cannot prove" not in str(raised.value)


def test_a_result_that_breaks_its_expression_symbolically_is_named() -> None:
    """``2*n + 1`` is certainly not ``n + 1`` (``n >= 1``). (``2*n`` would not be: both are 2 at n=1.)"""

    def wrong(x: Float[Array, "n"]) -> Float[Array, "n+1"]:
        return jnp.concatenate([x, x, x[:1]])

    message = (
        r"^wrong: dimension 'n\+1' of layout 'batch n\+1' should be n \+ 1 \(n=n from argument 'x' "
        r"\(axis 1 of f32\[b,n\]\)\),\nbut the return value \(axis 1 of f32\[b,2\*n \+ 1\]\) has 2\*n \+ 1"
    )
    with pytest.raises(ShapeError, match=message):
        export_with(batched(wrong, "batch"), "b, n")


def test_a_symbolic_size_where_the_annotation_fixes_one_is_refused() -> None:
    def project(x: Float[Array, "feat"], w: Float[Array, "feat 4"]) -> Float[Array, "4"]:
        return x @ w

    message = (
        r"^project: dimension 4 of layout 'feat 4' must have size 4, but argument 'w' \(axis 1 of f32\[f,k\]\) "
        r"has k\n  \(JAX cannot prove these symbolic sizes equal"
    )
    with pytest.raises(ShapeError, match=message):
        export_with(batched(project, "batch", layouts={"w": "feat 4"}), "b, f", "f, k")
