"""A chunked level (``chunk=``): ``jax.lax.map`` over slices of the batch, each slice one ``vmap``.

``in_slices`` builds the level's function: a scan over the slices' indices, each step cutting
its slice of ``level.chunk`` examples from every mapped argument where its batch axis lies (a
dynamic slice) and running one ``vmap`` of it; one more ``vmap`` takes the remainder; the
results come out with their examples first and are moved to their axes. That computes what
``explain()`` writes, ``jax.lax.map(f, jnp.moveaxis(x, axis, 0), batch_size=k)``, in the memory
of one slice: moving or stacking the arguments, as that program and ``lax.map`` do, copies the
whole batch (``lax.map`` copies the full slices' examples when the chunk does not divide the
batch). With a remainder, each slice writes its results into buffers the remainder's results
start (stacking and joining them would copy every result). With ``shard=`` (``level.devices`` >
1) each argument's batch axis is split in place into (devices, shard) and each step is a ``vmap``
over the devices (``spmd_axis_name``) of one slice of each shard: the scan runs outside the
devices' ``vmap``, so no device copies its shard into a layout the scan can walk.

A batch size ``jax.export`` leaves symbolic cannot be divided at trace time: the scan then runs
over ``ceil(n / k)`` slices, the last one filled up with copies of the last example (real
values, whose results are dropped), so the body is traced once and never sees made-up inputs.

``check_call`` holds what the slicing needs of a call, checked even with ``check=False``: every
argument mapped over a chunked name has the same size (a shorter one would be sliced silently),
and no transform around the call binds the chunked name (a collective over it in the body would
silently use that outer axis: a chunked level binds none).

Example:
    >>> from shapedmap._levels import Level
    >>> level = Level("graph", None, (0,), (0,), chunk=2)
    >>> in_slices(lambda x: x.sum(), level, (0,), 0)(jnp.arange(10.0).reshape(5, 2))
    Array([ 1.,  5.,  9., 13., 17.], dtype=float32)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import jax
import jax.numpy as jnp

from . import _map_messages as messages
from ._errors import ShapeError, SpecError
from ._expressions import same_size
from ._layout_trees import map_axes
from ._levels import AxesTree, Level, VmapNest, leaf_entries, level_axes, vmap_axes
from ._places import Origin, argument_place, leaf_place
from ._plan import Plan

__all__ = ["check_call", "in_slices"]


def check_call(plan: Plan, nest: VmapNest, mapped: list[Any]) -> None:
    """Refuse a call the chunked levels of ``nest`` would answer wrongly (``mapped``: the array arguments).

    Raises:
        SpecError: a transform around the call binds a chunked batch name as an axis name.
        ShapeError: the arguments mapped over a chunked name do not agree on its size.
    """
    for level in nest.levels:
        if level.chunk is not None and _bound_outside(level.batch_name):
            raise SpecError(messages.chunked_name_bound_outside(plan, level))
    chunked = [depth for depth, level in enumerate(nest.levels) if level.chunk is not None]
    first: dict[int, tuple[Any, int, int, int]] = {}  # per chunked level: (size, position, leaf, axis) seen first
    for position, value in enumerate(mapped):
        entries = leaf_entries(nest.levels, position, value)  # None: every leaf has the level's one axis
        for number, leaf in enumerate(jax.tree.leaves(value)):
            shape = getattr(leaf, "shape", ())
            axes = level_axes(nest.levels, position, len(shape), None if entries is None else entries[number])
            for depth in chunked:
                if axes[depth] is None:
                    continue
                seen = first.setdefault(depth, (shape[axes[depth]], position, number, axes[depth]))
                if not same_size(shape[axes[depth]], seen[0]):
                    here = _origin(plan, mapped, position, number, axes[depth])
                    there = _origin(plan, mapped, *seen[1:])
                    raise ShapeError(messages.chunked_sizes_disagree(plan, nest.levels[depth], there, here))


def _bound_outside(name: str) -> bool:
    """Does a transform around this trace (``jax.vmap``, ``shard_map``, a batched function) bind ``name``?"""
    try:
        jax.lax.axis_size(name)  # JAX's NameError when no enclosing transform binds it; nothing is staged
    except NameError:
        return False
    return True


def _origin(plan: Plan, mapped: list[Any], position: int, number: int, axis: int) -> Origin:
    """Where the ``number``-th leaf of the array argument at ``position`` has its batch axis ``axis``."""
    path, leaf = jax.tree_util.tree_leaves_with_path(mapped[position])[number]
    place = leaf_place(argument_place(plan.arguments[plan.array_arguments[position]].name), path)
    return Origin(place, axis, tuple(leaf.shape), getattr(leaf, "dtype", None))


def in_slices(function: Callable[..., Any], level: Level, in_axes: tuple[int | None, ...], out_axes: Any) -> Any:
    """The level's map of ``function`` over slices of ``level.chunk`` examples (``in_axes`` as ``vmap`` takes them).

    ``out_axes`` is an axis for every result, or a tuple of them for a tuple result (None: not
    mapped over this level). A batch of at most one chunk is one ``vmap``. No axis name is bound:
    a slice is not the batch.
    """
    front_out = _each_axis(lambda axis: None if axis is None else 0, out_axes)  # unmapped results stay None
    step = jax.vmap(function, in_axes=vmap_axes(in_axes), out_axes=vmap_axes(front_out))
    examples = in_axes  # the axis of each argument's examples (of one device's, with shard=)
    if level.devices > 1:  # the batch axis split into (devices, shard): each device maps a slice of its own
        devices_at = _each_axis(lambda axis: None if axis is None else axis - 1 if axis < 0 else axis, in_axes)
        step = jax.vmap(
            step, in_axes=vmap_axes(devices_at), out_axes=vmap_axes(front_out), spmd_axis_name=level.spmd_axis_name
        )
        examples = _each_axis(lambda axis: None if axis is None else axis if axis < 0 else axis + 1, in_axes)
    mapped = [i for i, axis in enumerate(in_axes) if axis is not None]
    along = 1 if level.devices > 1 else 0  # the axis of each device's examples in the step's results
    chunk = cast(int, level.chunk)  # a Budget is settled (``_budget``) before its nest is built

    def level_function(*arguments: Any) -> Any:
        leaves = [(leaf, axis) for i in mapped for axis, leaf in _axes_and_leaves(in_axes[i], arguments[i])]
        size = leaves[0][0].shape[leaves[0][1]] if leaves else 0
        values = list(arguments)
        if level.devices > 1:
            values = _cut(values, mapped, in_axes, lambda leaf, axis: _split(leaf, axis, level.devices))
            size = size // level.devices
        slicing = _Slicing(step, front_out, values, mapped, examples, along, chunk)
        if not isinstance(size, int):  # symbolic (jax.export): cannot be divided now
            output = slicing.padded(size)
        elif size <= chunk:
            output = step(*values)
        else:
            output = slicing.scanned(size)
        if level.devices > 1:
            output = _over_outputs(out_axes, _merge, output)
        return _over_outputs(out_axes, _moved_back, output)

    return level_function


@dataclass(frozen=True)
class _Slicing:
    """One call of a chunked level: ``step`` maps one slice; ``values`` are the level's arguments, the
    mapped ones (``mapped``) with their examples on ``examples``; the step's results have them on ``along``."""

    step: Callable[..., Any]
    out_axes: Any
    values: list[Any]
    mapped: list[int]
    examples: tuple[int | None, ...]
    along: int
    chunk: int

    def on(self, start: Any, cut: Callable[[Any, int, Any], Any]) -> Any:
        """``step`` on the slice ``cut(leaf, axis, start)`` of every mapped leaf."""
        return self.step(*_cut(self.values, self.mapped, self.examples, lambda leaf, axis: cut(leaf, axis, start)))

    def scanned(self, size: int) -> Any:
        """``step`` scanned over the full slices, then on the remainder.

        The scan runs over the slices' indices (carried, not held as an array), and each step cuts
        its slice from the arguments as they are; with a remainder, each slice writes its results
        into buffers the remainder's results start (stacking and joining them would copy them all).
        """
        chunk, along = self.chunk, self.along
        count, rest = divmod(size, chunk)

        def on(index: Any) -> Any:
            return self.on(
                index * chunk, lambda leaf, axis, start: jax.lax.dynamic_slice_in_dim(leaf, start, chunk, axis)
            )

        if not rest:

            def stacked(index: Any, _: None) -> tuple[Any, Any]:
                return index + 1, on(index)

            _, results = jax.lax.scan(stacked, jnp.zeros((), jnp.int32), None, length=count)
            return _over_outputs(self.out_axes, functools.partial(_unstacked, along, count * chunk, None), results)
        # The remainder first: its results' shapes give the buffers each slice writes into.
        last = self.on(count * chunk, lambda leaf, axis, start: jax.lax.slice_in_dim(leaf, start, size, axis=axis))

        def buffer(axis: int | None, leaf: Any) -> Any:
            if axis is None:  # not mapped here: the same in every slice, carried as it is
                return leaf
            shape = list(leaf.shape)
            shape[along] = size
            return jax.lax.dynamic_update_slice_in_dim(jnp.zeros(shape, leaf.dtype), leaf, count * chunk, along)

        def into(carry: tuple[Any, Any], _: None) -> tuple[tuple[Any, Any], None]:
            index, buffers = carry

            def write(axis: int | None, buffer: Any, leaf: Any) -> Any:
                return leaf if axis is None else jax.lax.dynamic_update_slice_in_dim(buffer, leaf, index * chunk, along)

            return (index + 1, _over_outputs(self.out_axes, write, buffers, on(index))), None

        start = (jnp.zeros((), jnp.int32), _over_outputs(self.out_axes, buffer, last))
        (_, results), _ = jax.lax.scan(into, start, None, length=count)
        return results

    def padded(self, size: Any) -> Any:
        """``step`` scanned over ``ceil(size / chunk)`` slices, for a symbolic ``size``: the last slice is
        filled up with copies of the last example (clipped indices), whose results are dropped."""
        chunk, along = self.chunk, self.along
        steps = (size + chunk - 1) // chunk  # at least 1: JAX takes every symbolic size to be at least 1

        def on(index: Any) -> Any:
            examples = index * chunk + jnp.arange(chunk)
            return self.on(examples, lambda leaf, axis, start: jnp.take(leaf, start, axis=axis, mode="clip"))

        unstack = functools.partial(_unstacked, along, steps * chunk, size)
        return _over_outputs(self.out_axes, unstack, jax.lax.map(on, jnp.arange(steps)))


