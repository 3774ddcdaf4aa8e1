"""The benchmark workloads: the seed examples, each written every way we compare.

A ``Workload`` holds the per-example function and builders that turn a per-example function
into a ``batched`` function or into the hand-written ``jax.vmap`` nest with the same axes, so
that a *fresh copy* of the per-example function can be batched for every first-call sample
(JAX and beartype cache by function object; a fresh object makes every cache miss).

The ``jnp.vectorize`` and einx (``einx.jax.adapt_with_vmap``) versions take the same
arguments and return the same array as the ``batched`` one.

Example:
    >>> workload = WORKLOADS["message_passing"]
    >>> args = workload.make_inputs()
    >>> workload.make_batched(workload.per_example)(*args).shape
    (13, 7, 11)
"""

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from beartype import beartype
from jaxtyping import Array, Float, PyTree, jaxtyped

from shapedmap import batched
from shapedmap._plan import plan_of
from shapedmap.examples import EXAMPLES, concat, custom_dot, message_passing, vv

__all__ = [
    "CUSTOM_DOT_SIZES",
    "WORKLOADS",
    "Workload",
    "custom_dot_workload",
    "fresh",
    "named_vmap",
    "scaling_args",
    "scaling_leaves",
    "scaling_names",
]

CUSTOM_DOT_SIZES = (100, 1000, 5000, 10000)

Fn = Callable[..., Any]


def fresh(fn: Fn) -> Fn:
    """A new function object with ``fn``'s code, annotations and metadata (so no cache knows it)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__annotations__ = dict(fn.__annotations__)
    copy.__qualname__ = fn.__qualname__
    copy.__doc__ = fn.__doc__
    copy.__module__ = fn.__module__
    return copy


def named_vmap(function: Fn) -> Fn:
    """The ``jax.vmap`` nest a ``batched`` function runs, axis names included, built by hand.

    The diagnostic baseline: ``batched`` / this isolates shapedmap's own per-call Python cost
    from what ``axis_name`` costs inside JAX.
    """
    runner = getattr(function, "__shapedmap__", None)
    if runner is None:
        return function
    plan = plan_of(function)
    nest = named_vmap(function.fn)
    for level in reversed(plan.levels):
        out_axes = level.out_axes if plan.returns_tuple else level.out_axes[0]
        nest = jax.vmap(nest, in_axes=level.in_axes, out_axes=out_axes, axis_name=level.axis_name)
    return nest


def jaxtyped_vmap(make_vmap: Callable[[Fn], Fn]) -> Callable[[Fn], Fn]:
    """The first-call baseline: the hand-written vmap nest over ``jaxtyped(typechecker=beartype)(f)``."""
    return lambda fn: make_vmap(jaxtyped(typechecker=beartype)(fn))


@dataclass(frozen=True)
class Workload:
    """One workload, every way it can be written.

    Attributes:
        name: short name (table rows, JSON keys).
        title: what it computes, with sizes.
        per_example: the annotated per-example function.
        make_batched: per-example function -> ``batched`` function.
        make_vmap: per-example function -> the hand-written ``jax.vmap`` nest (same axes).
        make_inputs: the arguments (deterministic).
        vectorize: the ``jnp.vectorize`` version (same arguments, same result).
        einx: the ``einx.jax.adapt_with_vmap`` version (same arguments, same result), or
            ``None`` when einx is not installed.
        naive: the naive Python loop over the batch.
    """

    name: str
    title: str
    per_example: Fn
    make_batched: Callable[[Fn], Fn]
    make_vmap: Callable[[Fn], Fn]
    make_inputs: Callable[[], tuple[Any, ...]]
    vectorize: Fn
    einx: Fn | None
    naive: Fn


def _einx(op: Fn, expression: str, **sizes_from_args: Callable[..., int]) -> Fn | None:
    """``op`` adapted by einx with ``expression`` (extra axis sizes computed from the args)."""
    try:
        import einx.jax
    except ImportError:
        return None
    adapted = einx.jax.adapt_with_vmap(op)

    def call(*args: Any) -> Any:
        return adapted(expression, *args, **{name: size(*args) for name, size in sizes_from_args.items()})

    return call


def _inputs(name: str) -> Callable[[], tuple[Any, ...]]:
    return lambda: EXAMPLES[name].make_inputs(jax.random.key(0))


def _pairwise_vectorize(u: Any, v: Any) -> Any:
    return jnp.vectorize(concat, signature="(f),(f)->(g)")(u[:, None, :], v[None, :, :])


def _mm_vectorize(x: Any, y: Any) -> Any:
    return jnp.vectorize(vv, signature="(a),(a)->()")(x[:, None, :], y.T[None, :, :])


def _custom_dot_naive(x: Any, y: Any) -> Any:
    return jnp.stack([custom_dot(x[i], y[i]) for i in range(x.shape[0])])


def custom_dot_workload(n: int) -> Workload:
    """Seed 001's chart: ``custom_dot`` over the rows of two ``(n, n)`` float32 matrices."""

    def make_inputs() -> tuple[Any, ...]:
        k1, k2 = jax.random.split(jax.random.key(0))
        return jax.random.normal(k1, (n, n), jnp.float32), jax.random.normal(k2, (n, n), jnp.float32)

    return Workload(
        name=f"custom_dot_{n}",
        title=f"custom_dot over the rows of two ({n}, {n}) float32 matrices",
        per_example=custom_dot,
        make_batched=lambda f: batched(f, "row"),
        make_vmap=jax.vmap,
        make_inputs=make_inputs,
        vectorize=jnp.vectorize(custom_dot, signature="(n),(n)->()"),
        einx=_einx(custom_dot, "r [n], r [n] -> r"),
        naive=_custom_dot_naive,
    )


