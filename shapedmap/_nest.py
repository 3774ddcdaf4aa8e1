"""One call's ``VmapNest``: the plan's levels, settled by the call's shapes and sizes.

Most plans fix their levels at decoration; then every call runs the same nest. The levels
of a ``*batch`` spec depend on how many dims the arguments have, a ``#graph`` dim of size 1
is shared rather than mapped, and a batch dim only the results have takes its size from
the call's bindings: those are settled here, per call, from the bound sizes alone.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> from shapedmap._plan import plan_of
    >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    ...     return x @ y
    >>> plan = plan_of(batched(vv, "b a, a -> b"))
    >>> nest_for(plan, [jnp.ones((5, 3)), jnp.ones(3)], Bindings("vv")).levels[0].in_axes
    (0, None)

    A ``*b`` spec has as many levels as the call's broadcast ``*b`` dims (here ``(4, 5)``):

    >>> from shapedmap._checks import check_arguments
    >>> plan = plan_of(batched(vv, "*b a, *b a -> *b"))
    >>> bindings, values = check_arguments(plan, [jnp.ones((4, 5, 3)), jnp.ones((5, 3))])
    >>> [level.in_axes for level in nest_for(plan, values, bindings).levels]
    [(0, None), (0, 0)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from . import _messages as messages
from ._binding import Bindings
from ._errors import ShapeError
from ._levels import CallShape, Level, Placement, VmapNest, variadic_key
from ._plan import Plan

__all__ = ["nest_for", "nominal_levels"]


def nest_for(plan: Plan, values: list[Any], bindings: Bindings) -> VmapNest:
    """The nest of ``jax.vmap`` this call runs (``values``: one per parameter, checked)."""
    if plan.static_nest is not None:
        return plan.static_nest
    leaf_shapes = [[tuple(leaf.shape) for leaf in jax.tree.leaves(values[i])] for i in plan.array_arguments]
    sizes = {name: size for name, (size, _) in bindings.sizes.items()}
    variadic = bindings.variadics.get(plan.variadic_batch)
    return _levels_of_call(plan, leaf_shapes, sizes, () if variadic is None else variadic[0])


def nominal_levels(plan: Plan) -> tuple[tuple[Level, ...], bool]:
    """The plan's levels, and whether they depend on the call (then: one ``*batch`` dim, nothing
    squeezed) — what documentation shows."""
    if plan.levels is not None:
        return plan.levels, False
    lengths = tuple(1 if plan.arguments[i].placement.variadic_batch is not None else 0 for i in plan.array_arguments)
    unsqueezed = tuple(frozenset() for _ in plan.array_arguments)
    return plan.levels_for(CallShape(1 if plan.variadic_batch is not None else 0, lengths, unsqueezed)).levels, True


def _levels_of_call(
    plan: Plan,
    leaf_shapes: list[list[tuple[int, ...]]],
    sizes: Mapping[str, int],
    variadic_shape: tuple[int, ...],
) -> VmapNest:
    """The levels of one call whose levels depend on it (``*batch``, ``#graph``, unsized levels).

    ``leaf_shapes`` holds, per array argument, the shapes of its leaves; ``sizes`` the bound batch
    sizes; ``variadic_shape`` the broadcast shape of the ``*batch`` dims. As in ``jnp.vectorize``, a
    size-1 dim of a broadcastable batch dim whose bound size is not 1 is squeezed and left unmapped,
    so the one example is shared.
    """
    if plan.levels is not None:
        levels = plan.levels
        squeeze: tuple[tuple[int, ...], ...] = ()
    else:
        lengths, squeezed = [], []
        for index, shapes in zip(plan.array_arguments, leaf_shapes, strict=True):
            argument = plan.arguments[index]
            if argument.placement.treedef is not None:  # a layout tree: no '*batch', nothing broadcast
                lengths.append(0)
                squeezed.append(frozenset())
                continue
            per_leaf = {_squeezed_batch_dims(argument.placement, shape, variadic_shape, sizes) for shape in shapes}
            if len(per_leaf) > 1:
                raise ShapeError(messages.leaves_disagree(plan.function, argument.name, shapes))
            own, dropped = per_leaf.pop() if per_leaf else (0, frozenset())
            lengths.append(own)
            squeezed.append(dropped)
        expansion = plan.levels_for(CallShape(len(variadic_shape), tuple(lengths), tuple(squeezed)))
        levels, squeeze = expansion.levels, expansion.squeeze
    if plan.unsized_levels:
        levels = tuple(_sized(level, sizes) for level in levels)
    return VmapNest(levels, squeeze)


def _squeezed_batch_dims(
    placement: Placement, shape: tuple[int, ...], variadic_shape: tuple[int, ...], sizes: Mapping[str, int]
) -> tuple[int, frozenset[str]]:
    """How many ``*batch`` dims this array has, and the level keys of its size-1 broadcast dims."""
    batch_at = dict(placement.batch)
    own, dropped = 0, set()
    for token_index, size in enumerate(placement.batched.split(shape)):
        name = batch_at.get(token_index)
        if name is None:
            continue
        if name == placement.variadic_batch:
            own = len(size)
            for j, dim_size in enumerate(size):
                level_index = len(variadic_shape) - own + j
                if dim_size == 1 and variadic_shape[level_index] != 1:
                    dropped.add(variadic_key(name, level_index))
        elif name in placement.broadcastable_batch and size == 1 and sizes.get(name) not in (None, 1):
            dropped.add(name)
    return own, frozenset(dropped)


def _sized(level: Level, sizes: Mapping[str, int]) -> Level:
    """A level no argument maps over gets its ``axis_size`` from the bound sizes."""
    if level.size is not None or any(axis is not None for axis in level.in_axes):
        return level
    return dataclasses.replace(level, size=sizes.get(level.key))
