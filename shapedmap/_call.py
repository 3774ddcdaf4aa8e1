"""Runs one call's ``VmapNest`` with ``jax.vmap``: nothing else in shapedmap applies JAX's transforms.

The per-example body gets the mapped arrays from ``vmap`` and every other value of the call
(static arguments, unmapped ``None``s) through ``Held``, a PyTree with no leaves: ``vmap``
passes it through untouched, so one built nest serves every call with the same levels,
whatever its static values. Built nests are remembered per plan, keyed by the nest and the
body (``jax.vmap`` builds a wrapper with ``inspect.signature`` each time: ~12 µs a level).

A chunked level (``chunk=``) is a ``jax.lax.map`` (a scan) over slices of the batch, each slice
one ``vmap``, with the remainder in one more ``vmap``, as ``jax.lax.map(..., batch_size=)``
does it; with ``shard=`` each device maps its own shard in slices. A ``Budget`` is settled per
abstract signature by compiling the call at a few chunks (``chosen_chunks``).

Errors raised inside the map are named here: a per-example check that fails, a result
that varies over a batch dim its layout lacks, a collective over a chunked batch name, and
any other error gets a note saying which map of which function it came from.

Example:
    >>> from shapedmap._annotations import read_function
    >>> from shapedmap._binding import Bindings
    >>> from shapedmap._nest import nest_for
    >>> from shapedmap._planner import make_plan
    >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    ...     return x @ y
    >>> plan = make_plan(read_function(vv), "b a, a -> b")
    >>> nest = nest_for(plan, [], Bindings("vv"))
    >>> run(plan, nest, vv, [jnp.ones((4, 3)), jnp.ones(3)]).shape
    (4,)
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jaxtyping import TypeCheckError

from . import _map_messages as messages
from ._checks import is_result_leaf
from ._errors import ShapeError, SpecError
from ._levels import Budget, Level, VmapNest
from ._plan import Plan, call_arguments

__all__ = ["Held", "chosen_chunks", "result_shapes", "run"]


# Per call: has the body returned yet? (Set by the body's wrapper, read when vmap raises.)
_BODY_RETURNED: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("shapedmap_body_returned")


class Held:
    """The call's values, carried through ``vmap`` as a PyTree without leaves (never mapped)."""

    __slots__ = ("values",)

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values


jax.tree_util.register_pytree_node(Held, lambda held: ((), held.values), lambda values, _: Held(values))