WORKLOADS: dict[str, Workload] = {
    workload.name: workload
    for workload in [
        Workload(
            name="message_passing",
            title="message passing, 13 graphs of 7 nodes with 11 features",
            per_example=message_passing.fn,
            make_batched=lambda f: batched(f, "graph"),
            make_vmap=jax.vmap,
            make_inputs=_inputs("message_passing"),
            vectorize=jnp.vectorize(message_passing.fn, signature="(n,n),(n,f)->(n,f)"),
            einx=_einx(message_passing.fn, "g [n m], g [m f] -> g [n f]"),
            naive=EXAMPLES["message_passing"].naive,
        ),
        Workload(
            name="pairwise",
            title="pairwise concatenation, 13 x 13 pairs of 17 features",
            per_example=concat,
            make_batched=lambda f: batched(f, "i f, j f -> i j 2*f"),
            make_vmap=lambda f: jax.vmap(jax.vmap(f, in_axes=(None, 0)), in_axes=(0, None)),
            make_inputs=_inputs("pairwise"),
            vectorize=_pairwise_vectorize,
            einx=_einx(concat, "i [f], j [f] -> i j [g]", g=lambda u, v: 2 * u.shape[1]),
            naive=EXAMPLES["pairwise"].naive,
        ),
        *(custom_dot_workload(n) for n in CUSTOM_DOT_SIZES),
        Workload(
            name="mm",
            title="mm from vv via mv, (5, 3) @ (3, 4)",
            per_example=vv,
            make_batched=lambda f: batched(batched(f, "b a, a -> b"), "b a, a c -> b c"),
            make_vmap=lambda f: jax.vmap(jax.vmap(f, in_axes=(0, None)), in_axes=(None, 1), out_axes=1),
            make_inputs=_inputs("mm"),
            vectorize=_mm_vectorize,
            einx=_einx(vv, "b [a], [a] c -> b c"),
            naive=EXAMPLES["mm"].naive,
        ),
    ]
}


# -- scaling: arguments, batch names, PyTree leaves ------------------------------------------


@dataclass(frozen=True)
class Scaled:
    """A synthetic per-example function and how to batch, vmap and feed it."""

    per_example: Fn
    make_batched: Callable[[Fn], Fn]
    make_vmap: Callable[[Fn], Fn]
    inputs: tuple[Any, ...]


def _vector_sum(count: int) -> Fn:
    """``def f(x0: Float[Array, "n"], ..., x{count-1}) -> Float[Array, ""]`` summing them all."""
    names = [f"x{i}" for i in range(count)]
    source = (
        f"def f({', '.join(f'{name}: Float[Array, {chr(34)}n{chr(34)}]' for name in names)}) "
        f'-> Float[Array, ""]:\n    return {" + ".join(f"{name}.sum()" for name in names)}\n'
    )
    namespace: dict[str, Any] = {"Float": Float, "Array": Array}
    exec(source, namespace)
    return namespace["f"]


def scaling_args(count: int, batch: int = 8, n: int = 16) -> Scaled:
    """``count`` array arguments, one batch name."""
    inputs = tuple(jnp.full((batch, n), float(i), jnp.float32) for i in range(count))
    return Scaled(_vector_sum(count), lambda f: batched(f, "b"), jax.vmap, inputs)


def scaling_names(count: int, size: int = 4, n: int = 16) -> Scaled:
    """One argument, ``count`` batch names (``count`` nested vmaps)."""
    spec = " ".join(f"b{i}" for i in range(count))

    def nest(fn: Fn) -> Fn:
        for _ in range(count):
            fn = jax.vmap(fn)
        return fn

    inputs = (jnp.ones((size,) * count + (n,), jnp.float32),)
    return Scaled(_vector_sum(1), lambda f: batched(f, spec), nest, inputs)


def _tree_sum(tree: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
    """The sum of every leaf of a PyTree of vectors."""
    return sum(leaf.sum() for leaf in jax.tree_util.tree_leaves(tree))


def scaling_leaves(count: int, batch: int = 8, n: int = 16) -> Scaled:
    """One ``PyTree[Float[Array, "n"]]`` argument with ``count`` leaves (a list)."""
    inputs = ([jnp.full((batch, n), float(i), jnp.float32) for i in range(count)],)
    return Scaled(fresh(_tree_sum), lambda f: batched(f, "b"), jax.vmap, inputs)
