"""A call whose arguments would fit if they were moved: the note a refused call's error ends with.

When a call's arguments do not fit their layouts, two slips are worth naming, because the
error itself (a size conflict, a wrong rank) points at a dimension, not at the slip:

* an argument that fits its layout with two of its axes swapped "looks transposed" (a weight
  matrix passed the other way round);
* two arguments that fit each other's layouts "look swapped" (passed in each other's places).

``misplaced_note`` tries each move on the arguments' shapes alone (``jax.ShapeDtypeStruct``s, nothing
runs) with the same check the call ran, and words the first that makes the whole call fit. It runs
only once a call is refused, never on an accepted one.

Example:
    >>> from shapedmap import ShapeError
    >>> from shapedmap._checks import check_arguments
    >>> from shapedmap._plan import plan_of
    >>> def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"]) -> Float[Array, "out"]:
    ...     return x @ w
    >>> plan = plan_of(batched(linear, "batch", layouts={"w": None}))
    >>> def fits(values):
    ...     try:
    ...         check_arguments(plan, values, notes=False)
    ...     except ShapeError:
    ...         return False
    ...     return True
    >>> print(misplaced_note(plan, [jnp.ones((5, 3)), jnp.ones((4, 3))], fits))
      argument 'w' looks transposed: f32[4,3] with axes 0 and 1 swapped fits its layout 'feat out' (pass w.T)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

from ._errors import describe_value

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["misplaced_note"]

_MAX_RANK = 8  # axes beyond this are not tried in pairs (the note is a courtesy, not a search)
_MAX_ARGUMENTS = 16


def misplaced_note(plan: Plan, values: list[Any], fits: Callable[[list[Any]], bool]) -> str:
    """The note for a refused call whose arguments fit once moved, or ``""``.

    ``values``: one per parameter, as the call bound them; ``fits``: does the whole call fit with
    these values (the call's own check, given ``jax.ShapeDtypeStruct``s)?
    """
    arrays = [
        index
        for index in plan.array_arguments[:_MAX_ARGUMENTS]
        if plan.arguments[index].value.kind == "array" and _abstract(values[index]) is not None
    ]
    if not arrays:
        return ""
    abstract = list(values)
    for index in arrays:
        abstract[index] = _abstract(values[index])
    for first, second in itertools.combinations(arrays, 2):
        one, other = abstract[first], abstract[second]
        if (one.shape, one.dtype) == (other.shape, other.dtype):
            continue
        trial = list(abstract)
        trial[first], trial[second] = other, one
        if fits(trial):
            a, b = plan.arguments[first], plan.arguments[second]
            return (
                f"  arguments '{a.name}' ({describe_value(values[first])}) and '{b.name}' "
                f"({describe_value(values[second])}) look swapped: each fits the other's layout "
                f"({str(b.placement.batched)!r} and {str(a.placement.batched)!r}); pass them the other way round"
            )
    for index in arrays:
        value = abstract[index]
        rank = len(value.shape)
        for p, q in itertools.combinations(range(min(rank, _MAX_RANK)), 2):
            if value.shape[p] == value.shape[q]:
                continue
            axes = list(range(rank))
            axes[p], axes[q] = q, p
            trial = list(abstract)
            trial[index] = jax.ShapeDtypeStruct(tuple(value.shape[axis] for axis in axes), value.dtype)
            if fits(trial):
                argument = plan.arguments[index]
                fix = f"{argument.name}.T" if rank == 2 else f"jnp.swapaxes({argument.name}, {p}, {q})"
                return (
                    f"  argument '{argument.name}' looks transposed: {describe_value(values[index])} with axes "
                    f"{p} and {q} swapped fits its layout {str(argument.placement.batched)!r} (pass {fix})"
                )
    return ""


def _abstract(value: Any) -> jax.ShapeDtypeStruct | None:
    """The shape and dtype of an array argument, or None (not an array: no move is tried)."""
    try:
        shape, dtype = value.shape, value.dtype
        if not isinstance(shape, tuple) or not all(isinstance(size, int) for size in shape):
            return None  # a symbolic size (jax.export): not worth a guess
        return jax.ShapeDtypeStruct(shape, dtype)
    except Exception:
        return None