def _unstacked(along: int, total: Any, size: Any, axis: int | None, leaf: Any) -> Any:
    """A result the scan stacked as (slices, [devices,] chunk, ...), as ``total`` examples on ``along``, the
    first ``size`` of them kept (None: all); one not mapped here (``axis`` None) is the same in every slice."""
    if axis is None:
        return leaf[0]
    leaf = jnp.moveaxis(leaf, 0, along)  # (slices, [devices,] chunk, ...) -> ([devices,] slices, chunk, ...)
    leaf = leaf.reshape(*leaf.shape[:along], total, *leaf.shape[along + 2 :])
    return leaf if size is None else jax.lax.slice_in_dim(leaf, 0, size, axis=along)


def _cut(
    values: list[Any], mapped: list[int], axes: tuple[int | None, ...], cut: Callable[[Any, int], Any]
) -> list[Any]:
    """``values`` with every leaf of the mapped ones replaced by ``cut(leaf, its axis)`` (counted from the front)."""
    cut_values = list(values)
    for i in mapped:
        cut_values[i] = map_axes(
            lambda axis, leaf: leaf if axis is None else cut(leaf, axis % leaf.ndim), axes[i], values[i]
        )
    return cut_values


def _over_outputs(out_axes: Any, leaf_function: Callable[..., Any], *outputs: Any) -> Any:
    """``leaf_function(axis, *leaves)`` over the leaves of the level's outputs, ``axis`` from ``out_axes``
    (one per result of a tuple; a layout tree's per subtree)."""
    return map_axes(leaf_function, out_axes, *outputs)


