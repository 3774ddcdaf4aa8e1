"""Runs one call's ``VmapNest`` with ``jax.vmap``: nothing else in shapedmap applies JAX's transforms.

The per-example body gets the mapped arrays from ``vmap`` and every other value of the call
(static arguments, unmapped ``None``s) through ``Held``, a PyTree with no leaves: ``vmap``
passes it through untouched, so one built nest serves every call with the same levels,
whatever its static values. Built nests are remembered per plan, keyed by the nest and the
body (``jax.vmap`` builds a wrapper with ``inspect.signature`` each time: ~12 µs a level).

A chunked level (``chunk=``) is built by ``_chunks.in_slices``: a ``jax.lax.map`` (a scan) over
slices of the batch, each slice one ``vmap``, as ``jax.lax.map(..., batch_size=)`` does it; a
call with chunked levels is first checked by ``_chunks.check_call`` (even with ``check=False``).
A ``Budget`` is settled per abstract signature by compiling the call (``_budget.settled``);
``chosen_chunks`` traces the candidates for it.

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
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jaxtyping import TypeCheckError

from . import _budget as budget
from . import _chunks as chunks
from . import _map_messages as messages
from ._arrays import is_result_leaf
from ._errors import ShapeError, SpecError
from ._layout_trees import unmapped_somewhere
from ._levels import Budget, Level, VmapNest, vmap_axes
from ._plan import Plan, call_arguments

__all__ = ["Held", "chosen_chunks", "result_shapes", "run", "runner_for"]


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
    return runner_for(plan, nest, body)(values)


def runner_for(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[[Sequence[Any]], Any]:
    """The function that runs one call's values (one per parameter) through the ``jax.vmap`` nest of
    ``nest`` over ``body``, naming what goes wrong inside; built once per plan, nest and body."""
    # Keyed on the body's identity: a body may be unhashable (an Equinox module hashes its
    # arrays); the runner holds the body, so its id is not reused while the entry lives.
    # The last one built is kept beside the memo: most calls run the nest and body the last did.
    last = plan.__dict__.get("_last_runner")
    if last is not None and last[0] is nest and last[1] is body:
        return last[2]
    runner = plan.memo(("runner", nest, id(body)), lambda: _runner(plan, nest, body))
    plan.__dict__["_last_runner"] = (nest, body, runner)  # one tuple, set at once: thread-safe
    return runner


def _runner(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[[Sequence[Any]], Any]:
    vmapped = _vmapped(plan, nest, body)
    if plan.positional_and_mapped and not nest.squeeze and not nest.chunked and not _flags_return(nest):
        # The values are the vmap's arguments, as they come: nothing to squeeze, check or flag.
        def run_positional(values: Sequence[Any]) -> Any:
            try:
                return vmapped(*values)
            except Exception as error:
                named = _named_error(plan, nest, body, list(values), error)
                if named is error:
                    raise
                raise named from named.__cause__  # the cause _named_error chose

        return run_positional

    def run_any(values: Sequence[Any]) -> Any:
        mapped = list(values) if plan.positional_and_mapped else [values[i] for i in plan.array_arguments]
        if nest.squeeze:
            mapped = [
                value if not axes else jax.tree.map(lambda leaf, axes=axes: jax.numpy.squeeze(leaf, axes), value)
                for value, axes in zip(mapped, nest.squeeze, strict=True)
            ]
        if nest.chunked:
            chunks.check_call(plan, nest, mapped)
        returned = _BODY_RETURNED.set([False])
        try:
            if plan.positional_and_mapped:
                return vmapped(*mapped)
            return vmapped(Held(tuple(values)), *mapped)
        except Exception as error:
            named = _named_error(plan, nest, body, mapped, error)
            if named is error:
                raise
            raise named from named.__cause__  # the cause _named_error chose
        finally:
            _BODY_RETURNED.reset(returned)

    return run_any


def _named_error(
    plan: Plan, nest: VmapNest, body: Callable[..., Any], mapped: list[Any], error: Exception
) -> BaseException:
    """The error a call raises for ``error``, raised inside its map: shapedmap's own (with its cause
    set) for a per-example check, a varying unmapped result or a collective over chunks; else
    ``error`` itself, with a note saying which map of which function it came from."""
    if isinstance(error, TypeCheckError):
        if getattr(body, "checks_parameters", False) and not getattr(error, "_shapedmap_inside_body", False):
            return _caused(ShapeError(messages.per_example_check_failed(plan, nest.levels, mapped, error)), error)
    elif isinstance(error, _UnmappedResultVaries):
        return _caused(ShapeError(messages.varying_unmapped_result(plan, error.level)), None)
    elif isinstance(error, NameError):
        # JAX's NameError for an axis name no level binds (a Python name lookup sets ``name``).
        if (
            type(error) is NameError
            and error.name is None
            and getattr(error, "_shapedmap_from_body", False)
            and nest.chunked
        ):
            return _caused(SpecError(messages.collective_over_chunks(plan, nest.levels, error)), error)
    elif not getattr(error, "_shapedmap_from_body", False) and isinstance(error, SpecError | ShapeError):
        # A Budget that cannot be met or measured, or sizes the slices cannot take, are about the
        # call, not raised inside the map.
        return error
    error.add_note(messages.raised_inside_the_map(plan, nest.levels, mapped, error))
    return error


def _caused(error: BaseException, cause: BaseException | None) -> BaseException:
    """``error``, to be raised ``from cause`` (``from None`` when None)."""
    error.__cause__ = cause
    return error


def result_shapes(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> Any:
    """The results' shapes and dtypes for a call, traced without running or placing anything."""

    def trace(*mapped: Any) -> Any:
        return run(plan, nest, body, plan.with_mapped(values, mapped))

    return jax.eval_shape(trace, *(values[i] for i in plan.array_arguments))


