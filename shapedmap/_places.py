"""Where things are, said the same way in every message: places, and where a size was seen.

A place reads ``argument 'f'``, ``the return value`` or ``result 1`` (a tuple result), ``the
return value at ['w']`` (a PyTree leaf), or ``the layout 'b=3 n' of the return value``. An
``Origin`` records where a size was seen (the place, the axis, the array's shape and dtype) and
is written out only when a message needs it.

Example:
    >>> str(Origin(argument_place("a"), 0, (5, 7, 7), "float32"))
    "argument 'a' (axis 0 of f32[5,7,7])"
    >>> result_place(returns_tuple=True, index=1), result_place(returns_tuple=False, index=0)
    ('result 1', 'the return value')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax

from ._errors import describe_array

if TYPE_CHECKING:
    from ._grammar import Layout

__all__ = ["Origin", "argument_place", "bound_place", "layout_place", "leaf_place", "origin_text", "result_place"]


@dataclass(frozen=True)
class Origin:
    """Where a size was seen: ``argument 'a' (axis 0 of f32[5,7,7])``.

    ``shape`` and ``dtype`` describe the array; the text is written only when a message needs it.
    A size the layout itself gives (``rep=3``) has no axis and no array: ``dtype`` holds its token.
    """

    place: str
    axis: int | tuple[int, int] | None
    shape: tuple[int, ...]
    dtype: Any

    @property
    def value(self) -> str:
        """``f32[5,7,7]``."""
        return describe_array(self.shape, self.dtype)

    def __str__(self) -> str:
        return origin_text(self)


def argument_place(name: str) -> str:
    """``argument 'f'``."""
    return f"argument '{name}'"


def bound_place(name: str, partial: str) -> str:
    """``'mask' (bound by functools.partial)``: a value a partial binds, not the call."""
    return f"'{name}' (bound by {partial})"


def result_place(returns_tuple: bool, index: int) -> str:
    """``result 1`` of a tuple result, else ``the return value``."""
    return f"result {index}" if returns_tuple else "the return value"


def leaf_place(place: str, path: Any) -> str:
    """``the return value at ['a']``; a bare leaf has an empty path: just ``the return value``."""
    path_text = jax.tree_util.keystr(path)
    return f"{place} at {path_text}" if path_text else place


def layout_place(layout: Layout, place: str) -> str:
    """``the layout 'b=3 n' of the return value``: where a size the layout fixes comes from."""
    return f"the layout {str(layout)!r} of {place}"


def origin_text(origin: Origin) -> str:
    """``argument 'a' (axis 0 of f32[5,7,7])``; a size the layout gives: ``..., which fixes it``."""
    if origin.axis is None:  # a size the layout itself gives: ``rep=3``
        return f"{origin.place}, which fixes it"
    if isinstance(origin.axis, tuple):
        start, stop = origin.axis
        axes = f"axes {start}..{stop - 1}" if stop - start != 1 else f"axis {start}"
        return f"{origin.place} ({axes} of {origin.value})"
    return f"{origin.place} (axis {origin.axis} of {origin.value})"