def _axes_and_leaves(axes: Any, value: Any) -> list[tuple[int, Any]]:
    """``(axis, leaf)`` for every leaf of ``value`` that ``axes`` maps."""
    found: list[tuple[int, Any]] = []
    map_axes(lambda axis, leaf: None if axis is None else found.append((axis, leaf)), axes, value)
    return found


def _each_axis(function: Callable[[Any], Any], axes: Any) -> Any:
    """``function`` on every axis of ``axes``: one axis, an ``AxesTree``, or a tuple of them."""
    if isinstance(axes, tuple):
        return tuple(_each_axis(function, axis) for axis in axes)
    if isinstance(axes, AxesTree):
        return AxesTree(axes.treedef, tuple(function(axis) for axis in axes.axes))
    return function(axes)


def _split(leaf: Any, axis: int, parts: int) -> Any:
    """``leaf`` with its ``axis`` of size n reshaped to (parts, n // parts)."""
    return leaf.reshape(*leaf.shape[:axis], parts, leaf.shape[axis] // parts, *leaf.shape[axis + 1 :])


def _moved_back(axis: int | None, leaf: Any) -> Any:
    """A result's examples, on the front axis, moved to the axis its layout gives them."""
    return leaf if axis is None else jnp.moveaxis(leaf, 0, axis)


def _merge(axis: int | None, leaf: Any) -> Any:
    """The inverse of ``_split`` for a mapped result (an unmapped one is the same on every device)."""
    return leaf if axis is None else leaf.reshape(-1, *leaf.shape[2:])
