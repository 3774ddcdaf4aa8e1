"""Zero cost under ``jax.jit``: ``batched`` compiles to exactly what hand-written ``jax.vmap`` does.

For every seed example (the benchmark workloads), the jitted batched function must lower to
the same StableHLO and compile to the same XLA cost analysis as the hand-written vmap nest,
and the per-example body must be traced exactly once per trace (the checks add no second
trace). Nothing here is timed: the benchmarks (``python -m benchmarks``) measure, this guards.
"""

import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array, Float, PyTree

from shapedmap import batched
from shapedmap.examples import EXAMPLES, custom_dot


def _stablehlo(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """The lowered module, with the module name and any location info taken out."""
    text = jax.jit(fn).lower(*args).as_text()
    text = re.sub(r"^module @\S+", "module @m", text, flags=re.MULTILINE)
    return re.sub(r"\s*loc\(.*?\)$", "", text, flags=re.MULTILINE)


def _cost(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return jax.jit(fn).lower(*args).compile().cost_analysis()


def _abstract(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args)


def _vector_sum(x0: Float[Array, "n"], x1: Float[Array, "n"], x2: Float[Array, "n"]) -> Float[Array, ""]:
    return x0.sum() + x1.sum() * x2.sum()


def _tree_sum(tree: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
    return sum(leaf.sum() for leaf in jax.tree_util.tree_leaves(tree))


def _sum_vector(x: Float[Array, "n"]) -> Float[Array, ""]:
    return x.sum()


def _nest(fn: Callable[..., Any], depth: int) -> Callable[..., Any]:
    for _ in range(depth):
        fn = jax.vmap(fn)
    return fn


def _f32(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


# name -> (batched function, hand-written vmap, abstract arguments)
CASES: dict[str, tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = {
    name: (example.function, example.hand_written, _abstract(example.make_inputs(jax.random.key(0))))
    for name, example in EXAMPLES.items()
}
CASES.update(
    {
        # seed 001's chart sizes (abstract: nothing is allocated)
        **{
            f"custom_dot_{n}": (batched(custom_dot, "row"), jax.vmap(custom_dot), (_f32(n, n), _f32(n, n)))
            for n in (1000, 5000, 10000)
        },
        "three_arguments": (batched(_vector_sum, "b"), jax.vmap(_vector_sum), (_f32(8, 5),) * 3),
        "four_batch_names": (batched(_sum_vector, "b0 b1 b2 b3"), _nest(_sum_vector, 4), (_f32(2, 3, 4, 5, 6),)),
        "pytree_leaves": (batched(_tree_sum, "b"), jax.vmap(_tree_sum), ({"a": _f32(8, 5), "b": [_f32(8, 5)] * 9},)),
    }
)


@pytest.mark.parametrize("name", list(CASES))
def test_same_stablehlo_as_hand_written_vmap(name: str) -> None:
    function, hand_written, args = CASES[name]
    assert _stablehlo(function, args) == _stablehlo(hand_written, args)


@pytest.mark.parametrize("name", list(CASES))
def test_same_cost_analysis_as_hand_written_vmap(name: str) -> None:
    function, hand_written, args = CASES[name]
    cost = _cost(function, args)
    assert cost  # a real analysis, not an empty one that would compare equal to anything
    assert cost == _cost(hand_written, args)


def _counted(fn: Callable[..., Any], counter: list[int]) -> Callable[..., Any]:
    """``fn`` rebuilt with a call counter on the innermost per-example function."""
    if hasattr(fn, "__shapedmap__"):
        rebuilt = batched(_counted(fn.fn, counter), fn.signature)
        assert (rebuilt.in_axes, rebuilt.out_axes) == (fn.in_axes, fn.out_axes)
        return rebuilt

    @functools.wraps(fn)
    def counting(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return fn(*args, **kwargs)

    return counting


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_per_example_body_traced_once(name: str) -> None:
    example = EXAMPLES[name]
    counter = [0]
    function = _counted(example.function, counter)
    args = example.make_inputs(jax.random.key(0))

    jitted = jax.jit(function)
    jitted(*args)
    assert counter[0] == 1, "one jit trace runs the per-example body once (checks included)"
    jitted(*args)
    assert counter[0] == 1, "the second call reuses the compiled program"

    function(*args)
    assert counter[0] == 2, "an eager call traces the body once (no probe trace, checked or not)"
    function(*args)
    assert counter[0] == 3, "each later eager call traces the body once, checked or cached"
