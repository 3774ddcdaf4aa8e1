"""Indexing a batched value at one batch index, by batch name, as the naive loop does.

``take`` reads one leaf at ``{"graph": 1}`` through its layout's ``Placement`` (a size-1
broadcast axis at 0 when asked); ``index_space`` lists every batch index of a call, outermost
batch name first, from its arguments' shapes. Both read only the layouts, never how the
batched call maps.

Example:
    >>> import jax.numpy as jnp
    >>> from shapedmap._plan import plan_of
    >>> from shapedmap.examples import mv
    >>> placement = plan_of(mv).arguments[0].placement  # mv's first argument: 'b a'
    >>> take(placement, jnp.arange(6).reshape(2, 3), {"b": 1}).tolist()
    [3, 4, 5]
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import numpy as np

from .._grammar import NamedDim
from .._layout_trees import placed
from .._levels import Placement
from .._plan import Plan

__all__ = ["batch_axes", "index_space", "take"]


def batch_axes(placement: Placement, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """``(batch name, its axes, their sizes)`` for each batch token of an array of ``shape``."""
    batch_at = dict(placement.batch)
    found = []
    axis = 0
    for index, size in enumerate(placement.batched.split(tuple(shape))):
        sizes = size if isinstance(size, tuple) else (size,)
        if index in batch_at:
            found.append((batch_at[index], tuple(range(axis, axis + len(sizes))), sizes))
        axis += len(sizes)
    return found


def take(placement: Placement, leaf: Any, batch_index: dict[str, Any], *, broadcast: bool = False) -> Any:
    """``leaf`` at ``batch_index`` (a size-1 broadcast axis at 0 when ``broadcast``)."""
    index: list[Any] = [slice(None)] * len(leaf.shape)
    for name, axes, sizes in batch_axes(placement, leaf.shape):
        position = batch_index[name]
        # '*batch' positions are tuples, right-aligned with the broadcast shape.
        position = position[len(position) - len(axes) :] if isinstance(position, tuple) else (position,)
        for axis, size, i in zip(axes, sizes, position, strict=True):
            index[axis] = 0 if broadcast and size == 1 else i
    return leaf[tuple(index)]


def _placed_leaves(placement: Any, value: Any) -> list[tuple[Placement, Any]]:
    """Every leaf of ``value`` with its placement (a layout tree gives each subtree its own)."""
    return [
        (part, leaf) for _, subtree, part in placed(placement, value) for leaf in jax.tree_util.tree_leaves(subtree)
    ]


def index_space(plan: Plan, bound: inspect.BoundArguments) -> list[tuple[str, list[Any]]]:
    """For each batch name (outermost first): its indices, from the arguments' shapes."""
    sizes: dict[str, int] = {}
    shapes: list[tuple[int, ...]] = []
    core_sizes: dict[str, int] = {}
    for argument in plan.arguments:
        value = bound.arguments.get(argument.name)
        if argument.placement is None or value is None:
            continue
        for placement, leaf in _placed_leaves(argument.placement, value):
            for name, _, dims in batch_axes(placement, leaf.shape):
                if name == plan.variadic_batch:
                    shapes.append(dims)
                elif dims[0] != 1 or name not in sizes:
                    sizes[name] = dims[0]
            layout = placement.batched
            for dim, size in zip(layout.dims, layout.split(tuple(leaf.shape)), strict=True):
                if isinstance(dim, NamedDim) and not (dim.broadcastable and size == 1):
                    core_sizes.setdefault(dim.name, size)
    space = []
    for name in plan.order:
        if name == plan.variadic_batch:
            space.append((name, list(np.ndindex(*np.broadcast_shapes(*shapes))) if shapes else [()]))
            continue
        size = sizes.get(name, plan.fixed_sizes.get(name, core_sizes.get(name)))
        if size is None:
            raise TypeError(f"check_batched({plan.function}): cannot tell the size of the batch dim '{name}'")
        space.append((name, list(range(size))))
    return space
