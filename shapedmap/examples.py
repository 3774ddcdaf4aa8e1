"""The seed examples: the JAX vmap tutorials, retold with ``@batched``.

Each ``Example`` bundles a batched function, a way to make its inputs, and the naive
Python loop it must equal. The demo (``python -m shapedmap demo``), the tests, the docs
and the benchmarks all use these, so they stay in one place.

Example:
    >>> example = EXAMPLES["message_passing"]
    >>> args = example.make_inputs(jax.random.key(0))
    >>> example.function(*args).shape
    (13, 7, 11)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._decorator import batched

__all__ = ["EXAMPLES", "Example"]


# -- per-example functions and their batched versions ------------------------------------


def square(x: Float[Array, ""]) -> Float[Array, ""]:
    """The square of one number."""
    return x**2


square_each: Callable[[Array], Array] = batched(square, "i")


def sum_vector(x: Float[Array, "n"]) -> Float[Array, ""]:
    """The sum of one vector."""
    return x.sum()


row_sums: Callable[[Array], Array] = batched(sum_vector, "row n -> row")
column_sums: Callable[[Array], Array] = batched(sum_vector, "n col -> col")


def softmax(x: Float[Array, "n"]) -> Float[Array, "n"]:
    """A numerically stable softmax of one vector."""
    shifted = jnp.exp(x - x.max())
    return shifted / shifted.sum()


row_softmax: Callable[[Array], Array] = batched(softmax, "row")


def angle(opposite: Float[Array, ""], adjacent: Float[Array, ""]) -> Float[Array, ""]:
    """The angle of a right triangle from its two legs."""
    return jnp.arctan2(opposite, adjacent)


angles: Callable[[Array, Array], Array] = batched(angle, "i")


@batched("graph")
def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    """One round of message passing on one graph: each node sums its neighbours' features."""
    return a @ f


def cumulative_sum_of_products(row: Float[Array, "k"]) -> Float[Array, ""]:
    """The running product along one row, summed."""
    return jnp.cumprod(row).sum()


chained: Callable[[Array], Array] = batched(cumulative_sum_of_products, "batch row k -> batch row")


def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
    """Two feature vectors side by side."""
    return jnp.concatenate([u, v])


pairwise: Callable[[Array, Array], Array] = batched(concat, "i f, j f -> i j 2*f")


def custom_dot(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, ""]:
    """The squared dot product of two vectors."""
    return jnp.dot(x, y) ** 2


row_custom_dot: Callable[[Array, Array], Array] = batched(custom_dot, "row")


def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    """Vector-vector product."""
    return jnp.vdot(x, y)


mv: Callable[[Array, Array], Array] = batched(vv, "b a, a -> b")
mm: Callable[[Array, Array], Array] = batched(mv, "b a, a c -> b c")


def sum_of_squares(x: Float[Array, "n"]) -> Float[Array, ""]:
    """The sum of squares of one vector."""
    return jnp.sum(x**2)


batch_sum_of_squares: Callable[[Array], Array] = batched(sum_of_squares, "batch")


# -- the catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A batched function, how to make its inputs, and the naive loop it must equal."""

    name: str
    title: str
    function: Callable[..., Any]
    make_inputs: Callable[[jax.Array], tuple[Any, ...]]
    naive: Callable[..., Any]
    hand_written: Callable[..., Any]


def _normal(key: jax.Array, *shape: int) -> jax.Array:
    return jax.random.normal(key, shape, dtype=jnp.float32)