def run(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> Any:
    """Call ``body`` (the per-example function) under ``nest`` on this call's ``values``."""
    mapped = [values[i] for i in plan.array_arguments]
    if nest.squeeze:
        mapped = [
            value if not axes else jax.tree.map(lambda leaf, axes=axes: jax.numpy.squeeze(leaf, axes), value)
            for value, axes in zip(mapped, nest.squeeze, strict=True)
        ]
    # Keyed on the body's identity: a body may be unhashable (an Equinox module hashes its
    # arrays); the built vmap holds the body, so its id is not reused while the entry lives.
    vmapped = plan.memo(("vmap", nest, id(body)), lambda: _build(plan, nest, body))
    returned = _BODY_RETURNED.set([False])
    try:
        if plan.positional_and_mapped:
            return vmapped(*mapped)
        return vmapped(Held(tuple(values)), *mapped)
    except TypeCheckError as error:
        if getattr(body, "checks_parameters", False) and not getattr(error, "_shapedmap_inside_body", False):
            raise ShapeError(messages.per_example_check_failed(plan, nest.levels, mapped, error)) from error
        error.add_note(messages.raised_inside_the_map(plan, nest.levels, mapped, error))
        raise
    except _UnmappedResultVaries as error:
        raise ShapeError(messages.varying_unmapped_result(plan, error.level)) from None
    except NameError as error:
        # JAX's NameError for an axis name no level binds (a Python name lookup sets ``name``).
        if (
            type(error) is NameError
            and error.name is None
            and getattr(error, "_shapedmap_from_body", False)
            and any(level.chunk is not None for level in nest.levels)
        ):
            raise SpecError(messages.collective_over_chunks(plan, nest.levels, error)) from error
        error.add_note(messages.raised_inside_the_map(plan, nest.levels, mapped, error))
        raise
    except Exception as error:
        # A Budget that cannot be met or measured is about the call, not raised inside the map.
        if getattr(error, "_shapedmap_from_body", False) or not isinstance(error, SpecError):
            error.add_note(messages.raised_inside_the_map(plan, nest.levels, mapped, error))
        raise
    finally:
        _BODY_RETURNED.reset(returned)


def result_shapes(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> Any:
    """The results' shapes and dtypes for a call, traced without running or placing anything."""

    def trace(*mapped: Any) -> Any:
        return run(plan, nest, body, plan.with_mapped(values, mapped))

    return jax.eval_shape(trace, *(values[i] for i in plan.array_arguments))


def chosen_chunks(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> VmapNest:
    """``nest`` with its ``Budget`` settled for the abstract shapes of ``values`` (one per parameter).

    The chunk is the largest power of two whose compiled call needs at most the budget's bytes of
    temporary memory: the whole batch if that fits, else a bisection over the powers of two
    between 1 and the batch size, each compiled once; remembered per abstract signature.
    """
    depth = next((depth for depth, level in enumerate(nest.levels) if isinstance(level.chunk, Budget)), None)
    if depth is None:
        return nest
    return plan.memo(
        ("chunk", nest, _abstract_signature(plan, values)), lambda: _search(plan, nest, body, values, depth)
    )


def _abstract_signature(plan: Plan, values: list[Any]) -> Any:
    """What the compiled call depends on: the arrays' types and structure, the other values' types and hashes.

    A static value is not kept (a cache must not keep ``self`` alive); two that share a type and a
    hash share a chunk, which can only change how much memory a call takes, never its values.
    """
    parts: list[Any] = []
    for index, value in enumerate(values):
        if index in plan.array_arguments:
            leaves, treedef = jax.tree_util.tree_flatten(value)
            parts.append((treedef, *(jax.typeof(leaf) for leaf in leaves)))
            continue
        try:
            parts.append((type(value), hash(value)))
        except TypeError:
            parts.append(type(value))
    return tuple(parts)


def _search(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any], depth: int) -> VmapNest:
    level = nest.levels[depth]
    budget = level.chunk.bytes
    mapped = [values[i] for i in plan.array_arguments]
    size = messages.level_sizes(nest.levels, mapped)[depth]

    def with_chunk(chunk: int) -> VmapNest:
        levels = list(nest.levels)
        levels[depth] = dataclasses.replace(level, chunk=chunk)
        return dataclasses.replace(nest, levels=tuple(levels))

    def temporary_bytes(chunk: int) -> int:
        traced = _traced(plan, with_chunk(chunk), body, values)  # the body's errors are the call's
        try:
            return traced.lower().compile().memory_analysis().temp_size_in_bytes
        except Exception as error:
            raise SpecError(messages.budget_unmeasurable(plan, level, chunk, error)) from error

    def fits(chunk: int) -> bool:
        return temporary_bytes(chunk) <= budget

    if size <= 1 or fits(size):  # the whole batch in one slice
        return with_chunk(max(size, 1))
    needed = temporary_bytes(1)
    if needed > budget:
        raise SpecError(messages.budget_unmet(plan, level, budget, size, needed))
    low, high = 0, (size - 1).bit_length()  # 2**low fits; 2**high >= size does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(2**middle) else (low, middle)
    return with_chunk(2**low)


def _traced(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> Any:
    """This call under ``jax.jit`` with ``nest``, traced on the abstract shapes of ``values``."""
    built = plan.memo(("vmap", nest, id(body)), lambda: _build(plan, nest, body))
    mapped = [jax.tree.map(_abstract, values[i]) for i in plan.array_arguments]
    held = Held(tuple(values))  # the other values, closed over: jit would hash them as static
    call = built if plan.positional_and_mapped else functools.partial(built, held)
    returned = _BODY_RETURNED.set([False])  # this trace's own: a call's flag stays as it was
    try:
        return jax.jit(call).trace(*mapped)
    finally:
        _BODY_RETURNED.reset(returned)


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    """The shape and dtype of an array, a tracer or a Python number: nothing of its values."""
    aval = jax.typeof(leaf)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def _build(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[..., Any]:
    """The nest of ``jax.vmap`` over ``body``, outermost level first (chunked levels in slices)."""
    if any(isinstance(level.chunk, Budget) for level in nest.levels):
        return _choosing_chunks(plan, nest, body)
    held = not plan.positional_and_mapped
    vmapped = _marking_body_errors(_per_example(plan, body) if held else body)
    for level in reversed(nest.levels):
        unmapped = all(axis is None for axis in level.in_axes)
        in_axes = (None, *level.in_axes) if held else level.in_axes
        if level.chunk is not None and not unmapped:
            vmapped = _in_slices(vmapped, level, in_axes, plan.vmap_out_axes(level))
        else:
            vmapped = jax.vmap(
                vmapped,
                in_axes=in_axes,
                out_axes=plan.vmap_out_axes(level),
                axis_name=level.axis_name,
                axis_size=level.size if unmapped else None,
                spmd_axis_name=level.spmd_axis_name,
            )
        if None in level.out_axes:
            vmapped = _naming_unmapped_results(vmapped, level)
    if not nest.levels or any(None in level.out_axes for level in nest.levels):
        vmapped = _as_jax_results(vmapped)  # what vmap does to the results it maps
    return vmapped


def _choosing_chunks(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[..., Any]:
    """The nest whose ``Budget`` is settled by each call's abstract shapes (``chosen_chunks``)."""

    def call(*arguments: Any) -> Any:
        positional = plan.positional_and_mapped
        values = list(arguments) if positional else plan.with_mapped(arguments[0].values, arguments[1:])
        chosen = chosen_chunks(plan, nest, body, values)
        return plan.memo(("vmap", chosen, id(body)), lambda: _build(plan, chosen, body))(*arguments)

    return call


def _in_slices(
    function: Callable[..., Any], level: Level, in_axes: tuple[int | None, ...], out_axes: Any
) -> Callable[..., Any]:
    """The level's ``vmap`` of ``function``, run over slices of ``level.chunk`` examples.

    A batch of at most one chunk is one ``vmap``; a larger one a ``jax.lax.map`` (a scan) over
    its full slices, then one ``vmap`` of the remainder, as ``jax.lax.map(..., batch_size=)``
    does. With ``devices`` > 1 (``shard=``) the batch axis is split into (devices, shard) and
    each device maps its own shard in slices. No axis name is bound: a slice is not the batch.
    """
    one_slice = jax.vmap(function, in_axes=in_axes, out_axes=out_axes)
    chunk = level.chunk

    def per_device(*arguments: Any) -> Any:
        size = _mapped_size(arguments, in_axes)
        if size <= chunk:
            return one_slice(*arguments)
        return _over_slices(one_slice, arguments, in_axes, out_axes, size, chunk)

    if level.devices == 1:
        return per_device
    devices = level.devices
    # The device axis goes just before the batch axis: one further left when counted from the end.
    outer = functools.partial(jax.tree.map, lambda axis: axis if axis >= 0 else axis - 1)
    on_devices = jax.vmap(
        per_device, in_axes=outer(in_axes), out_axes=outer(out_axes), spmd_axis_name=level.spmd_axis_name
    )

    def sharded(*arguments: Any) -> Any:
        split = [
            argument if axis is None else jax.tree.map(lambda leaf, axis=axis: _split(leaf, axis, devices), argument)
            for argument, axis in zip(arguments, in_axes, strict=True)
        ]
        return _over_outputs(out_axes, _merge, on_devices(*split))

    return sharded


def _mapped_size(arguments: tuple[Any, ...], in_axes: tuple[int | None, ...]) -> int:
    """The size of the axis the first mapped argument is mapped over (0: no leaf to map)."""
    for argument, axis in zip(arguments, in_axes, strict=True):
        leaves = jax.tree.leaves(argument) if axis is not None else []
        if leaves:
            return leaves[0].shape[axis]
    return 0


def _over_slices(
    one_slice: Callable[..., Any],
    arguments: tuple[Any, ...],
    in_axes: tuple[int | None, ...],
    out_axes: Any,
    size: int,
    chunk: int,
) -> Any:
    """``one_slice`` scanned over the full slices, then on the remainder: the level's results."""
    count, rest = divmod(size, chunk)
    mapped = [i for i, axis in enumerate(in_axes) if axis is not None]

    def cut(start: int, stop: int) -> list[Any]:
        return [
            jax.tree.map(lambda leaf, axis=in_axes[i]: jax.lax.slice_in_dim(leaf, start, stop, axis=axis), arguments[i])
            for i in mapped
        ]

    def on(slices: list[Any]) -> Any:
        full = list(arguments)
        for i, value in zip(mapped, slices, strict=True):
            if chunk == 1:  # one example: its batch axis back, at ``axis`` of the slice
                value = jax.tree.map(lambda leaf, axis=in_axes[i]: jax.numpy.expand_dims(leaf, axis), value)
            full[i] = value
        return one_slice(*full)

    whole = cut(0, count * chunk) if rest else [arguments[i] for i in mapped]
    stacked = [
        jax.tree.map(lambda leaf, axis=in_axes[i]: _stack(leaf, axis, count, chunk), value)
        for i, value in zip(mapped, whole, strict=True)
    ]
    output = _over_outputs(out_axes, _unstack, jax.lax.map(on, stacked))
    if not rest:
        return output
    return _over_outputs(out_axes, _join, output, on(cut(count * chunk, size)))


def _over_outputs(out_axes: Any, leaf_function: Callable[..., Any], *outputs: Any) -> Any:
    """``leaf_function(axis, *leaves)`` over the leaves of the level's outputs, ``axis`` from ``out_axes``."""
    if isinstance(out_axes, tuple):  # one per result of a tuple
        return tuple(
            jax.tree.map(lambda *leaves, axis=axis: leaf_function(axis, *leaves), *results)
            for axis, *results in zip(out_axes, *outputs, strict=True)
        )
    return jax.tree.map(lambda *leaves: leaf_function(out_axes, *leaves), *outputs)


def _split(leaf: Any, axis: int, parts: int) -> Any:
    """``leaf`` with its ``axis`` of size n reshaped to (parts, n // parts)."""
    axis %= leaf.ndim
    return leaf.reshape(*leaf.shape[:axis], parts, leaf.shape[axis] // parts, *leaf.shape[axis + 1 :])


def _merge(axis: int | None, leaf: Any) -> Any:
    """The inverse of ``_split`` for a result whose batch axis is ``axis`` (the parts' axis just before it)."""
    if axis is None:
        return leaf
    axis %= leaf.ndim - 1
    return leaf.reshape(*leaf.shape[:axis], leaf.shape[axis] * leaf.shape[axis + 1], *leaf.shape[axis + 2 :])


def _stack(leaf: Any, axis: int, count: int, chunk: int) -> Any:
    """``leaf`` as ``count`` slices of ``chunk`` examples on a new leading axis (what the scan runs over).

    Slices of one are the examples themselves, each given back its batch axis inside the scan:
    XLA copies a whole input reshaped to (n, 1, ...).
    """
    axis %= leaf.ndim
    if chunk == 1:
        return jax.numpy.moveaxis(leaf, axis, 0)
    return jax.numpy.moveaxis(leaf.reshape(*leaf.shape[:axis], count, chunk, *leaf.shape[axis + 1 :]), axis, 0)


def _unstack(axis: int | None, leaf: Any) -> Any:
    """The scan's stacked result in one batch axis; a result unmapped here is the same in every slice."""
    if axis is None:
        return leaf[0]
    axis %= leaf.ndim - 1
    return _merge(axis, jax.numpy.moveaxis(leaf, 0, axis))


def _join(axis: int | None, slices: Any, remainder: Any) -> Any:
    """The full slices' result and the remainder's, along the batch axis."""
    if axis is None:
        return slices
    return jax.numpy.concatenate([slices, remainder], axis=axis % remainder.ndim)


def _per_example(plan: Plan, body: Callable[..., Any]) -> Callable[..., Any]:
    """``body`` called with the mapped arrays put back among the call's other values."""

    def per_example(held: Held, *mapped: Any) -> Any:
        args, kwargs = call_arguments(plan.arguments, plan.with_mapped(held.values, mapped))
        return body(*args, **kwargs)

    return per_example


def _as_jax_results(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` whose Python-number and NumPy result leaves become JAX arrays.

    ``jax.vmap`` converts the results it maps; one it does not map (``out_axes=None``), or a
    call with no batch dim to map, would come back as the body returned it.
    """

    def converted(*args: Any) -> Any:
        return jax.tree.map(_as_jax_leaf, function(*args))

    return converted


def _as_jax_leaf(leaf: Any) -> Any:
    if isinstance(leaf, bool | int | float | complex) or (
        isinstance(leaf, np.ndarray | np.generic) and is_result_leaf(leaf)
    ):
        return jax.numpy.asarray(leaf)
    return leaf


class _UnmappedResultVaries(Exception):
    """A result that ``out_axes=None`` leaves unmapped varies over the level that raised this."""

    def __init__(self, level: Level) -> None:
        super().__init__(level.key)
        self.level = level


def _marking_body_errors(body: Callable[..., Any]) -> Callable[..., Any]:
    """``body``, marking the exceptions it raises as its own and noting that it returned
    (see ``_naming_unmapped_results``)."""

    def call(*args: Any) -> Any:
        try:
            output = body(*args)
        except Exception as error:
            error._shapedmap_from_body = True  # type: ignore[attr-defined]
            raise
        _BODY_RETURNED.get()[0] = True
        return output

    return call


def _naming_unmapped_results(vmapped: Callable[..., Any], level: Level) -> Callable[..., Any]:
    """The ``vmap`` of a level with an unmapped result, telling which level a varying result broke.

    ``jax.vmap`` refuses a result that ``out_axes=None`` leaves unmapped but that varies over the
    level, with a ``ValueError`` raised after the body returned. A ``ValueError`` raised after the
    body returned, that the body did not raise (it would be marked) and that no inner level tagged,
    is that one: the innermost level with an unmapped result tags it first. (Before the body runs,
    ``jax.vmap`` can refuse sizes that do not agree; with the checks on, shapedmap has refused them
    first.) JAX's message text is never read.
    """

    def call(*args: Any) -> Any:
        try:
            return vmapped(*args)
        except ValueError as error:
            if getattr(error, "_shapedmap_from_body", False) or not _BODY_RETURNED.get()[0]:
                raise
            raise _UnmappedResultVaries(level) from error

    return call