def chosen_chunks(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> VmapNest:
    """``nest`` with its ``Budget`` settled for the abstract shapes of ``values`` (one per parameter).

    The chunk is the largest power of two whose compiled call needs at most the budget's bytes of
    temporary memory, or the whole batch (``_budget.settled``); remembered per abstract signature.
    """
    return budget.settled(plan, nest, values, lambda candidate: _traced(plan, candidate, body, values))


def _traced(plan: Plan, nest: VmapNest, body: Callable[..., Any], values: list[Any]) -> Any:
    """This call under ``jax.jit`` with ``nest``, traced on the abstract shapes of ``values``."""
    built = _vmapped(plan, nest, body)
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


def _vmapped(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[..., Any]:
    """``_build``'s nest, built once per plan, nest and body (the runner's, a trace's and a Budget's)."""
    return plan.memo(("vmap", nest, id(body)), lambda: _build(plan, nest, body))


def _flags_return(nest: VmapNest) -> bool:
    """Some level leaves a result unmapped: its error is told apart by whether the body returned."""
    return any(unmapped_somewhere(axis) for level in nest.levels for axis in level.out_axes)


def _build(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[..., Any]:
    """The nest of ``jax.vmap`` over ``body``, outermost level first (chunked levels in slices)."""
    if any(isinstance(level.chunk, Budget) for level in nest.levels):
        return _choosing_chunks(plan, nest, body)
    held = not plan.positional_and_mapped
    vmapped = _marking_body_errors(_per_example(plan, body) if held else body, flags_return=_flags_return(nest))
    for level in reversed(nest.levels):
        unmapped = all(axis is None for axis in level.in_axes)
        in_axes = (None, *level.in_axes) if held else level.in_axes
        if level.chunk is not None and not unmapped:
            vmapped = chunks.in_slices(vmapped, level, in_axes, plan.vmap_out_axes(level))
        else:
            vmapped = jax.vmap(
                vmapped,
                in_axes=vmap_axes(in_axes),
                out_axes=vmap_axes(plan.vmap_out_axes(level)),
                axis_name=level.axis_name,
                axis_size=level.size if unmapped else None,
                spmd_axis_name=level.spmd_axis_name,
            )
        if any(map(unmapped_somewhere, level.out_axes)):
            vmapped = _naming_unmapped_results(vmapped, level)
    if not nest.levels or _flags_return(nest):
        vmapped = _as_jax_results(vmapped)  # what vmap does to the results it maps
    return vmapped


def _choosing_chunks(plan: Plan, nest: VmapNest, body: Callable[..., Any]) -> Callable[..., Any]:
    """The nest whose ``Budget`` is settled by each call's abstract shapes (``chosen_chunks``)."""

    def call(*arguments: Any) -> Any:
        positional = plan.positional_and_mapped
        values = list(arguments) if positional else plan.with_mapped(arguments[0].values, arguments[1:])
        chosen = chosen_chunks(plan, nest, body, values)
        return _vmapped(plan, chosen, body)(*arguments)

    return call


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


def _marking_body_errors(body: Callable[..., Any], *, flags_return: bool) -> Callable[..., Any]:
    """``body``, marking the exceptions it raises as its own and, with ``flags_return``, noting that
    it returned (see ``_naming_unmapped_results``; the runner of such a nest sets the flag)."""

    def call(*args: Any) -> Any:
        try:
            output = body(*args)
        except Exception as error:
            error._shapedmap_from_body = True  # type: ignore[attr-defined]
            raise
        if flags_return:
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
