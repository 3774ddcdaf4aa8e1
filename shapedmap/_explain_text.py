"""The text ``explain`` writes: a chain of batched functions' levels as a runnable ``def``.

``SourceWriter`` turns the ``Stage``s ``_explain`` collected (each batched function of the chain, its
levels and sizes for one call) into Python with no shapedmap in it: ``jax.vmap`` calls with their
``in_axes``/``out_axes``/``axis_name``, a chunked level as ``jax.lax.map(..., batch_size=)``,
squeezed broadcast dims, ``auto_axes`` on Explicit mesh axes, and comments with every size.

Example:
    >>> result_text((jax.ShapeDtypeStruct((3,), jnp.float32), jax.ShapeDtypeStruct((3, 4), jnp.int32)))
    '(f32[3], i32[3,4])'
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from typing import Any

from jax.sharding import PartitionSpec

from ._batched import Batched
from ._binding import Bindings
from ._call import result_shapes
from ._errors import SpecError, describe_value
from ._explain_names import Names, callable_name, rebound_path
from ._face import axes_text
from ._key_checks import split_shape
from ._levels import AxesTree, Level, VmapNest
from ._messages import describe_tree
from ._plan import Plan
from ._wrappers import partial_kind

__all__ = ["SourceWriter", "Stage", "result_text"]


@dataclass(frozen=True)
class Stage:
    """One batched function of the chain (outermost first) and its levels for this call."""

    plan: Plan
    bindings: Bindings
    nest: VmapNest
    values: list[Any]
    described: Batched  # the function's description (its sharding, its per-example function)
    passed: list[Any] | None = None  # the values as passed, when a SplitKey's key was split into ``values``

    @property
    def levels(self) -> tuple[Level, ...]:
        return self.nest.levels

    @property
    def squeeze(self) -> tuple[tuple[int, ...], ...]:
        return self.nest.squeeze

    @property
    def sharding(self) -> Any:
        """The ``Sharding`` of ``batched(..., shard=...)``, or None."""
        return self.described.sharding

    def result_shapes(self) -> Any:
        """The results' shapes and dtypes of this stage's call (traced, nothing run)."""
        return result_shapes(self.plan, self.nest, self.described.fn, self.values)


def result_text(shapes: Any) -> str:
    """``f32[13,7,11]``, or ``(f32[3], f32[3,4])`` for a tuple result."""
    if isinstance(shapes, tuple):
        return "(" + ", ".join(_tree_text(item) for item in shapes) + ")"
    return _tree_text(shapes)


def _tree_text(tree: Any) -> str:
    """``f32[3]``, or ``{w: f32[4,3]}``: a PyTree with its leaves described, as source comments show it."""
    return describe_tree(tree).replace("'", "")


# -- writing the source ----------------------------------------------------------------------------


class SourceWriter:
    """Writes the ``def`` for a chain of stages (outermost first)."""

    def __init__(self, stages: list[Stage], innermost: Any, depth: int) -> None:
        self.stages = stages
        self.innermost = innermost
        self.depth = depth
        self.plan = stages[0].plan
        self.callee = callable_name(innermost)
        self.stem = self.callee
        # Decorated in place, the per-example function's own name is the batched function: the text
        # binds the function under it (``message_passing.fn``) to a name of its own, so that pasted
        # into that module it maps the per-example function, not the batched one again.
        self.rebound = rebound_path(innermost)
        taken = {a.name for a in self.plan.arguments} | {self.callee.split(".")[0]}
        self.names = Names(taken)
        if self.rebound is not None:
            self.callee = self.names.fresh(f"{self.callee}_per_example")
        self.jax = self.names.fresh("jax")
        self.jnp: str | None = None
        self.inspect_module: str | None = None

    def source(self, fn: Any, result: str) -> str:
        name = self.names.fresh("batched_" + self.stem.split(".")[-1])
        definition = f"def {name}({self.parameters()}):"
        body = self.body(result)
        imports = [_import("jax", self.jax)]
        if self.jnp is not None:
            imports.append(_import("jax.numpy", self.jnp))
        if self.inspect_module is not None:
            imports.insert(0, _import("inspect", self.inspect_module))
        if self.rebound is not None:
            imports += ["", f"{self.callee} = {self.rebound}  # the per-example function, under @batched"]
        return "\n".join([*self.header(fn), *imports, "", "", definition, *body]) + "\n"

    # -- header ------------------------------------------------------------------------------------

    def header(self, fn: Any) -> list[str]:
        stage = self.stages[0]
        passed = stage.values if stage.passed is None else stage.passed
        arguments = ", ".join(
            f"{stage.plan.arguments[i].name}: {_value_text(passed[i])}" for i in stage.plan.array_arguments
        )
        lines = [
            f"# {self.plan.function}, batched as",
            f"#     {self.plan.signature_text()}",
        ]
        for depth, inner in enumerate(self.stages[1:], start=1):
            lines += [f"# whose fn{'.fn' * (depth - 1)} is batched as", f"#     {inner.plan.signature_text()}"]
        kind = partial_kind(self.innermost)
        lines += [
            f"# written out as plain jax.vmap for {arguments or 'no array arguments'}",
            f"# (sizes: {self.sizes_text()}). {self.origin_text()}.",
        ]
        plan = self.stages[-1].plan
        bound = [(a, " (fixed)") for a in plan.fixed] + [(a, "") for a in plan.arguments if a.bound is not None]
        if bound:
            listed = ", ".join(f"{a.name} {_value_text(a.default)}{fixed}" for a, fixed in bound)
            lines.append(
                f"# Bound by the {kind or 'partial'}, shared as jax.vmap shares what a closure holds: {listed}."
            )
        if any(stage.sharding is not None for stage in self.stages):
            lines += [
                "# With shard=, the batched call also places arguments and results on the mesh",
                "# (fn.partition_specs(*args) gives the specs); the values are the same. On mesh",
                "# axes of type Explicit, call it inside `with jax.set_mesh(mesh):`, as JAX requires.",
            ]
        return lines

    def origin_text(self) -> str:
        """Which function ``self.callee`` is, in the words of the code that made it."""
        if self.rebound is not None:
            return (
                f"`{self.stem}` is the batched function (@batched rebinds the name): `{self.callee}` is "
                f"the per-example function it maps, {self.rebound}"
            )
        inner = "the innermost batched" if self.depth > 1 else "batched"
        kind = partial_kind(self.innermost)
        if kind is not None:
            return f"`{self.callee}` is the per-example function: the {kind} given to {inner}, which holds its bound values"
        return f"`{self.callee}` is the per-example function: the function given to {inner}"

    def sizes_text(self) -> str:
        sizes: dict[str, str] = {}
        for stage in self.stages:
            for name, (size, _) in stage.bindings.sizes.items():
                sizes.setdefault(name, str(size))
            for name, (shape, _) in stage.bindings.variadics.items():
                sizes.setdefault(f"*{name}", str(shape))
        return ", ".join(f"{name}={size}" for name, size in sizes.items()) or "none"

    # -- the def's parameters ----------------------------------------------------------------------

    def parameters(self) -> str:
        parts: list[str] = []
        parameters = list(self.plan.types.signature.parameters.values())
        for position, parameter in enumerate(parameters):
            kind = parameter.kind
            if (
                kind is inspect.Parameter.KEYWORD_ONLY
                and not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
                and "*" not in parts
            ):
                parts.append("*")
            if kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"*{parameter.name}")
            elif kind is inspect.Parameter.VAR_KEYWORD:
                parts.append(f"**{parameter.name}")
            elif parameter.default is inspect.Parameter.empty:
                parts.append(parameter.name)
            else:
                parts.append(f"{parameter.name}={self.default_text(parameter)}")
            following = parameters[position + 1] if position + 1 < len(parameters) else None
            if kind is inspect.Parameter.POSITIONAL_ONLY and (
                following is None or following.kind is not inspect.Parameter.POSITIONAL_ONLY
            ):
                parts.append("/")
        return ", ".join(parts)

    def default_text(self, parameter: inspect.Parameter) -> str:
        if _is_literal(parameter.default):
            return repr(parameter.default)
        if self.inspect_module is None:
            self.inspect_module = self.names.fresh("inspect")
        return f"{self.inspect_module}.signature({self.callee}).parameters[{parameter.name!r}].default"

    # -- the body ----------------------------------------------------------------------------------

    def body(self, result: str) -> list[str]:
        lines: list[str] = []
        current = self.callee
        plan = self.stages[-1].plan
        if not plan.positional_and_mapped:
            current = self.names.fresh("one_example")
            mapped = self.mapped_names()
            lines += [
                f"    def {current}({', '.join(mapped)}):",
                f"        return {self.callee}({self.call_arguments(plan)})",
                "",
            ]
        outermost = self.stages[0]
        # Wrappers call the stage inside them by name, so that name must not be rebound later;
        # so does a level run in slices: then every level gets a name of its own.
        wrappers = any(any(stage.squeeze) for stage in self.stages[1:])
        chunked = any(level.chunk is not None for stage in self.stages for level in stage.levels)
        for number, stage in enumerate(reversed(self.stages)):
            target = "vmapped" if stage is outermost or not wrappers else f"vmapped_{number}"
            target = self.names.once(target)
            for level in reversed(stage.levels):
                if chunked:
                    target = self.names.fresh("vmapped_" + re.sub(r"\W", "_", level.key).strip("_"))
                if level.chunk is not None and _level_size(stage, level) > level.chunk:
                    lines += self.slices_lines(current, stage, level, target)
                else:
                    lines.append(
                        f"    {target} = {self.vmap_call(current, stage, level)}  # {self.level_comment(stage, level)}"
                    )
                current = target
            lines += self.auto_axes_lines(stage, current)
            if stage.squeeze and any(stage.squeeze) and stage is not outermost:
                wrapper = self.names.fresh(f"squeezed_{number}")
                mapped = self.mapped_names()
                lines += ["", f"    def {wrapper}({', '.join(mapped)}):"]
                lines += [f"    {line}" for line in self.squeeze_lines(stage)]
                lines += [f"        return {current}({', '.join(mapped)})", ""]
                current = wrapper
        squeeze = self.squeeze_lines(outermost) if outermost.squeeze and any(outermost.squeeze) else []
        squeeze = self.split_lines(outermost) + squeeze
        call = f"{current}({', '.join(self.mapped_names())})"
        return [*squeeze, *lines, f"    return {call}  # -> {result}"]

    def split_lines(self, stage: Stage) -> list[str]:
        """Each ``SplitKey`` parameter's one key split into one key per example, as the call splits it."""
        shape = split_shape(stage.plan, stage.bindings) if stage.plan.split_keys else ()
        count = shape[0] if len(shape) == 1 else shape
        names = [stage.plan.arguments[i].name for i in stage.plan.split_keys if stage.values[i] is not None]
        note = "one key per example (layouts={{{!r}: SplitKey()}})"
        return [f"    {n} = {self.jax}.random.split({n}, {count!r})  # {note.format(n)}" for n in names]

    def slices_lines(self, function: str, stage: Stage, level: Level, name: str) -> list[str]:
        """A chunked level as ``jax.lax.map(..., batch_size=)`` over ``function``, the per-example map."""
        if any(isinstance(axes, AxesTree) for axes in (*level.in_axes, *level.out_axes)):
            raise SpecError(
                f"{self.plan.function}: explain() does not write a chunked level ('{level.batch_name}', chunk="
                f"{level.chunk}) whose layouts are layout trees (one axis per subtree) as jax.lax.map; the call "
                "itself runs it. Explain the function without chunk= to see its jax.vmap nest"
            )
        if self.jnp is None:
            self.jnp = self.names.fresh("jnp")
        mapped = self.mapped_names()
        kinds = {self.plan.arguments[i].name: self.plan.arguments[i].value.kind for i in self.plan.array_arguments}
        sliced = [(argument, axis) for argument, axis in zip(mapped, level.in_axes, strict=True) if axis is not None]
        moved = [self.moved(argument, axis, 0, kinds[argument] != "array") for argument, axis in sliced]
        if len(sliced) == 1 and len(mapped) == 1:
            parameter, xs, arguments = None, moved[0], []
        elif len(sliced) == 1:
            parameter, xs = sliced[0][0], moved[0]
            arguments = mapped
        else:
            parameter = self.names.fresh("example")
            xs = f"({', '.join(moved)})"
            position = {argument: index for index, (argument, _) in enumerate(sliced)}
            arguments = [f"{parameter}[{position[a]}]" if a in position else a for a in mapped]
        per_example = function if parameter is None else f"lambda {parameter}: {function}({', '.join(arguments)})"
        slices = f"{self.jax}.lax.map({per_example}, {xs}, batch_size={level.chunk})"
        out_axes = stage.plan.vmap_out_axes(level)
        if isinstance(out_axes, tuple):
            parts = [self.moved(f"results[{i}]", 0, axis, True) for i, axis in enumerate(out_axes)]
            output = f"({', '.join(parts)},)"
        else:
            output = self.moved("results", 0, out_axes, True)
        body = (
            [f"        return {slices}"]
            if output == "results"
            else [f"        results = {slices}", f"        return {output}"]
        )
        sharded = stage.sharding is not None and stage.sharding.spmd_axis_name(level.key) is not None
        where = "; with shard=, each device maps its own shard in these slices" if sharded else ""
        return [
            "",
            f"    def {name}({', '.join(mapped)}):  # {self.level_comment(stage, level)}, in slices of {level.chunk}{where}",
            *body,
            "",
        ]

    def moved(self, value: str, source: int, destination: int | None, tree: bool) -> str:
        """Source moving the axis ``source`` of ``value`` to ``destination`` (None: take element 0)."""
        if source == destination:
            return value
        if destination is None:
            return f"{self.jax}.tree.map(lambda y: y[0], {value})"
        if not tree:
            return f"{self.jnp}.moveaxis({value}, {source}, {destination})"
        return f"{self.jax}.tree.map(lambda y: {self.jnp}.moveaxis(y, {source}, {destination}), {value})"

    def auto_axes_lines(self, stage: Stage, nest: str) -> list[str]:
        """On ``Explicit`` mesh axes the batched call runs the nest under ``auto_axes``: so does the text."""
        sharding = stage.sharding
        if sharding is None:
            return []
        mesh = sharding.known_mesh()
        if mesh is None or not set(sharding.mesh_axes) <= set(mesh.axis_names) or not sharding.explicit(mesh):
            return []  # Auto axes (or no mesh to tell): the vmaps' spmd_axis_name is all there is
        specs = sharding.nest_out_specs(stage.plan, stage.bindings, stage.result_shapes)
        specs_text = self.specs_text(specs)
        axes = sharding.mesh_axes
        if specs_text is None:
            return [
                f"    # (the batched call runs {nest} under {self.jax}.sharding.auto_axes(axes={axes!r}, "
                "out_sharding=fn.partition_specs(...)['return']) on these Explicit mesh axes)"
            ]
        return [
            f"    {nest} = {self.jax}.sharding.auto_axes({nest}, axes={axes!r}, out_sharding={specs_text})"
            "  # Explicit mesh axes: collectives need them Auto inside"
        ]

    def specs_text(self, specs: Any) -> str | None:
        """Source for a tree of ``PartitionSpec`` (tuples, lists, dicts); None for other nodes."""
        if isinstance(specs, PartitionSpec):
            return f"{self.jax}.sharding.PartitionSpec({', '.join(map(repr, specs))})"
        if type(specs) in (tuple, list):
            items = [self.specs_text(item) for item in specs]
            if None in items:
                return None
            text = ", ".join(items) + ("," if type(specs) is tuple and len(items) == 1 else "")
            return f"({text})" if type(specs) is tuple else f"[{text}]"
        if type(specs) is dict and all(_is_literal(key) for key in specs):
            items = {key: self.specs_text(item) for key, item in specs.items()}
            if None in items.values():
                return None
            return "{" + ", ".join(f"{key!r}: {text}" for key, text in items.items()) + "}"
        return None

    def mapped_names(self) -> list[str]:
        return [self.plan.arguments[i].name for i in self.plan.array_arguments]

    def call_arguments(self, plan: Plan) -> str:
        parts = []
        for argument in plan.arguments:
            if argument.positional:
                parts.append(argument.name)
            elif argument.kind is inspect.Parameter.VAR_POSITIONAL:
                parts.append(f"*{argument.name}")
            elif argument.kind is inspect.Parameter.KEYWORD_ONLY:
                parts.append(f"{argument.name}={argument.name}")
            else:
                parts.append(f"**{argument.name}")
        return ", ".join(parts)

    def vmap_call(self, function: str, stage: Stage, level: Level) -> str:
        out_axes = stage.plan.vmap_out_axes(level)
        parts = [function, f"in_axes={axes_text(level.in_axes)}", f"out_axes={out_axes!r}"]
        if level.axis_name is not None:
            parts.append(f'axis_name="{level.axis_name}"')
        if all(axis is None for axis in level.in_axes):
            parts.append(f"axis_size={_level_size(stage, level)}")
        spmd = stage.sharding.spmd_axis_name(level.key) if stage.sharding is not None else None
        if spmd is not None:
            parts.append(f"spmd_axis_name={spmd!r}")
        return f"{self.jax}.vmap({', '.join(parts)})"

    def level_comment(self, stage: Stage, level: Level) -> str:
        size = _level_size(stage, level)
        name = f"*{level.batch_name} dim {level.index}" if level.index is not None else level.key
        text = f"{name} = {size}"
        unmapped = [
            stage.plan.arguments[index].name
            for index, axis in zip(stage.plan.array_arguments, level.in_axes, strict=True)
            if axis is None
        ]
        if unmapped and len(unmapped) < len(level.in_axes):
            text += f"; {', '.join(unmapped)} not mapped"
        if level.chunk is not None and isinstance(size, int) and size <= level.chunk:
            text += f", at most one slice of {level.chunk}: one vmap, no axis name"
        return text

    def squeeze_lines(self, stage: Stage) -> list[str]:
        if self.jnp is None:
            self.jnp = self.names.fresh("jnp")
        lines = []
        for index, axes in zip(stage.plan.array_arguments, stage.squeeze, strict=True):
            if not axes:
                continue
            argument = stage.plan.arguments[index]
            squeeze = f"{self.jnp}.squeeze({{}}, axis={tuple(axes)!r})"
            if argument.value.kind == "array":
                expression = squeeze.format(argument.name)
            else:
                expression = f"{self.jax}.tree.map(lambda leaf: {squeeze.format('leaf')}, {argument.name})"
            lines.append(f"    {argument.name} = {expression}  # size 1: shared, not mapped")
        return lines


def _import(module: str, alias: str) -> str:
    if module == alias:
        return f"import {module}"
    if module.rsplit(".", 1)[-1] == alias:
        return f"from {module.rsplit('.', 1)[0]} import {alias}" if "." in module else f"import {module}"
    return f"import {module} as {alias}"


def _level_size(stage: Stage, level: Level) -> int | str:
    if level.size is not None:
        return level.size
    if level.index is not None:
        shape = stage.bindings.variadics.get(level.batch_name)
        if shape is not None:
            return shape[0][level.index]
    size = stage.bindings.size_of(level.key)
    return "?" if size is None else size


def _value_text(value: Any) -> str:
    if value is None or hasattr(value, "shape"):
        return describe_value(value)
    return _tree_text(value)


def _is_literal(value: Any) -> bool:
    """Does ``repr(value)`` read back as an equal value of the same type?"""
    try:
        copy = ast.literal_eval(repr(value))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(copy) is type(value) and copy == value
