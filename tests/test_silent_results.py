"""Results that came back wrong without an error (issue 21), and the class checks beside them.

* Symbolic sizes (B10): a result size JAX cannot prove equal to its annotation is a ``ShapeError``
  (docs/scaling.md, "Exporting with symbolic shapes"), as ``jax.vmap(jaxtyped(fn))`` refuses it.
* An object that states its own shape (distrax#239): after batching, its stated shape must
  account for the batch dims its arrays gained (docs/architecture.md, Guarantees: results).
* A ``PyTree[Params]`` argument that is not made of ``Params`` (B11), a result that is not its
  annotated class (B12).

The silent ones are tested eagerly and under ``jax.jit``; every message by its text.
"""

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from beartype import beartype
from jax import export
from jaxtyping import Array, Float, jaxtyped

from shapedmap import ShapeError, batched

# -- B10: symbolic sizes -------------------------------------------------------------------------


def transposed(x: Float[Array, "n m"]) -> Float[Array, "n m"]:
    return x.T


def turned(x: Float[Array, "n 2"]) -> Float[Array, "n 2"]:
    return x.T


def dropped(x: Float[Array, "n"]) -> Float[Array, "n-3"]:
    return x[3:]  # JAX's size: n - min(n, 3); with the constraint n >= 3, n - 3


def specs(text: str, constraints: tuple[str, ...] = ()) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(export.symbolic_shape(text, constraints=constraints), jnp.float32)


# How a batched function meets symbolic shapes: traced as it is (eager code under eval_shape), and
# under jax.jit (eval_shape, and jax.export, which is what exports it).
TRACES: dict[str, Callable[[Callable[..., Any], Any], Any]] = {
    "eager": lambda fn, spec: jax.eval_shape(fn, spec),
    "jit": lambda fn, spec: jax.eval_shape(jax.jit(fn), spec),
    "export": lambda fn, spec: export.export(jax.jit(fn))(spec).out_avals[0],
}


def refused_by_jaxtyping(fn: Callable[..., Any], spec: Any) -> bool:
    """Does ``jax.vmap(jaxtyped(typechecker=beartype)(fn))`` refuse these symbolic shapes?"""
    try:
        jax.eval_shape(jax.vmap(jaxtyped(typechecker=beartype)(fn)), spec)
    except TypeError:  # jaxtyping's TypeCheckError
        return True
    return False


@pytest.mark.parametrize("trace", TRACES)
def test_a_result_with_its_symbolic_dims_swapped_is_refused(trace):
    spec = specs("b, n, m")
    assert refused_by_jaxtyping(transposed, spec)
    message = (
        "transposed: dimension 'n' has size n in argument 'x' (axis 1 of f32[b,n,m])\n"
        "but size m in the return value (axis 1 of f32[b,m,n])\n"
        "  the return value has layout 'b n m': expected (b=b, n=n, m=m), got f32[b,m,n]\n"
        "  (JAX cannot prove these symbolic sizes equal, and jax.vmap and jaxtyping take sizes as equal only "
        "where it can: distinct symbols are distinct sizes. If m and n are one size, export them as one symbol, "
        "or say so: jax.export.symbolic_shape(..., constraints=('m == n',)))"
    )
    with pytest.raises(ShapeError, match=f"^{re.escape(message)}(\n-+\nFor simplicity.*)?$"):
        TRACES[trace](batched(transposed, "b"), spec)


@pytest.mark.parametrize("trace", TRACES)
def test_a_symbol_where_the_annotation_fixes_a_size_is_refused(trace):
    spec = specs("b, n, 2")
    assert refused_by_jaxtyping(turned, spec)
    message = (
        "turned: dimension 'n' has size n in argument 'x' (axis 1 of f32[b,n,2])\n"
        "but size 2 in the return value (axis 1 of f32[b,2,n])\n"
        "  the return value has layout 'b n 2': expected (b=b, n=n, 2), got f32[b,2,n]\n"
        "  (JAX cannot prove these symbolic sizes equal, and jax.vmap and jaxtyping take sizes as equal only "
        "where it can: a symbol is not a fixed size. If n is always 2, export it as 2, "
        "or say so: jax.export.symbolic_shape(..., constraints=('n == 2',)))"
    )
    with pytest.raises(ShapeError, match=f"^{re.escape(message)}(\n-+\nFor simplicity.*)?$"):
        TRACES[trace](batched(turned, "b"), spec)


@pytest.mark.parametrize("trace", TRACES)
def test_a_result_size_jax_cannot_decide_is_refused_with_the_constraint_that_decides_it(trace):
    spec = specs("b, n")
    assert refused_by_jaxtyping(dropped, spec)
    message = (
        "dropped: dimension 'n-3' of layout 'b n-3' should be n - 3 (n=n from argument 'x' (axis 1 of f32[b,n])),\n"
        "but the return value (axis 1 of f32[b,- min(n, 3) + n]) has - min(n, 3) + n\n"
        "  (JAX cannot prove these symbolic sizes equal, and jax.vmap and jaxtyping take sizes as equal only "
        "where it can. With jax.export.symbolic_shape(..., constraints=('n >= 3',)) JAX reduces "
        "- min(n, 3) + n to n - 3, and the sizes agree)"
    )
    with pytest.raises(ShapeError, match=f"^{re.escape(message)}(\n-+\nFor simplicity.*)?$"):
        TRACES[trace](batched(dropped, "b"), spec)


@pytest.mark.parametrize("trace", TRACES)
def test_the_constraints_that_decide_a_size_make_it_accepted(trace):
    """With the constraints the hints give, JAX proves the sizes equal, and jaxtyping accepts them too."""
    n_at_least_3 = specs("b, n", ("n >= 3",))
    assert not refused_by_jaxtyping(dropped, n_at_least_3)
    assert str(TRACES[trace](batched(dropped, "b"), n_at_least_3).shape) == "(b, n - 3)"
    square = specs("b, n, m", ("m == n",))
    assert not refused_by_jaxtyping(transposed, square)
    assert str(TRACES[trace](batched(transposed, "b"), square).shape) == "(b, n, n)"


def test_batch_sizes_of_distinct_symbols_get_the_constraint_that_makes_them_one():
    def add(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + y

    scope = export.SymbolicScope()
    x, y = (jax.ShapeDtypeStruct(export.symbolic_shape(text, scope=scope), jnp.float32) for text in ("a, 3", "b, 3"))
    with pytest.raises(ShapeError) as raised:
        jax.eval_shape(batched(add, "batch"), x, y)
    assert str(raised.value).endswith(
        "distinct symbols are distinct sizes. If a and b are one size, export them as one symbol, "
        "or say so: jax.export.symbolic_shape(..., constraints=('b == a',)))"
    )
