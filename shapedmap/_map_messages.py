"""The wording of the errors about the map itself: the mesh, the per-example call, chunks and budgets.

``_sharding`` and ``_call`` (with ``_chunks`` and ``_budget``) say what went wrong: the plan,
the levels, the arrays mapped; the functions here return the message text, naming which map of
which function. The errors of sizes, arrays and results before and after the map are worded in
``_messages``. Nothing here imports the call path at run time (types only).

Example:
    >>> from shapedmap._plan import plan_of
    >>> from shapedmap.examples import message_passing
    >>> plan = plan_of(message_passing)
    >>> inside_the_map(plan, plan.levels, [jnp.ones((13, 7, 7)), jnp.ones((13, 7, 5))])
    "inside the map of message_passing over 'graph' (size 13)"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._levels import AxesTree, level_sizes
from ._places import Origin, leaf_place, origin_text, result_place

if TYPE_CHECKING:
    from ._levels import Level
    from ._plan import Plan
    from ._size_messages import Seen

__all__ = [
    "budget_on_symbolic_shapes",
    "budget_unmeasurable",
    "budget_unmet",
    "chunked_name_bound_outside",
    "chunked_sizes_disagree",
    "collective_over_chunks",
    "explicit_axes_outside_mesh",
    "indivisible_batch",
    "inside_the_map",
    "needs_mesh",
    "per_example_check_failed",
    "raised_inside_the_map",
    "varying_unmapped_result",
]


def indivisible_batch(function: str, name: str, seen: Seen, axes: Mapping[str, int]) -> str:
    """A sharded batch dim whose size its mesh axes (``axes``: name -> size) cannot split evenly."""
    size, origin = seen
    devices = math.prod(axes.values())
    described = " x ".join(f"'{axis}' (size {axis_size})" for axis, axis_size in axes.items())
    mesh_axes = "mesh axis" if len(axes) == 1 else "mesh axes"
    return (
        f"{function}: the batch dim '{name}' has size {size} ({origin_text(origin)}), which the {mesh_axes} "
        f"{described} cannot split evenly: make the batch a multiple of {devices}, or shard "
        f"'{name}' over mesh axes whose size divides {size}"
    )


def needs_mesh(function: str, shard: Mapping[str, tuple[str, ...]]) -> str:
    """A sharded call with no mesh given and none set (a ``SpecError``)."""
    return (
        f"{function}: shard={_shard_text(shard)} needs a mesh: pass mesh= to batched, "
        "or call it inside `with jax.set_mesh(mesh):`"
    )


def explicit_axes_outside_mesh(function: str, shard: Mapping[str, tuple[str, ...]]) -> str:
    """Mesh axes of type ``Explicit`` that need ``jax.set_mesh``, which a trace cannot enter (a ``SpecError``)."""
    return (
        f"{function}: shard={_shard_text(shard)} uses mesh axes of type Explicit, and JAX "
        "needs a traced call (jax.jit, jax.grad, ...) over such arrays to run inside "
        "`with jax.set_mesh(mesh):`, which only the caller can enter. Call it inside that block, "
        "or make the mesh with axis_types=(jax.sharding.AxisType.Auto, ...)"
    )


def _shard_text(shard: Mapping[str, tuple[str, ...]]) -> str:
    """``{'graph': 'data'}``, as ``shard=`` would be written."""
    return "{" + ", ".join(f"{k!r}: {v[0]!r}" if len(v) == 1 else f"{k!r}: {v!r}" for k, v in shard.items()) + "}"


# -- inside the map (_call) ------------------------------------------------------------------------


def inside_the_map(plan: Plan, levels: tuple[Level, ...], mapped: list[Any]) -> str:
    """``inside the map of message_passing over 'graph' (size 13)``."""
    described = ", ".join(
        f"'{level.key}'" + (f" (size {size})" if size is not None else "")
        for level, size in zip(levels, level_sizes(levels, mapped), strict=True)
    )
    maps = "map" if len(levels) == 1 else "maps"
    return f"inside the {maps} of {plan.function} over {described}"


def per_example_check_failed(plan: Plan, levels: tuple[Level, ...], mapped: list[Any], error: Exception) -> str:
    """jaxtyping's report of a per-example check that failed, said to be from inside the map."""
    report = "\n".join("    " + line for line in str(error).splitlines())
    return f"{plan.function}: the per-example check failed {inside_the_map(plan, levels, mapped)}:\n{report}"


def raised_inside_the_map(plan: Plan, levels: tuple[Level, ...], mapped: list[Any], error: Exception) -> str:
    """The note added to any other error the body raised: where it came from, and what was bound."""
    note = f"(raised {inside_the_map(plan, levels, mapped)}; shapes there are per example"
    if isinstance(error, NameError):
        names = ", ".join(f"'{level.axis_name}'" for level in levels if level.axis_name)
        note += f"; the batch names bound there: {names or 'none'}"
    return note + ")"


