"""Batch names onto a device mesh, on JAX's own sharding machinery.

``shard={"graph": "data"}`` says that the batch dim ``graph`` is split over the mesh axis
``data`` (or a tuple of mesh axes). For a call, shapedmap then

* places every argument: its sharded batch dims partitioned over their mesh axes, every
  other dim replicated (``jax.device_put`` eagerly; ``with_sharding_constraint`` or
  ``jax.reshard`` under ``jit``);
* gives the ``vmap`` of each sharded name ``spmd_axis_name=`` its mesh axes, so the
  per-example work stays on its device and ``jax.lax.psum(x, "graph")`` is an all-reduce;
* returns results with their batch dims partitioned the same way.

On mesh axes of type ``Explicit`` the nest runs under ``jax.sharding.auto_axes``: that is
what lets collectives over a sharded batch name work there (plain ``jit(vmap(...))`` fails
inside JAX), at the same compiled cost.

Example:
    On 8 devices, each gets one graph; in a plain process (one CPU device), that one gets all 8:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
    >>> @batched("graph", shard={"graph": "data"}, mesh=mesh)
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
    >>> out = message_passing(jnp.ones((8, 7, 7)), jnp.ones((8, 7, 2)))
    >>> out.shape, out.sharding.spec
    ((8, 7, 2), P('data', None, None))

    A batch the mesh cannot split evenly is refused before JAX sees it (this needs 8 devices):

    >>> message_passing(jnp.ones((12, 7, 7)), jnp.ones((12, 7, 2)))  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    shapedmap._errors.ShapeError: message_passing: the batch dim 'graph' has size 12 (argument 'a' (axis 0 of
    f32[12,7,7])), which the mesh axis 'data' (size 8) cannot split evenly: make the batch a multiple of 8, or
    shard 'graph' over mesh axes whose size divides 12
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from . import _map_messages as messages
from ._binding import Bindings
from ._errors import ShapeError, SpecError, describe_value
from ._layout_trees import TreePlacement, map_placed, placed
from ._levels import Budget, Placement, VmapNest
from ._plan import Plan

__all__ = ["Sharding", "make_sharding"]


@dataclass(frozen=True)
class Sharding:
    """Which batch names are split over which mesh axes, and on which mesh.

    ``mesh`` is None when the mesh comes from ``jax.set_mesh`` at call time.
    """

    function: str
    axes: dict[str, tuple[str, ...]]
    mesh: Mesh | None

    def on(self, nest: VmapNest, mesh: Mesh | AbstractMesh) -> VmapNest:
        """``nest`` with each sharded level's ``spmd_axis_name``: per-example work stays on its device.

        A chunked level also learns how many devices its mesh axes hold: each maps its own shard
        in slices, so the memory a device needs is bounded by the chunk.
        """
        levels = tuple(
            dataclasses.replace(
                level,
                spmd_axis_name=self.spmd_axis_name(level.key),
                devices=math.prod(mesh.shape[axis] for axis in self.axes.get(level.key, ()))
                if level.chunk is not None
                else 1,
            )
            for level in nest.levels
        )
        return dataclasses.replace(nest, levels=levels)

    def spmd_axis_name(self, level_key: str) -> str | tuple[str, ...] | None:
        """The ``spmd_axis_name`` for the ``vmap`` over ``level_key`` (None: not sharded)."""
        axes = self.axes.get(level_key)
        if axes is None:
            return None
        return axes[0] if len(axes) == 1 else axes

    @functools.cached_property
    def mesh_axes(self) -> tuple[str, ...]:
        """Every mesh axis some batch name is split over, in order."""
        return tuple(dict.fromkeys(axis for axes in self.axes.values() for axis in axes))

    def known_mesh(self) -> Mesh | AbstractMesh | None:
        """The mesh given, else the one set with ``jax.set_mesh``, else None (a call would refuse)."""
        if self.mesh is not None:
            return self.mesh
        mesh = jax.sharding.get_abstract_mesh()
        return None if mesh.empty else mesh

    def mesh_for_call(self) -> Mesh | AbstractMesh:
        """The mesh of this call: the one given, else the one set with ``jax.set_mesh``."""
        if self.mesh is not None:
            return self.mesh
        try:
            mesh = jax.sharding.get_mesh()
        except ValueError:  # under jit JAX shows only the abstract mesh; constraints accept it
            mesh = jax.sharding.get_abstract_mesh()
        if mesh.empty:
            raise SpecError(messages.needs_mesh(self.function, self.axes))
        _check_mesh_axes(self.function, self.axes, mesh)
        return mesh

    def check_global(self, plan: Plan, values: list[Any], mesh: Mesh, bindings: Bindings) -> None:
        """On a mesh over several processes, an argument split over it must be one global array.

        JAX would take one process's array for the whole batch and compare it across processes: a
        bare ``AssertionError`` when the values differ, a hang when the shapes do.
        """
        if not isinstance(mesh, Mesh) or not mesh.is_multi_process:  # an AbstractMesh (under jit) has no processes
            return
        for index in plan.array_arguments:
            argument = plan.arguments[index]
            for _, subtree, placement in placed(argument.placement, values[index]):
                for leaf in jax.tree.leaves(subtree):
                    self._check_global_leaf(argument.name, placement, leaf, mesh, bindings)

    def _check_global_leaf(self, name: str, placement: Placement, leaf: Any, mesh: Mesh, bindings: Bindings) -> None:
        spec = self.partition_spec(placement, tuple(leaf.shape), bindings)
        if not any(spec) or isinstance(leaf, jax.core.Tracer) or not leaf.is_fully_addressable:
            return
        split = [f"'{batch}' over {' x '.join(map(repr, self.axes[batch]))}"
                 for _, batch in placement.batch if batch in self.axes]  # fmt: skip
        processes = len({device.process_index for device in mesh.devices.flat})
        raise ShapeError(
            f"{self.function}: argument '{name}' is an array of this process alone "
            f"({describe_value(leaf)}), but the mesh spans {processes} processes and shard= splits its "
            f"batch dim {', '.join(split)}: pass one global jax.Array, e.g. "
            f"jax.make_array_from_process_local_data(NamedSharding(mesh, P({', '.join(map(repr, spec))})), "
            "rows) from each process's rows"
        )

    def check_divisible(self, mesh: Mesh, bindings: Bindings) -> None:
        """Every sharded batch size must be a multiple of its mesh axes' size (before JAX says so)."""
        for name, axes in self.axes.items():
            size = bindings.size_of(name)
            devices = math.prod(mesh.shape[axis] for axis in axes)
            if size is not None and size % devices:
                axis_sizes = {axis: mesh.shape[axis] for axis in axes}
                raise ShapeError(messages.indivisible_batch(self.function, name, bindings.sizes[name], axis_sizes))

    def partition_spec(self, placement: Placement, shape: tuple[int, ...], bindings: Bindings) -> PartitionSpec:
        """The ``PartitionSpec`` of one array with ``placement``: one entry per axis.

        Sharded batch dims get their mesh axes; every other dim, and a size-1 broadcast batch dim
        (``#graph``: shared, not split), is replicated.
        """
        entries: list[Any] = []
        batch_at = dict(placement.batch)
        for index, size in enumerate(placement.batched.split(shape)):
            if isinstance(size, tuple):  # a variadic token: never sharded
                entries.extend([None] * len(size))
                continue
            name = batch_at.get(index)
            shared = size == 1 and bindings.size_of(name) not in (None, 1)
            entries.append(None if name not in self.axes or shared else self.spmd_axis_name(name))
        return PartitionSpec(*entries)

    def result_specs(self, plan: Plan, output: Any, bindings: Bindings) -> Any:
        """The ``PartitionSpec`` of every result leaf, from the results (or their shapes)."""
        outputs = output if plan.returns_tuple else (output,)
        specs = tuple(
            map_placed(
                lambda placement, leaf: self.partition_spec(placement, tuple(leaf.shape), bindings), r.placement, value
            )
            for r, value in zip(plan.results, outputs, strict=True)
        )
        return specs if plan.returns_tuple else specs[0]

    def prefix_result_specs(self, plan: Plan, bindings: Bindings) -> Any:
        """Result specs read off the layouts and the bound sizes (trailing dims replicated), or None.

        A sharded batch dim after a variadic sits at an axis that depends on how many dims the
        variadic spans: the bindings know for a named one; None for an anonymous ``...``.
        """
        specs = []
        for result in plan.results:
            if isinstance(result.placement, TreePlacement):
                return None  # a spec per subtree: read off the traced shapes
            layout = result.placement.batched
            sharded = [index for index, name in result.placement.batch if name in self.axes]
            width = 1
            variadic = layout.variadic_index
            if variadic is not None and any(index > variadic for index in sharded):
                known = bindings.variadics.get(layout.dims[variadic].name)
                if known is None:
                    return None
                width = len(known[0])
            axes = {(index if variadic is None or index < variadic else index - 1 + width): name
                    for index, name in result.placement.batch}  # fmt: skip
            stop = max((axis for axis, name in axes.items() if name in self.axes), default=-1) + 1
            specs.append(PartitionSpec(*(self.spmd_axis_name(axes.get(axis, "")) for axis in range(stop))))
        return tuple(specs) if plan.returns_tuple else specs[0]

    def nest_out_specs(self, plan: Plan, bindings: Bindings, result_shapes: Callable[[], Any]) -> Any:
        """The results' specs for ``auto_axes``: read off the layouts, else from the traced shapes."""
        specs = self.prefix_result_specs(plan, bindings)
        return specs if specs is not None else self.result_specs(plan, result_shapes(), bindings)

    def call(
        self,
        plan: Plan,
        nest: VmapNest,
        values: list[Any],
        bindings: Bindings,
        run: Callable[[list[Any], VmapNest, Callable[[Callable[..., Any]], Callable[..., Any]] | None], Any],
        result_shapes: Callable[[], Any],
    ) -> Any:
        """Place the arguments on the mesh, run the ``vmap`` nest, place the results.

        ``run(values, sharded, wrap)`` runs ``sharded`` (``nest`` on this call's mesh: its vmaps
        carry ``spmd_axis_name``), with ``wrap`` applied to it when not None; ``result_shapes()``
        traces the results' shapes.
        """
        mesh = self.mesh_for_call()
        self.check_global(plan, values, mesh, bindings)
        self.check_divisible(mesh, bindings)
        explicit = self.explicit(mesh)
        values = list(values)
        for index in plan.array_arguments:
            values[index] = map_placed(
                lambda placement, leaf: self.place(
                    leaf, mesh, self.partition_spec(placement, tuple(leaf.shape), bindings), explicit
                ),
                plan.arguments[index].placement,
                values[index],
            )
        with self.context(mesh, explicit):
            wrap = None
            if explicit:
                # Run the nest with these axes as Auto: that is what makes collectives work there.
                out_specs = self.nest_out_specs(plan, bindings, result_shapes)
                wrap = functools.partial(jax.sharding.auto_axes, axes=self.mesh_axes, out_sharding=out_specs)
            output = run(values, self.on(nest, mesh), wrap)
            specs = self.result_specs(plan, output, bindings)
            return jax.tree.map(
                lambda spec, result: jax.tree.map(lambda leaf: self.place(leaf, mesh, spec, explicit), result),
                specs,
                output,
                is_leaf=lambda node: isinstance(node, PartitionSpec),
            )

    def explicit(self, mesh: Mesh) -> bool:
        """Are any of the mesh axes used here of type ``Explicit``?"""
        return any(
            kind == AxisType.Explicit
            for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
            if name in self.mesh_axes
        )

    def place(self, value: Any, mesh: Mesh, spec: PartitionSpec, explicit: bool) -> Any:
        """Put one array on the mesh with ``spec`` (eagerly) or constrain it to it (under ``jit``)."""
        sharding = NamedSharding(mesh, spec)
        if not isinstance(value, jax.core.Tracer):
            return jax.device_put(value, sharding)
        if explicit:
            # An abstract mesh: with a concrete one, reshard's eager rule enters `jax.set_mesh`,
            # which JAX refuses under an eager vmap (a batched function batched again).
            return jax.reshard(value, NamedSharding(mesh.abstract_mesh, spec))
        return jax.lax.with_sharding_constraint(value, sharding)

    @contextlib.contextmanager
    def context(self, mesh: Mesh, explicit: bool) -> Iterator[None]:
        """Enter the mesh for ``Explicit`` axes, as JAX requires; under ``jit`` only the caller can."""
        if not explicit or not jax.sharding.get_abstract_mesh().empty:
            yield
            return
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(jax.set_mesh(mesh))
            except ValueError:  # JAX: "`set_mesh` can only be used outside of `jax.jit`"
                raise SpecError(messages.explicit_axes_outside_mesh(self.function, self.axes)) from None
            yield


