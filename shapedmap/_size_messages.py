"""The wording of a conflict of sizes by name (``_binding``), from structured facts.

``Bindings`` says what went wrong: the function, the dimension, the sizes and where each was seen
(``Origin``, and the places, in ``_places``); the functions here return the message text, with
both places and the shape each was expected to have. Nothing here imports the checks at run time
(types only).

Example:
    >>> from shapedmap._grammar import parse_layout
    >>> from shapedmap._places import argument_place
    >>> a = Origin(argument_place("a"), 0, (5, 7, 7), "float32")  # axis 0 of a f32[5,7,7]
    >>> f = Origin(argument_place("f"), 0, (4, 7, 2), "float32")
    >>> sizes = {"graph": (5, a), "node": (7, a)}  # what the bindings hold when 'f' comes
    >>> print(size_conflict("message_passing", "graph", (5, a), (4, f), parse_layout("graph node feat"), sizes, {}))
    message_passing: dimension 'graph' has size 5 in argument 'a' (axis 0 of f32[5,7,7])
    but size 4 in argument 'f' (axis 0 of f32[4,7,2])
      argument 'f' has layout 'graph node feat': expected (graph=5, node=7, feat), got f32[4,7,2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax

from ._errors import count, describe_value
from ._grammar import NamedDim, VariadicDim, dim_text
from ._places import Origin, origin_text

if TYPE_CHECKING:
    from ._grammar import FixedDim, Layout

__all__ = [
    "expression_failed",
    "expression_mismatch",
    "fixed_size_mismatch",
    "size_conflict",
    "structure_conflict",
    "symbolic_note",
    "unbound_expression",
    "variadic_conflict",
    "variadic_does_not_broadcast_to",
    "variadics_do_not_broadcast",
    "wrong_rank",
]

Seen = tuple[Any, "Origin"]  # a size (or a variadic's shape) and where it was seen
Bound = Mapping[str, Seen]  # the sizes (or the variadics' shapes) bound so far, by name
Structure = tuple[Any, Sequence[str], str]  # a PyTree's treedef, its leaf paths, and where it was seen


def wrong_rank(
    function: str,
    place: str,
    value: Any,
    layout: Layout,
    *,
    parameter: str | None = None,
    per_example: Layout | None = None,
    missing: Sequence[Any] | None = None,
    shared_over: tuple[str, ...] = (),
) -> str:
    """An array with a rank its layout does not admit.

    ``missing``: the batch dims an argument with its per-example rank lacks; else ``shared_over``:
    the batch dims of an argument not mapped over them that has them anyway.
    """
    message = (
        f"{function}: {place} has {count(len(value.shape), 'dim')} ({describe_value(value)}) but its layout {str(layout)!r} "
        f"needs {layout.rank_text}"
    )
    if missing is not None and per_example is not None and _is_key_array(value):
        names = ", ".join(repr(dim_text(dim)) for dim in missing)
        dims = f"batch dim {names} is" if len(missing) == 1 else f"batch dims {names} are"
        message += (
            f". It has the per-example shape {str(per_example)!r}: the {dims} missing. Give each example its own "
            f"keys: pass them with the batch dims, split from one key with jax.random.split. Sharing keys gives "
            f"every example the same random numbers; only if that is what you want, say so: "
            f"layouts={{{parameter!r}: None}}."
        )
    elif missing is not None and per_example is not None:
        names = ", ".join(repr(dim_text(dim)) for dim in missing)
        dims = f"batch dim {names} is" if len(missing) == 1 else f"batch dims {names} are"
        message += (
            f". It has the per-example shape {str(per_example)!r}: the {dims} missing. To share one value across "
            f"the batch, give it a layout without {'it' if len(missing) == 1 else 'them'}: "
            f"layouts={{{parameter!r}: {str(per_example)!r}}}. {_batch_of_one(parameter, layout, missing)}"
        )
    elif shared_over:
        names = ", ".join(map(repr, shared_over))
        batched = " ".join((*shared_over, str(layout))).strip()
        message += (
            f". Its layout has no {names}, so one value of it is shared across the batch: pass one, "
            f"or map it too with layouts={{{parameter!r}: {batched!r}}}."
        )
    return message


def _is_key_array(value: Any) -> bool:
    """A typed PRNG key array (``jax.random.key``): never to be shared across a batch by a hint."""
    try:
        return bool(jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key))
    except Exception:
        return False


def _batch_of_one(parameter: str | None, layout: Layout, missing: Sequence[Any]) -> str:
    """The other fix for a missing batch dim: a batch of one, or a spec whose batch dims may be absent."""
    axes = [index for index, dim in enumerate(layout.dims) if dim in missing]
    if axes == list(range(len(axes))):  # leading, as the "graph" shorthand puts them
        add = f"{parameter}[{', '.join(['None'] * len(axes))}]"
        return (
            f"If it is one example, make it a batch of one ({add}), or batch with a '*batch' spec, whose "
            "batch dims an argument may lack (they broadcast)."
        )
    return f"If it is one example, make it a batch of one (jnp.expand_dims({parameter}, {tuple(axes)!r}))."


def fixed_size_mismatch(function: str, dim: FixedDim, layout: Layout, seen: Seen) -> str:
    """A dim the layout fixes (``3``, ``rep=3``) with another size."""
    size, origin = seen
    what = f"'{dim.label}'" if dim.label else f"{dim.size}"
    return (
        f"{function}: dimension {what} of layout {str(layout)!r} must have size "
        f"{dim.size}, but {origin_text(origin)} has {size}"
    )


def size_conflict(
    function: str, name: str, known: Seen, seen: Seen, layout: Layout, sizes: Bound, variadics: Bound
) -> str:
    """A named dim seen with two sizes; the last line: the shape the second place was expected to have."""
    conflict = _both_sides(f"size {known[0]}", known[1], f"size {seen[0]}", seen[1])
    return f"{function}: dimension '{name}' has {conflict}{_expected(seen[1], layout, sizes, variadics)}"


def variadic_conflict(
    function: str, name: str, known: Seen, seen: Seen, layout: Layout, sizes: Bound, variadics: Bound
) -> str:
    """A variadic dim (``*b``) seen with two shapes where one is needed, and the shape expected."""
    conflict = _both_sides(known[0], known[1], seen[0], seen[1])
    return f"{function}: the dims '*{name}' are {conflict}{_expected(seen[1], layout, sizes, variadics)}"


def variadics_do_not_broadcast(function: str, name: str, known: Seen, seen: Seen) -> str:
    """A broadcast variadic dim (``*batch``) with two shapes that do not broadcast."""
    return f"{function}: the dims '*{name}' do not broadcast: {_both_sides(known[0], known[1], seen[0], seen[1])}"


def variadic_does_not_broadcast_to(function: str, name: str, seen: Seen, target: Seen) -> str:
    """A ``*#name`` shape that does not broadcast to the shape a plain ``*name`` token has."""
    (shape, origin), (target_shape, target_origin) = seen, target
    return (
        f"{function}: the dims '*{name}' are {shape} in {origin_text(origin)}, which does not broadcast "
        f"to {target_shape} in {origin_text(target_origin)}"
    )


