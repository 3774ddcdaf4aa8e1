"""Layouts -> the nest of ``jax.vmap`` calls.

``make_plan`` runs once, when the decorator is applied. It gives every array parameter
and every result a batched layout (from the spec, ``layouts=`` and ``out=``), finds the
batch dims (the names the per-example annotation lacks), checks that the remaining core
dims are exactly the per-example ones, and derives one ``Level`` per batch name: its
``in_axes`` and ``out_axes``, outermost first.

Axes are token positions, counted from the right (negative) when a variadic token comes
first, so one plan serves any number of variadic dims. Two things depend on the call and
are settled by ``Plan.expand``: how many dims a variadic batch dim (``*batch``) spans,
and which size-1 broadcastable batch dims (``#graph``, or ``*batch`` dims) are squeezed
and left unmapped, as ``jnp.vectorize`` does.

Example:
    >>> plan = make_plan(read_function(mv), "b a, a c -> b c")  # doctest: +SKIP
    >>> plan.levels[0].in_axes, plan.levels[0].out_axes
    ((None, 1), (1,))
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .annotation import FunctionTypes, ValueType
from .cache import BoundedCache
from .errors import ShapeError, SpecError, describe_value
from .layout import (
    FixedDim,
    Layout,
    NamedDim,
    Spec,
    SymbolicDim,
    VariadicDim,
    dim_name,
    dim_text,
    is_batch_token,
    parse_layout,
    parse_spec,
    symbolic_arguments,
    symbolic_names,
)

__all__ = ["Argument", "Expansion", "Level", "Placement", "Plan", "Result", "expansion_for", "make_plan", "plan_of"]

# Slot markers: a token that is not a batch dim, and a variadic token that is not one.
_CORE = "<core>"
_CORE_VARIADIC = "<core...>"


@dataclass(frozen=True)
class Placement:
    """Where the batch dims sit in one batched layout.

    ``batch`` lists ``(token index, batch name)`` pairs; the other tokens, in order, are
    exactly the per-example layout.
    """

    batched: Layout
    per_example: Layout
    batch: tuple[tuple[int, str], ...]

    @property
    def batch_names(self) -> tuple[str, ...]:
        """The batch names of this layout, in axis order."""
        return tuple(name for _, name in self.batch)

    @functools.cached_property
    def labels(self) -> frozenset[str]:
        """Batch names given a size in the layout (``graph=13``): bound like names."""
        return frozenset(name for index, name in self.batch if isinstance(self.batched.dims[index], FixedDim))

    @functools.cached_property
    def variadic_batch(self) -> str | None:
        """The name of a ``*batch`` token among the batch dims, if any."""
        for index, name in self.batch:
            if isinstance(self.batched.dims[index], VariadicDim):
                return name
        return None

    @functools.cached_property
    def broadcastable_batch(self) -> frozenset[str]:
        """``#graph`` batch names: an argument whose axis has size 1 is not mapped over them."""
        return frozenset(
            name for index, name in self.batch if getattr(self.batched.dims[index], "broadcastable", False)
        )

    def slots(self, variadic_length: int = 0) -> tuple[str, ...]:
        """One entry per axis kind: a level key for batch dims, else a core marker.

        A ``*batch`` token becomes ``variadic_length`` keys ``batch[0]``… (outermost first).
        """
        batch_at = dict(self.batch)
        slots: list[str] = []
        for index, dim in enumerate(self.batched.dims):
            name = batch_at.get(index)
            if name is None:
                slots.append(_CORE_VARIADIC if isinstance(dim, VariadicDim) else _CORE)
            elif isinstance(dim, VariadicDim):
                slots.extend(variadic_key(name, j) for j in range(variadic_length))
            else:
                slots.append(name)
        return tuple(slots)


def variadic_key(name: str, index: int) -> str:
    """The level key of the ``index``-th dim (outermost first) of a ``*name`` batch dim."""
    return f"{name}[{index}]"


@dataclass(frozen=True)
class Argument:
    """One parameter of the per-example function; ``placement`` is None for static ones."""

    name: str
    kind: inspect._ParameterKind
    default: Any
    value: ValueType
    placement: Placement | None