def make_sharding(plan: Plan, shard: Any, mesh: Any) -> Sharding | None:
    """Validate ``shard=`` and ``mesh=`` against the plan (at decoration).

    Raises:
        SpecError: a key that is not a batch name, a mesh axis the mesh lacks, a mesh axis used
            for two batch names, ``mesh=`` without ``shard=``, or a value of the wrong type.
    """
    name = plan.function
    if shard is None:
        if mesh is not None:
            raise SpecError(
                f"{name}: mesh= is given but shard= is not: say which batch dims to split, e.g. shard={{'batch': 'data'}}"
            )
        return None
    if not isinstance(shard, dict) or not shard:
        raise SpecError(
            f"{name}: shard= must be a non-empty dict from batch name to mesh axis, got {describe_value(shard)}"
        )
    if mesh is not None and not isinstance(mesh, Mesh):
        raise SpecError(
            f"{name}: mesh= must be a jax.sharding.Mesh (e.g. jax.make_mesh((8,), ('data',))), got {describe_value(mesh)}"
        )
    budgeted = [key for key, chunk in plan.chunks.items() if isinstance(chunk, Budget)]
    if budgeted:
        raise SpecError(
            f"{name}: chunk={{{budgeted[0]!r}: Budget(...)}} with shard=: a memory budget is measured on one "
            "device's program, which only the mesh decides; give the chunk as a number of examples per device"
        )
    batch_names = [key for key in plan.order if key != plan.variadic_batch]
    axes: dict[str, tuple[str, ...]] = {}
    for key, value in shard.items():
        if key == plan.variadic_batch:
            raise SpecError(
                f"{name}: shard= names '*{key}', whose number of dims varies per call; shard named batch dims only"
            )
        if key not in batch_names:
            raise SpecError(
                f"{name}: shard= names {key!r}, which is not a batch dim of this function "
                f"(batch dims: {', '.join(batch_names) or 'none'})"
            )
        value = (value,) if isinstance(value, str) else value
        if not isinstance(value, tuple | list) or not value or not all(isinstance(a, str) for a in value):
            raise SpecError(
                f"{name}: shard={{{key!r}: ...}} must be a mesh axis name or a tuple of them, got {describe_value(value)}"
            )
        axes[key] = tuple(value)
    used: dict[str, str] = {}
    for key, mesh_axes in axes.items():
        for axis in mesh_axes:
            if axis in used:
                raise SpecError(
                    f"{name}: the mesh axis {axis!r} is given to both '{used[axis]}' and '{key}'; a mesh axis splits one dim"
                )
            used[axis] = key
    if mesh is not None:
        _check_mesh_axes(name, axes, mesh)
        for key in axes:
            size = plan.fixed_sizes.get(key)
            devices = math.prod(mesh.shape[axis] for axis in axes[key])
            if size is not None and size % devices:
                raise SpecError(
                    f"{name}: the batch dim '{key}' has size {size}, which {devices} devices cannot split evenly"
                )
    return Sharding(name, axes, mesh)


def _check_mesh_axes(function: str, axes: dict[str, tuple[str, ...]], mesh: Mesh) -> None:
    for key, mesh_axes in axes.items():
        for axis in mesh_axes:
            if axis not in mesh.axis_names:
                raise SpecError(
                    f"{function}: shard={{{key!r}: {axis!r}}} names a mesh axis the mesh lacks "
                    f"(mesh axes: {', '.join(map(repr, mesh.axis_names))})"
                )