def symbolic_note(first: Any, second: Any, decided: tuple[str, Any, Any] | None) -> str:
    """Added to a conflict of symbolic sizes (``jax.export``) JAX can neither prove equal nor different.

    ``decided``: a constraint under which JAX proves them equal, and the two sizes as it reduces them
    then (``_expressions.deciding_constraint``), or None.
    """
    why = "\n  (JAX cannot prove these symbolic sizes equal, and jax.vmap and jaxtyping take sizes as equal only where it can"
    if decided is None:
        return (
            f"{why}: export them as one symbol, from one jax.export.SymbolicScope, or with jax.export constraints "
            "under which JAX proves them equal)"
        )
    constraint, *reduced = decided
    spelled = f"jax.export.symbolic_shape(..., constraints=({constraint!r},))"
    if " == " not in constraint:
        changes = [
            f"{before} to {after}"
            for before, after in zip((first, second), reduced, strict=True)
            if str(before) != str(after)
        ]
        return f"{why}. With {spelled} JAX reduces {' and '.join(changes)}, and the sizes agree)"
    symbol, other = (side.strip() for side in constraint.split(" == "))
    if isinstance(first, int) or isinstance(second, int):
        return f"{why}: a symbol is not a fixed size. If {symbol} is always {other}, export it as {other}, or say so: {spelled})"
    if other.isidentifier():
        pair = " and ".join(sorted((symbol, other)))
        return f"{why}: distinct symbols are distinct sizes. If {pair} are one size, export them as one symbol, or say so: {spelled})"
    return f"{why}. If {symbol} is always {other}, say so: {spelled})"