@dataclass(frozen=True)
class Result:
    """One result (one tuple element, or the whole return value)."""

    value: ValueType
    placement: Placement


@dataclass(frozen=True)
class Level:
    """One ``jax.vmap``: over ``axis_name``, with one axis per array argument and per result.

    ``size`` is the ``axis_size`` to give ``vmap`` when no argument is mapped at this level
    (a batch dim only the outputs have, sized by ``name=13`` or by another argument).
    ``batch_name`` is the batch dim it maps; for the dims of a ``*batch`` dim, ``index`` says
    which (0 is the outermost) and ``key`` reads ``batch[0]``; otherwise ``key == batch_name``.
    """

    key: str
    axis_name: str | None
    in_axes: tuple[int | None, ...]
    out_axes: tuple[int | None, ...]
    size: int | None = None
    batch_name: str = ""
    index: int | None = None


@dataclass(frozen=True)
class Expansion:
    """The levels for one call, and the size-1 axes to squeeze from each array argument first."""

    levels: tuple[Level, ...]
    squeeze: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything derived from the annotations and the spec, computed once.

    ``arguments`` follow the signature; ``array_arguments`` are the indices of those that
    go through ``vmap`` (mapped or not), in order. ``order`` lists the batch names,
    outermost first. ``levels`` is None when the levels depend on the call (``*batch``,
    ``#graph``); then ``expand`` gives them.
    """

    function: str
    types: FunctionTypes
    arguments: tuple[Argument, ...]
    results: tuple[Result, ...]
    returns_tuple: bool
    order: tuple[str, ...]
    fixed_sizes: dict[str, int]
    levels: tuple[Level, ...] | None

    @functools.cached_property
    def array_arguments(self) -> tuple[int, ...]:
        """Indices (in ``arguments``) of the parameters that go through ``vmap``."""
        return tuple(i for i, argument in enumerate(self.arguments) if argument.placement is not None)

    @functools.cached_property
    def annotated_statics(self) -> tuple[int, ...]:
        """Indices of the non-array parameters that carry an annotation to check."""
        return tuple(
            i
            for i, argument in enumerate(self.arguments)
            if argument.placement is None and argument.value.hint is not None
        )

    @functools.cached_property
    def variadic_batch(self) -> str | None:
        """The name of the ``*batch`` batch dim, if the plan has one."""
        for placement in self.placements():
            if placement.variadic_batch is not None:
                return placement.variadic_batch
        return None

    @functools.cached_property
    def broadcastable_batch(self) -> frozenset[str]:
        """Batch names written ``#name`` in some argument's layout."""
        names: set[str] = set()
        for index in self.array_arguments:
            names |= self.arguments[index].placement.broadcastable_batch
        return frozenset(names)

    @functools.cached_property
    def unsized_levels(self) -> frozenset[str]:
        """Batch names no argument maps over and no layout sizes: sized from the bindings."""
        mapped = {name for i in self.array_arguments for name in self.arguments[i].placement.batch_names}
        return frozenset(name for name in self.order if name not in mapped and name not in self.fixed_sizes)

    def placements(self) -> list[Placement]:
        """Placements of the array arguments, then of the results."""
        return [self.arguments[i].placement for i in self.array_arguments] + [r.placement for r in self.results]

    def signature_text(self) -> str:
        """The batched signature: ``"graph node node, graph node feat -> graph node feat"``."""
        inputs = ", ".join(str(self.arguments[i].placement.batched) for i in self.array_arguments)
        outputs = ", ".join(str(result.placement.batched) for result in self.results)
        return f"{inputs} -> {outputs}"

    def expand(
        self, variadic_length: int, argument_lengths: tuple[int, ...], squeezed: tuple[frozenset[str], ...]
    ) -> Expansion:
        """The levels for a call.

        ``variadic_length`` is the broadcast number of ``*batch`` dims, ``argument_lengths``
        how many each array argument has (right-aligned), and ``squeezed`` the level keys
        at which each argument has a size-1 dim that broadcasts (squeezed, not mapped).
        """
        key = (variadic_length, argument_lengths, squeezed)
        return self._expansions.get_or_compute(key, lambda: _expand(self, *key))

    @functools.cached_property
    def _expansions(self) -> BoundedCache[Expansion]:
        return BoundedCache(maxsize=64)


def plan_of(fn: Any) -> Plan:
    """The plan behind a function made by ``shapedmap.batched`` (``TypeError`` for anything else)."""
    runner = getattr(fn, "__shapedmap__", None)
    if runner is None:
        raise TypeError(f"{describe_value(fn)} is not a function made by shapedmap.batched")
    return runner.resolve()


def expansion_for(
    plan: Plan,
    leaf_shapes: list[list[tuple[int, ...]]],
    sizes: Mapping[str, int],
    variadic_shape: tuple[int, ...],
) -> Expansion:
    """The levels of one call whose levels depend on it (``*batch``, ``#graph``, unsized levels).

    ``leaf_shapes`` holds, per array argument, the shapes of its leaves; ``sizes`` the bound batch
    sizes; ``variadic_shape`` the broadcast shape of the ``*batch`` dims. As in ``jnp.vectorize``, a
    size-1 dim of a broadcastable batch dim whose bound size is not 1 is squeezed and left unmapped,
    so the one example is shared.
    """
    if plan.levels is not None:
        levels = plan.levels
        squeeze: tuple[tuple[int, ...], ...] = ()
    else:
        lengths, squeezed = [], []
        for index, shapes in zip(plan.array_arguments, leaf_shapes, strict=True):
            argument = plan.arguments[index]
            per_leaf = {_squeezed_batch_dims(argument.placement, shape, variadic_shape, sizes) for shape in shapes}
            if len(per_leaf) > 1:
                raise ShapeError(
                    f"{plan.function}: the leaves of argument '{argument.name}' disagree on their batch dims "
                    f"(shapes {', '.join(map(str, shapes))}); one in_axes entry maps the whole PyTree, so every "
                    "leaf needs the same batch shape"
                )
            own, dropped = per_leaf.pop() if per_leaf else (0, frozenset())
            lengths.append(own)
            squeezed.append(dropped)
        expansion = plan.expand(len(variadic_shape), tuple(lengths), tuple(squeezed))
        levels, squeeze = expansion.levels, expansion.squeeze
    if plan.unsized_levels:
        levels = tuple(_sized(level, sizes) for level in levels)
    return Expansion(levels, squeeze)


def _squeezed_batch_dims(
    placement: Placement, shape: tuple[int, ...], variadic_shape: tuple[int, ...], sizes: Mapping[str, int]
) -> tuple[int, frozenset[str]]:
    """How many ``*batch`` dims this array has, and the level keys of its size-1 broadcast dims."""
    batch_at = dict(placement.batch)
    own, dropped = 0, set()
    for token_index, size in enumerate(placement.batched.split(shape)):
        name = batch_at.get(token_index)
        if name is None:
            continue
        if name == placement.variadic_batch:
            own = len(size)
            for j, dim_size in enumerate(size):
                level_index = len(variadic_shape) - own + j
                if dim_size == 1 and variadic_shape[level_index] != 1:
                    dropped.add(variadic_key(name, level_index))
        elif name in placement.broadcastable_batch and size == 1 and sizes.get(name) not in (None, 1):
            dropped.add(name)
    return own, frozenset(dropped)


def _sized(level: Level, sizes: Mapping[str, int]) -> Level:
    """A level no argument maps over gets its ``axis_size`` from the bound sizes."""
    if level.size is not None or any(axis is not None for axis in level.in_axes):
        return level
    return dataclasses.replace(level, size=sizes.get(level.key))


def _expand(
    plan: Plan, variadic_length: int, argument_lengths: tuple[int, ...], squeezed: tuple[frozenset[str], ...]
) -> Expansion:
    argument_slots, squeeze = [], []
    for index, length, dropped in zip(plan.array_arguments, argument_lengths, squeezed, strict=True):
        placement = plan.arguments[index].placement
        slots = placement.slots(length)
        if placement.variadic_batch is not None:
            # Right-align this argument's batch dims with the broadcast ones.
            shift = variadic_length - length
            slots = tuple(_shift_key(slot, placement.variadic_batch, shift) for slot in slots)
        squeeze.append(tuple(_axis_in(slots, position) for position, slot in enumerate(slots) if slot in dropped))
        argument_slots.append(tuple(slot for slot in slots if slot not in dropped))
    result_slots = [result.placement.slots(variadic_length) for result in plan.results]
    order = _expand_order(plan.order, plan.variadic_batch, variadic_length)
    levels = _levels(order, plan, argument_slots, result_slots)
    return Expansion(levels, tuple(squeeze))


def _shift_key(slot: str, name: str, shift: int) -> str:
    prefix = f"{name}["
    if slot.startswith(prefix) and slot.endswith("]"):
        return variadic_key(name, int(slot[len(prefix) : -1]) + shift)
    return slot


def _expand_order(order: tuple[str, ...], variadic: str | None, length: int) -> tuple[tuple[str, str, int | None], ...]:
    """``(level key, batch name, index)`` per level, outermost first; ``*batch`` spans ``length`` levels."""
    expanded: list[tuple[str, str, int | None]] = []
    for name in order:
        if name == variadic:
            expanded.extend((variadic_key(name, j), name, j) for j in range(length))
        else:
            expanded.append((name, name, None))
    return tuple(expanded)


def _axis_in(slots: tuple[str, ...], position: int) -> int:
    """The axis of ``slots[position]``: negative when a core variadic comes before it."""
    if _CORE_VARIADIC in slots[:position]:
        return position - len(slots)
    return position


def _axis_at_level(slots: tuple[str, ...], key: str, outer: set[str]) -> int | None:
    remaining = tuple(slot for slot in slots if slot not in outer)
    if key not in remaining:
        return None
    return _axis_in(remaining, remaining.index(key))


def _levels(
    order: tuple[tuple[str, str, int | None], ...],
    plan: Plan,
    argument_slots: list[tuple[str, ...]],
    result_slots: list[tuple[str, ...]],
) -> tuple[Level, ...]:
    levels = []
    keys = [key for key, _, _ in order]
    for depth, (key, batch_name, index) in enumerate(order):
        outer = set(keys[:depth])
        levels.append(
            Level(
                key=key,
                axis_name=batch_name if index is None else None,  # the dims of '*batch' are unnamed
                in_axes=tuple(_axis_at_level(slots, key, outer) for slots in argument_slots),
                out_axes=tuple(_axis_at_level(slots, key, outer) for slots in result_slots),
                size=plan.fixed_sizes.get(key),
                batch_name=batch_name,
                index=index,
            )
        )
    return tuple(levels)


# -- building the plan -------------------------------------------------------------------


def make_plan(
    types: FunctionTypes,
    spec: str | None,
    layouts: dict[str, str] | None = None,
    out: str | tuple[str, ...] | list[str] | None = None,
) -> Plan:
    """Derive the plan for ``types`` (from ``read_function``) batched by ``spec``.

    Raises:
        SpecError: for any spec that can never work, naming the function and the parameter.
    """
    name = types.name

    def fail(message: str) -> SpecError:
        return SpecError(f"{name}: {message}")

    parsed = _parse_spec_for(spec, fail)
    array_parameters = [p for p in types.parameters if p.value.is_array]
    layouts = _check_layouts_argument(layouts, types, fail)
    if parsed.inputs == () and len(array_parameters) == 1:
        # Nothing before '->' is no layout, or one scalar's for the one array parameter.
        parsed = dataclasses.replace(parsed, inputs=(Layout(()),))
    if parsed.inputs is not None and len(parsed.inputs) != len(array_parameters):
        names = ", ".join(f"'{p.name}'" for p in array_parameters) or "none"
        raise fail(
            f"the spec {spec!r} has {len(parsed.inputs)} input layout(s) but the function has "
            f"{len(array_parameters)} array parameter(s) ({names}); give one layout per array "
            "parameter, in order (non-array parameters are skipped)"
        )
    arguments = []
    signature_layouts = iter(parsed.inputs or ())
    for parameter in types.parameters:
        if not parameter.value.is_array:
            arguments.append(Argument(parameter.name, parameter.kind, parameter.default, parameter.value, None))
            continue
        per_example = parameter.value.array.layout
        from_signature = next(signature_layouts, None)
        where = f"parameter '{parameter.name}'"
        if parameter.name in layouts:
            batched_layout = _parse_for(layouts[parameter.name], where, fail)
        elif parsed.batch is not None:
            batched_layout = _prepend(parsed.batch, per_example, where, fail)
        elif from_signature is not None:
            batched_layout = from_signature
        else:
            batched_layout = per_example
        placement = _place(batched_layout, per_example, where, fail)
        arguments.append(Argument(parameter.name, parameter.kind, parameter.default, parameter.value, placement))

    input_batch = _ordered_names(a.placement for a in arguments if a.placement is not None)
    results = _place_results(types, parsed, out, input_batch, spec, fail)
    order, fixed_sizes = _order_and_sizes(arguments, results, fail)
    _check_symbolic(arguments, results, fail)
    plan = Plan(
        function=name,
        types=types,
        arguments=tuple(arguments),
        results=tuple(results),
        returns_tuple=types.returns_tuple,
        order=order,
        fixed_sizes=fixed_sizes,
        levels=None,
    )
    if not order:
        raise fail(
            "no batch dims: every layout equals its per-example annotation, so there is "
            "nothing to map. Name the batch dims in the spec, e.g. batched(f, 'batch')"
        )
    if plan.variadic_batch is None and not plan.broadcastable_batch:
        lengths = tuple(0 for _ in plan.array_arguments)
        unsqueezed = tuple(frozenset() for _ in plan.array_arguments)
        plan = dataclasses.replace(plan, levels=_expand(plan, 0, lengths, unsqueezed).levels)
    return plan


def _parse_spec_for(spec: str | None, fail: Any) -> Spec:
    if spec is None:
        return Spec()
    try:
        return parse_spec(spec)
    except SpecError as error:
        raise fail(f"invalid spec {spec!r}: {error}") from None


def _parse_for(text: Any, where: str, fail: Any) -> Layout:
    try:
        return parse_layout(text)
    except SpecError as error:
        raise fail(f"invalid layout {text!r} for {where}: {error}") from None


def _check_layouts_argument(layouts: Any, types: FunctionTypes, fail: Any) -> dict[str, str]:
    if layouts is None:
        return {}
    if not isinstance(layouts, dict):
        raise fail(f"layouts= must be a dict from parameter name to layout, got {type(layouts).__name__}")
    known = {p.name: p for p in types.parameters}
    for key in layouts:
        if key not in known:
            raise fail(f"layouts= names {key!r}, which is not a parameter (parameters: {', '.join(known) or 'none'})")
        if not known[key].value.is_array:
            hint = known[key].value.hint
            annotated = "is not annotated" if hint is None else f"is annotated {getattr(hint, '__name__', hint)}"
            raise fail(
                f"layouts= gives a layout for '{key}', which {annotated}: only array parameters "
                "have layouts (non-array parameters are held static, never mapped)"
            )
    return layouts


def _prepend(batch: tuple[Any, ...], per_example: Layout, where: str, fail: Any) -> Layout:
    clashes = [dim_name(dim) for dim in batch if dim_name(dim) in per_example.names()]
    if clashes:
        raise fail(
            f"the batch name '{clashes[0]}' is already a dimension of the per-example annotation "
            f"{str(per_example)!r} of {where}; pick another batch name"
        )
    return Layout((*batch, *per_example.dims))


def _place(batched: Layout, per_example: Layout, where: str, fail: Any) -> Placement:
    """Find the batch dims of ``batched`` and check the rest is exactly ``per_example``."""
    core_names = per_example.names()
    batch: list[tuple[int, str]] = []
    for index, dim in enumerate(batched.dims):
        name = dim_name(dim)
        if name is None or name in core_names:
            continue
        if not is_batch_token(dim):
            raise fail(
                f"{dim_text(dim)!r} in the layout {str(batched)!r} of {where} is not in the per-example "
                f"annotation {str(per_example)!r}, so it would be a batch dim, but a batch dim must be "
                "a plain name, 'name=size' or '*name'"
            )
        if name in dict((n, i) for i, n in batch):
            raise fail(f"the batch name '{name}' appears twice in the layout {str(batched)!r} of {where}")
        batch.append((index, name))
    if sum(isinstance(dim, VariadicDim) for dim in batched.dims) > 1:
        raise fail(
            f"the layout {str(batched)!r} of {where} has two variadic dims ('*name' or '...'): a "
            "'*batch' spec needs per-example annotations without '*name' or '...'"
        )
    core = batched.without({index for index, _ in batch})
    if core != per_example:
        raise fail(_core_mismatch(batched, core, per_example, where))
    return Placement(batched, per_example, tuple(batch))


def _core_mismatch(batched: Layout, core: Layout, per_example: Layout, where: str) -> str:
    head = f"the layout {str(batched)!r} of {where}"
    core_tokens = [dim_text(d) for d in core.dims]
    example_tokens = [dim_text(d) for d in per_example.dims]
    if sorted(core_tokens) == sorted(example_tokens):
        return (
            f"{head} has the core dims in the order {str(core)!r} but the per-example annotation "
            f"says {str(per_example)!r}; vmap cannot transpose: keep the per-example order and "
            "insert only the batch dims"
        )
    missing = list((Counter(example_tokens) - Counter(core_tokens)).elements())
    if missing:
        return (
            f"{head} lacks the per-example dim(s) {', '.join(map(repr, missing))} of the annotation "
            f"{str(per_example)!r}; a batched layout is the per-example layout with batch dims inserted"
        )
    return (
        f"{head} without its batch dims is {str(core)!r}, but the per-example annotation is "
        f"{str(per_example)!r}; a batched layout is the per-example layout with batch dims inserted"
    )


def _ordered_names(placements: Any) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for placement in placements:
        for name in placement.batch_names:
            names.setdefault(name)
    return tuple(names)


def _place_results(
    types: FunctionTypes, parsed: Spec, out: Any, input_batch: tuple[str, ...], spec: Any, fail: Any
) -> list[Result]:
    count = len(types.outputs)
    if out is not None:
        texts = (out,) if isinstance(out, str) else tuple(out) if isinstance(out, tuple | list) else None
        if texts is None:
            raise fail(f"out= must be a layout string or a tuple of them, got {type(out).__name__}")
        layouts = [_parse_for(text, "the return value", fail) for text in texts]
    elif parsed.outputs is not None:
        layouts = list(parsed.outputs)
    else:
        layouts = None
    if layouts is not None and len(layouts) != count:
        shape = f"a tuple of {count}" if types.returns_tuple else "one value"
        raise fail(
            f"{len(layouts)} output layout(s) given but the return annotation says {shape}"
            + ("" if types.returns_tuple or count != 1 else " (annotate tuple[...] for several results)")
        )
    results = []
    for index, value in enumerate(types.outputs):
        where = f"result {index}" if types.returns_tuple else "the return value"
        per_example = value.array.layout
        if layouts is not None:
            batched_layout = layouts[index]
        elif parsed.batch is not None:
            batched_layout = _prepend(parsed.batch, per_example, where, fail)
        else:
            names = [n for n in input_batch if n not in per_example.names()]
            batched_layout = Layout((*(NamedDim(n) for n in names), *per_example.dims))
        results.append(Result(value, _place(batched_layout, per_example, where, fail)))
    return results


def _order_and_sizes(
    arguments: list[Argument], results: list[Result], fail: Any
) -> tuple[tuple[str, ...], dict[str, int]]:
    """Batch names outermost first (by the outputs, then the inputs), and their fixed sizes."""
    argument_placements = [a.placement for a in arguments if a.placement is not None]
    placements = [r.placement for r in results] + argument_placements
    order = _ordered_names(placements)
    fixed_sizes: dict[str, int] = {}
    for placement in placements:
        for index, batch_name in placement.batch:
            dim = placement.batched.dims[index]
            if isinstance(dim, FixedDim) and fixed_sizes.setdefault(batch_name, dim.size) != dim.size:
                raise fail(f"the batch dim '{batch_name}' is given two sizes, {fixed_sizes[batch_name]} and {dim.size}")
    variadic = {p.variadic_batch for p in placements if p.variadic_batch is not None}
    if len(variadic) > 1:
        raise fail(f"at most one '*name' batch dim is supported, got {', '.join(sorted(variadic))}")
    # Only a plain name binds one size an output batch dim can take: not a core dim's label
    # ('n=3' documents a fixed size), nor a variadic ('*rest' binds several), nor a '?n' per leaf.
    bound_anywhere, variadic_anywhere, mentioned = set(), set(), set()
    for placement in placements[len(results) :]:
        bound_anywhere |= {d.name for d in placement.batched.dims if isinstance(d, NamedDim) and not d.treepath}
        bound_anywhere |= placement.labels
        variadic_anywhere |= {d.name for d in placement.batched.dims if isinstance(d, VariadicDim)}
        mentioned |= placement.batched.names()
    for result in results:
        for batch_name in result.placement.batch_names:
            binding = variadic_anywhere if batch_name == result.placement.variadic_batch else bound_anywhere
            if batch_name not in binding and batch_name not in fixed_sizes:
                where = (
                    "gets no size from the input layouts (there it is only a variadic or a fixed size's label)"
                    if batch_name in mentioned
                    else "appears in no input layout"
                )
                raise fail(
                    f"the output batch dim '{batch_name}' {where}, so its size is unknown; give it a size "
                    f"in the output layout ('{batch_name}=5') or map an input over it"
                )
    for name in variadic:
        if any(p.variadic_batch != name and name in p.batch_names for p in placements):
            raise fail(f"'{name}' is used both as '*{name}' and as a single batch dim")
    return order, fixed_sizes


def _check_symbolic(arguments: list[Argument], results: list[Result], fail: Any) -> None:
    """Every name an expression uses must be bound somewhere; jaxtyping needs it bound earlier."""
    parameter_names = {argument.name for argument in arguments}
    bound: set[str] = set()
    for argument in arguments:
        if argument.placement is not None:
            bound |= {dim.name for dim in argument.placement.batched.dims if isinstance(dim, NamedDim)}
    for result in results:
        bound |= {dim.name for dim in result.placement.batched.dims if isinstance(dim, NamedDim)}
    seen_in_order: set[str] = set()
    for argument in arguments:
        if argument.placement is None:
            continue
        for dim in argument.placement.per_example.dims:
            if isinstance(dim, NamedDim):
                seen_in_order.add(dim.name)
            elif isinstance(dim, SymbolicDim):
                _check_expression(dim, f"parameter '{argument.name}'", bound, parameter_names, fail)
                later = symbolic_names(dim) - seen_in_order
                if later:
                    raise fail(
                        f"the dimension {dim.expression!r} of parameter '{argument.name}' uses "
                        f"{', '.join(map(repr, sorted(later)))} before any earlier parameter binds it; "
                        "jaxtyping checks parameters left to right, so put the parameter that binds "
                        "it first (or use the expression only in the return annotation)"
                    )
    # The per-example check (jaxtyping) sees one example: only names the per-example annotations
    # bind have a size there, not batch names.
    per_example = seen_in_order | {
        dim.name for result in results for dim in result.placement.per_example.dims if isinstance(dim, NamedDim)
    }
    for index, result in enumerate(results):
        for dim in result.placement.batched.dims:
            if isinstance(dim, SymbolicDim):
                _check_expression(dim, f"result {index}", bound, parameter_names, fail)
                batch_only = symbolic_names(dim) - per_example
                if batch_only:
                    raise fail(
                        f"the dimension {dim.expression!r} of result {index} uses "
                        f"{', '.join(map(repr, sorted(batch_only)))}, which only a batched layout binds: the "
                        "per-example annotation is checked on one example, where a batch dim has no size"
                    )


def _check_expression(dim: SymbolicDim, where: str, bound: set[str], parameters: set[str], fail: Any) -> None:
    unknown = symbolic_names(dim) - bound
    if unknown:
        raise fail(
            f"the dimension {dim.expression!r} of {where} uses {', '.join(map(repr, sorted(unknown)))}, "
            "which no layout binds"
        )
    unknown_arguments = symbolic_arguments(dim) - parameters
    if unknown_arguments:
        raise fail(
            f"the dimension {dim.expression!r} of {where} refers to {', '.join(map(repr, sorted(unknown_arguments)))} "
            "in braces, which is not a parameter"
        )