def _two(key: jax.Array, first: tuple[int, ...], second: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    k1, k2 = jax.random.split(key)
    return _normal(k1, *first), _normal(k2, *second)


EXAMPLES: dict[str, Example] = {
    example.name: example
    for example in [
        Example(
            "square",
            "square over a vector",
            square_each,
            lambda key: (_normal(key, 5),),
            lambda x: jnp.stack([square(x[i]) for i in range(x.shape[0])]),
            jax.vmap(square),
        ),
        Example(
            "row_sums",
            "sum_vector over the rows of a matrix",
            row_sums,
            lambda key: (_normal(key, 3, 4),),
            lambda m: jnp.stack([sum_vector(m[i]) for i in range(m.shape[0])]),
            jax.vmap(sum_vector),
        ),
        Example(
            "column_sums",
            "sum_vector over the columns of a matrix",
            column_sums,
            lambda key: (_normal(key, 3, 4),),
            lambda m: jnp.stack([sum_vector(m[:, j]) for j in range(m.shape[1])]),
            jax.vmap(sum_vector, in_axes=1),
        ),
        Example(
            "row_softmax",
            "softmax of every row",
            row_softmax,
            lambda key: (_normal(key, 4, 6),),
            lambda m: jnp.stack([softmax(m[i]) for i in range(m.shape[0])]),
            jax.vmap(softmax),
        ),
        Example(
            "angles",
            "angle(opposite, adjacent) over two vectors",
            angles,
            lambda key: _two(key, (8,), (8,)),
            lambda o, a: jnp.stack([angle(o[i], a[i]) for i in range(o.shape[0])]),
            jax.vmap(angle),
        ),
        Example(
            "message_passing",
            "message passing over 13 graphs of 7 nodes with 11 features",
            message_passing,
            lambda key: _two(key, (13, 7, 7), (13, 7, 11)),
            lambda a, f: jnp.stack([a[g] @ f[g] for g in range(a.shape[0])]),
            jax.vmap(message_passing.fn),
        ),
        Example(
            "chained",
            "chained vmaps: cumulative product along each row, summed, over (11, 31, 7)",
            chained,
            lambda key: (jax.random.uniform(key, (11, 31, 7), dtype=jnp.float32),),
            lambda d: jnp.stack(
                [jnp.stack([cumulative_sum_of_products(d[b, r]) for r in range(d.shape[1])]) for b in range(d.shape[0])]
            ),
            jax.vmap(jax.vmap(cumulative_sum_of_products)),
        ),
        Example(
            "pairwise",
            "pairwise concatenation of 13 nodes' 17 features",
            pairwise,
            lambda key: (_normal(key, 13, 17), _normal(jax.random.fold_in(key, 1), 13, 17)),
            lambda u, v: jnp.stack(
                [jnp.stack([concat(u[i], v[j]) for j in range(v.shape[0])]) for i in range(u.shape[0])]
            ),
            jax.vmap(jax.vmap(concat, in_axes=(None, 0)), in_axes=(0, None)),
        ),
        Example(
            "custom_dot",
            "custom_dot(x, y) = dot(x, y)**2 over rows",
            row_custom_dot,
            lambda key: _two(key, (100, 100), (100, 100)),
            lambda x, y: jnp.stack([custom_dot(x[i], y[i]) for i in range(x.shape[0])]),
            jax.vmap(custom_dot),
        ),
        Example(
            "mv",
            "matrix-vector product from vv",
            mv,
            lambda key: _two(key, (5, 3), (3,)),
            lambda x, y: jnp.stack([vv(x[i], y) for i in range(x.shape[0])]),
            jax.vmap(vv, in_axes=(0, None)),
        ),
        Example(
            "mm",
            "matrix-matrix product from mv (mm(x, y) == x @ y)",
            mm,
            lambda key: _two(key, (5, 3), (3, 4)),
            lambda x, y: jnp.stack(
                [jnp.stack([vv(x[i], y[:, c]) for c in range(y.shape[1])]) for i in range(x.shape[0])]
            ),
            jax.vmap(jax.vmap(vv, in_axes=(0, None)), in_axes=(None, 1), out_axes=1),
        ),
        Example(
            "sum_of_squares",
            "sum_of_squares over a batch of vectors",
            batch_sum_of_squares,
            lambda key: (_normal(key, 6, 3),),
            lambda x: jnp.stack([sum_of_squares(x[i]) for i in range(x.shape[0])]),
            jax.vmap(sum_of_squares),
        ),
    ]
}
