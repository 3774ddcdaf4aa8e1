"""The wording of the errors raised while a call runs, from structured facts.

Where an error names a place, it says it the same way everywhere: ``argument 'f'``,
``the return value`` or ``result 1`` (a tuple result), ``the return value at ['w']``
(a PyTree leaf); where it happened inside the map, which map of which function.

Example:
    >>> result_place(returns_tuple=True, index=1)
    'result 1'
    >>> result_place(returns_tuple=False, index=0)
    'the return value'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
    from ._levels import Level
    from ._plan import Plan

__all__ = ["argument_place", "inside_the_map", "leaf_place", "result_place", "varying_unmapped_result"]


def argument_place(name: str) -> str:
    """``argument 'f'``."""
    return f"argument '{name}'"


def result_place(returns_tuple: bool, index: int) -> str:
    """``result 1`` of a tuple result, else ``the return value``."""
    return f"result {index}" if returns_tuple else "the return value"


def leaf_place(place: str, path: Any) -> str:
    """``the return value at ['a']``; a bare leaf has an empty path: just ``the return value``."""
    path_text = jax.tree_util.keystr(path)
    return f"{place} at {path_text}" if path_text else place


def inside_the_map(plan: Plan, levels: tuple[Level, ...], mapped: list[Any]) -> str:
    """``inside the map of message_passing over 'graph' (size 13)``."""
    described = ", ".join(
        f"'{level.key}'" + (f" (size {size})" if size is not None else "")
        for level, size in zip(levels, _level_sizes(levels, mapped), strict=True)
    )
    maps = "map" if len(levels) == 1 else "maps"
    return f"inside the {maps} of {plan.function} over {described}"


def varying_unmapped_result(plan: Plan, level: Level) -> str:
    """A result its layout leaves unmapped over ``level`` varies over it: what to change."""
    name = level.batch_name if level.index is None else f"*{level.batch_name}"
    advice = f"Add '{name}' to the output layout"
    if level.index is None:  # only a named dim can be reduced by name
        advice += f", or reduce over it inside (e.g. jax.lax.psum(x, '{name}'))"
    unmapped = [result_place(plan.returns_tuple, i) for i, axis in enumerate(level.out_axes) if axis is None]
    lack = "its layout has" if len(unmapped) == 1 else "their layouts have"
    return (
        f"{plan.function}: {' or '.join(unmapped)} varies over the batch dim '{name}', but {lack} no '{name}'. {advice}"
    )


def _level_sizes(levels: tuple[Level, ...], mapped: list[Any]) -> list[int | None]:
    """The size of each level, read off the mapped arguments as each vmap removes its axis."""
    shapes = []
    for value in mapped:
        leaves = jax.tree_util.tree_leaves(value)
        shapes.append(list(leaves[0].shape) if leaves and hasattr(leaves[0], "shape") else None)
    sizes = []
    for level in levels:
        size = level.size
        for shape, axis in zip(shapes, level.in_axes, strict=True):
            if axis is None or shape is None or not -len(shape) <= axis < len(shape):
                continue
            removed = shape.pop(axis)  # this level's vmap removes the axis for the levels inside
            size = removed if size is None else size
        sizes.append(size)
    return sizes