def structure_conflict(function: str, name: str, known: Structure, seen: Structure) -> str:
    """Two ``PyTree[..., name]`` values of different structures: the leaf paths only one of them has."""
    (known_treedef, known_paths, known_place), (treedef, paths, place) = known, seen
    extra = [path for path in known_paths if path not in paths]
    missing = [path for path in paths if path not in known_paths]
    if extra:
        detail = f"{known_place} has {', '.join(extra)}, which {place} lacks"
    elif missing:
        detail = f"{place} has {', '.join(missing)}, which {known_place} lacks"
    else:
        detail = f"{known_place} is {known_treedef} but {place} is {treedef}"
    return (
        f"{function}: {place} and {known_place} must have the same PyTree structure '{name}' "
        f"(both are annotated PyTree[..., '{name}']): {detail}"
    )


def unbound_expression(function: str, expression: str, place: str, error: NameError) -> str:
    """A dim expression (``2*f``) naming what no argument of the call binds."""
    return (
        f"{function}: cannot evaluate the dimension {expression!r} of "
        f"{place} ({error}): no argument of this call binds that name"
    )


def expression_failed(function: str, expression: str, place: str, error: Exception) -> str:
    """A dim expression whose evaluation raised."""
    return f"{function}: evaluating the dimension {expression!r} of {place} failed: {type(error).__name__}: {error}"


def expression_mismatch(function: str, expression: str, layout: Layout, expected: int, used: Bound, seen: Seen) -> str:
    """A dim expression (``2*f``) whose value is not the size seen; ``used``: the sizes it read."""
    size, origin = seen
    names = ", ".join(f"{name}={known} from {origin_text(where)}" for name, (known, where) in used.items())
    return (
        f"{function}: dimension {expression!r} of layout {str(layout)!r} should be "
        f"{expected}{f' ({names})' if names else ''},\nbut {origin_text(origin)} has {size}"
    )


def _both_sides(known: Any, known_origin: Origin, value: Any, origin: Origin) -> str:
    """``size 5 in argument 'a' (...)\\nbut size 4 in argument 'f' (...)``."""
    return f"{known} in {origin_text(known_origin)}\nbut {value} in {origin_text(origin)}"


def _expected(origin: Origin, layout: Layout, sizes: Bound, variadics: Bound) -> str:
    """``\\n  argument 'f' has layout 'graph node feat': expected (graph=5, node=7, feat), got f32[4,7,2]``."""
    parts = []
    for dim in layout.dims:
        if isinstance(dim, NamedDim) and dim.name in sizes:
            parts.append(f"{dim.name}={sizes[dim.name][0]}")
        elif isinstance(dim, VariadicDim) and dim.name in variadics:
            parts.append(f"*{dim.name}={variadics[dim.name][0]}")
        else:
            parts.append(dim_text(dim))
    return f"\n  {origin.place} has layout {str(layout)!r}: expected ({', '.join(parts)}), got {origin.value}"
