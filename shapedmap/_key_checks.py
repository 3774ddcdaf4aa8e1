"""PRNG keys in a call: one key split into one per example, and the errors a key's batch dims raise.

``split_keys`` is the step of the call path between the argument check and the map: each key of a
``SplitKey`` parameter becomes ``jax.random.split(key, batch_shape)``, ``batch_shape`` the size of
every batch name of the call, outermost first, so the keys are the hand-written ones whatever the
chunk or the mesh. ``check_split_key`` refuses several keys where ``SplitKey`` takes one, and
``passes_one_key`` tells one key passed where one per example is expected, which
``one_key_for_many`` words: split it, or ``SplitKey``, before sharing it on purpose.

Example:
    >>> import jax
    >>> from jaxtyping import Array, Float, Key
    >>> from shapedmap import SplitKey, batched
    >>> from shapedmap._checks import check_arguments
    >>> from shapedmap._plan import plan_of
    >>> def noisy(x: Float[Array, "n"], key: Key[Array, ""]) -> Float[Array, "n"]:
    ...     return x + jax.random.normal(key, x.shape)
    >>> plan = plan_of(batched(noisy, "run batch", layouts={"key": SplitKey()}))
    >>> bindings, values = check_arguments(plan, [jax.numpy.ones((2, 5, 3)), jax.random.key(0)])
    >>> split_shape(plan, bindings), split_keys(plan, values, bindings)[1].shape
    ((2, 5), (2, 5))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax

from ._errors import ShapeError, describe_value
from ._grammar import dim_text
from ._keys import is_one_key, is_one_key_type, is_raw_key_dtype

if TYPE_CHECKING:
    from ._binding import Bindings
    from ._plan import Argument, Plan

__all__ = ["check_split_key", "one_key_for_many", "passes_one_key", "split_keys", "split_shape"]


def split_shape(plan: Plan, bindings: Bindings) -> tuple[Any, ...]:
    """The batch shape of this call: every batch name's size, outermost first (``*batch``: its dims)."""
    shape: list[Any] = []
    for name in plan.order:
        if name == plan.variadic_batch:
            seen = bindings.variadics.get(name)
            shape.extend(seen[0] if seen is not None else ())
            continue
        size = bindings.size_of(name)
        if size is None:
            size = plan.fixed_sizes.get(name)
        if size is None:
            keys = ", ".join(f"'{plan.arguments[i].name}'" for i in plan.split_keys)
            raise ShapeError(
                f"{plan.function}: no argument gives the batch dim '{name}' a size, so the key {keys} cannot be "
                f"split into one key per example; pass an argument with '{name}', or give it a size in the spec "
                f"('{name}=8')"
            )
        shape.append(size)
    return tuple(shape)


def split_keys(plan: Plan, values: list[Any], bindings: Bindings) -> list[Any]:
    """``values`` with each ``SplitKey`` parameter's key replaced by ``jax.random.split(key, batch_shape)``.

    A single batch name splits as ``jax.random.split(key, n)``. Abstract values
    (``jax.ShapeDtypeStruct``, for ``explain``) are split abstractly. None (an optional key) stays None.
    """
    if not plan.split_keys:
        return values
    shape = split_shape(plan, bindings)
    count = shape[0] if len(shape) == 1 else shape
    values = list(values)
    for index in plan.split_keys:
        key = values[index]
        if key is None:
            continue
        if isinstance(key, jax.ShapeDtypeStruct):
            values[index] = jax.eval_shape(lambda key: jax.random.split(key, count), key)
        else:
            values[index] = jax.random.split(key, count)
    return values


def check_split_key(function: str, argument: Argument, value: Any) -> None:
    """Several keys (a key array, or raw keys with batch dims) where ``SplitKey`` takes one: a ``ShapeError``.

    Anything else that is not one key is left to the per-example layout's own checks.
    """
    try:
        shape, dtype = tuple(value.shape), value.dtype
    except Exception:
        return
    typed = jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    raw = is_raw_key_dtype(dtype) and len(shape) >= 2 and shape[-1] in (2, 4)
    if not (typed and shape != ()) and not raw:
        return
    count = shape if typed else shape[:-1]
    placement = argument.placement
    batch = " and ".join(f"'{name}'" for name in placement.batch_names) if placement is not None else "the batch"
    layout = str(placement.batched) if placement is not None else ""
    raise ShapeError(
        f"{function}: argument '{argument.name}' takes one key, which layouts={{{argument.name!r}: SplitKey()}} "
        f"splits into one key per example over {batch}, but got {describe_value(value)}, keys of shape {count}. "
        f"Pass one key, such as jax.random.key(0); to pass one key per example yourself, drop SplitKey from "
        f"layouts= (its layout is then {layout!r})."
    )


def passes_one_key(argument: Argument, value: Any) -> bool:
    """Is ``value`` one key, passed where the argument's layout maps one key per example?"""
    placement = argument.placement
    if argument.split or placement is None or not placement.batch_names or placement.variadic_batch is not None:
        return False
    return is_one_key_type(argument.value.array) and is_one_key(argument.value.array, value)


def one_key_for_many(plan: Plan, bindings: Bindings, argument: Argument, value: Any) -> str:
    """One key where one per example is expected: split it (with the sizes), ``SplitKey``, then sharing."""
    placement = argument.placement
    names = placement.batch_names if placement is not None else ()
    sizes = [bindings.size_of(name) for name in names]
    known = [str(size) if size is not None else name for name, size in zip(names, sizes, strict=True)]
    count = known[0] if len(known) == 1 else f"({', '.join(known)})"
    over = " and ".join(f"'{name}'" for name in names)
    expected = ", ".join(
        f"{name}={size}" if size is not None else name for name, size in zip(names, sizes, strict=True)
    )
    rest = [dim_text(dim) for dim in placement.per_example.dims] if placement is not None else []
    layout = str(placement.batched) if placement is not None else ""
    name = argument.name
    return (
        f"{plan.function}: argument '{name}' is one key ({describe_value(value)}), but its layout {layout!r} maps it "
        f"over {over}: expected one key per example ({', '.join([expected, *rest])}). Split it into one key per "
        f"example: {name} = jax.random.split({name}, {count}); or let shapedmap split it: "
        f"layouts={{{name!r}: SplitKey()}}. Sharing one key gives every example the same random numbers (the same "
        f"noise, the same dropout mask); only if that is what you want, say so: layouts={{{name!r}: None}}."
    )