def collective_over_chunks(plan: Plan, levels: tuple[Level, ...], error: NameError) -> str:
    """The body used an axis name none of the levels binds, and some levels are chunked (unbound)."""
    chunked = ", ".join(f"'{level.key}'" for level in levels if level.chunk is not None)
    chunks = ", ".join(f"{level.key!r}: {level.chunk!r}" for level in levels if level.chunk is not None)
    names = ", ".join(f"'{level.axis_name}'" for level in levels if level.axis_name) or "none"
    return (
        f"{plan.function}: the body uses an axis name that is not bound inside the map ({error}). "
        f"The batch dim(s) {chunked} run in slices (chunk={{{chunks}}}), so their names are not bound: "
        "a collective (psum, pmean, axis_index, ...) inside one slice would see only that slice, not "
        f"the whole batch. Drop them from chunk= to use such a collective (the names bound there: {names})"
    )


def budget_unmet(plan: Plan, level: Level, budget: int, size: int, needed: int) -> str:
    """Even one example at a time, the call needs more temporary memory than its ``Budget``."""
    return (
        f"{plan.function}: chunk={{{level.key!r}: Budget(bytes={budget})}} cannot be met: mapping '{level.key}' "
        f"(size {size}) one example at a time still needs {needed} bytes of temporary memory (XLA's "
        "memory_analysis().temp_size_in_bytes of the compiled call). Raise the budget, or chunk another "
        "batch dim too"
    )


def budget_unmeasurable(plan: Plan, level: Level, chunk: int, error: Exception) -> str:
    """The call, compiled on its own to measure its ``Budget``, does not lower or compile."""
    text = (
        f"{plan.function}: chunk={{{level.key!r}: {level.chunk!r}}} cannot be measured: the call compiled on "
        f"its own with a chunk of {chunk} fails ({type(error).__name__}: {error})"
    )
    if isinstance(error, NameError):  # JAX's unbound axis name: one only a transform around the call binds
        text += (
            ". A body that uses the axis name of a transform around the batched function (an outer "
            "jax.vmap's axis_name) compiles only inside it"
        )
    return text + ": give the chunk as a number of examples"


def budget_on_symbolic_shapes(plan: Plan, level: Level, shape: tuple[Any, ...]) -> str:
    """A ``Budget`` compiles the call to measure it, which shapes ``jax.export`` leaves symbolic do not allow."""
    shown = "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
    return (
        f"{plan.function}: chunk={{{level.key!r}: {level.chunk!r}}} cannot be measured on symbolic shapes "
        f"(an argument of shape {shown}): a Budget compiles the call at concrete sizes to read its temporary "
        "memory. Give the chunk as a number of examples to export with symbolic shapes"
    )


def chunked_name_bound_outside(plan: Plan, level: Level) -> str:
    """A transform around the call binds the axis name of a batch dim mapped in slices (which binds none)."""
    name = level.batch_name
    return (
        f"{plan.function}: the batch dim '{name}' runs in slices (chunk={{{name!r}: {level.chunk!r}}}), so it "
        f"binds no axis name, but a transform around this call binds an axis named '{name}' (an outer "
        f"jax.vmap(..., axis_name='{name}'), a batched function over '{name}', or a mesh axis in shard_map): a "
        f"collective over '{name}' in the body would silently use that outer axis. Rename the batch dim or the "
        f"outer axis, or drop '{name}' from chunk="
    )


def chunked_sizes_disagree(plan: Plan, level: Level, first: Origin, other: Origin) -> str:
    """Arguments mapped over a chunked batch dim with different sizes (checked even with ``check=False``)."""
    name = level.batch_name
    first_size, other_size = first.shape[first.axis], other.shape[other.axis]  # type: ignore[index]
    return (
        f"{plan.function}: the batch dim '{name}' has size {first_size} in {origin_text(first)} but size "
        f"{other_size} in {origin_text(other)}; chunk={{{name!r}: {level.chunk!r}}} slices every argument "
        "mapped over it alike, so their sizes must agree (checked even with check=False: slices of "
        "different sizes would drop examples silently)"
    )


def varying_unmapped_result(plan: Plan, level: Level) -> str:
    """A result its layout leaves unmapped over ``level`` varies over it: what to change."""
    name = level.batch_name if level.index is None else f"*{level.batch_name}"
    advice = f"Add '{name}' to the output layout"
    if level.chunk is not None:  # a chunked name is no axis name: reduce over the result outside
        advice += f" and reduce over it outside the batched function (chunk= leaves '{name}' unbound, so no psum)"
    elif level.index is None:  # only a named dim can be reduced by name
        advice += f", or reduce over it inside (e.g. jax.lax.psum(x, '{name}'))"
    unmapped = []
    for i, axes in enumerate(level.out_axes):
        if isinstance(axes, AxesTree):  # a layout tree: the subtrees it leaves unmapped
            paths = getattr(plan.results[i].placement, "paths", ())
            unmapped += [
                leaf_place(result_place(plan.returns_tuple, i), p)
                for p, a in zip(paths, axes.axes, strict=True)
                if a is None
            ]
        elif axes is None:
            unmapped.append(result_place(plan.returns_tuple, i))
    lack = "its layout has" if len(unmapped) == 1 else "their layouts have"
    return (
        f"{plan.function}: {' or '.join(unmapped)} varies over the batch dim '{name}', but {lack} no '{name}'. {advice}"
    )
