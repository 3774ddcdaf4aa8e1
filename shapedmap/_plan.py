"""The immutable ``Plan`` of a batched function: what its annotations and spec decided, once.

A ``Plan`` holds every parameter (``Argument``: its kind, annotation and ``Placement``, or
None for a static one), every result, the batch names outermost first, their fixed sizes,
and the ``jax.vmap`` levels. ``_planner.make_plan`` builds it when the decorator is applied.
When the levels depend on the call (``*batch`` spans as many dims as the arguments have;
a size-1 ``#graph`` dim is shared rather than mapped), ``Plan.levels`` is None and each call
settles them (``_nest.nest_for``). ``Plan.memo`` is the function's one cache: bounded, keyed
on all that decides each value, living and dying with the plan.

Example:
    >>> from shapedmap._plan import plan_of
    >>> from shapedmap.examples import mv
    >>> plan = plan_of(mv)
    >>> plan.order, plan.levels[0].in_axes, plan.levels[0].out_axes
    (('b',), (0, None), (0,))
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._cache import BoundedCache
from ._errors import describe_value
from ._grammar import (
    SymbolicDim,
)
from ._layout_trees import TreePlacement
from ._levels import Budget, CallShape, Level, Placement, VmapNest, derive_levels
from ._places import argument_place, bound_place
from ._value_types import FunctionTypes, ValueType

__all__ = [
    "Argument",
    "Plan",
    "Result",
    "bound_note",
    "call_arguments",
    "fixed_arguments",
    "plan_of",
    "unannotated_note",
]

Value = TypeVar("Value")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class Argument:
    """One parameter of the per-example function; ``placement`` is None for static ones.

    ``bound`` names the partial whose value this is (``"functools.partial"``): a keyword it binds
    that the call does not override, or a value it fixes (``Plan.fixed``), held in ``default``.
    Such a value is shared (its per-example layout) and named as bound in messages (``place``).
    ``split``: the caller passes one key, which each call splits into one key per example
    (``layouts={name: SplitKey()}``); ``placement`` is then the split keys' layout, the batch
    names leading, and ``passed`` the one key's.
    """

    name: str
    kind: inspect._ParameterKind
    default: Any
    value: ValueType
    placement: Placement | TreePlacement | None
    bound: str | None = None
    split: bool = False

    @property
    def place(self) -> str:
        """How messages name it: ``argument 'x'``, or ``'mask' (bound by functools.partial)``."""
        return argument_place(self.name) if self.bound is None else bound_place(self.name, self.bound)

    @property
    def passed(self) -> Placement | None:
        """The layout of the value the caller passes: ``placement``, or one key's for a split key."""
        if not self.split or self.placement is None:
            return self.placement
        per_example = self.placement.per_example
        return Placement(per_example, per_example, ())

    @property
    def positional(self) -> bool:
        """Passed by position (positional-only or positional-or-keyword)."""
        return self.kind in _POSITIONAL

    @property
    def variadic(self) -> bool:
        """``*args`` or ``**kwargs``: the annotation applies to each entry."""
        return self.kind in _VARIADIC

    def entries(self, value: Any) -> Any:
        """The values the annotation applies to: each entry of ``*args``/``**kwargs``, else ``value``."""
        if self.kind is inspect.Parameter.VAR_POSITIONAL:
            return value
        if self.kind is inspect.Parameter.VAR_KEYWORD:
            return value.values()
        return (value,)


def call_arguments(arguments: tuple[Argument, ...], values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of a call, from one value per parameter."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for argument, value in zip(arguments, values, strict=True):
        if argument.positional:
            args.append(value)
        elif argument.kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(value)
        elif argument.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[argument.name] = value
        else:
            kwargs.update(value)
    return args, kwargs


def fixed_arguments(types: FunctionTypes) -> tuple[Argument, ...]:
    """The values a partial fixes (``types.fixed``), each placed at its per-example layout: shared."""
    return tuple(
        Argument(
            fixed.name,
            fixed.kind,
            fixed.default,
            fixed.value,
            Placement(fixed.value.array.layout, fixed.value.array.layout, ()) if fixed.value.is_array else None,
            fixed.bound,
        )
        for fixed in types.fixed
    )


def bound_note(arguments: Sequence[Argument]) -> str:
    """A partial's bound values are shared, never mapped: say so where a batch dim finds no array."""
    names = [a.name for a in arguments if a.bound is not None and a.placement is not None]
    if not names:
        return ""
    return f". {', '.join(map(repr, names))}: bound by the partial, so shared (never mapped) unless passed again"


def unannotated_note(arguments: Sequence[Argument]) -> str:
    """Unannotated parameters are static, never mapped: say so, and both fixes, where a batch dim finds no array."""
    names = [a.name for a in arguments if a.placement is None and a.value.hint is None]
    if not names:
        return ""
    batch = next((n for a in arguments if a.placement is not None for n in a.placement.batch_names), "batch")
    listed = ", ".join(f"'{name}'" for name in names)
    layouts = ", ".join(f"{name!r}: '{batch} ...'" for name in names)
    return (
        f". {listed} {'is' if len(names) == 1 else 'are'} not annotated, so held static (never mapped): "
        f"give {'it a layout' if len(names) == 1 else 'them layouts'} (layouts={{{layouts}}}) or annotate "
        f"{'it' if len(names) == 1 else 'them'} (like {names[0]}: Float[Array, '...'])"
    )


@dataclass(frozen=True)
class Result:
    """One result (one tuple element, or the whole return value)."""

    value: ValueType
    placement: Placement | TreePlacement


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything derived from the annotations and the spec, computed once.

    ``arguments`` follow the signature; ``array_arguments`` are the indices of those that
    go through ``vmap`` (mapped or not), in order. ``order`` lists the batch names,
    outermost first. ``levels`` is None when the levels depend on the call's shapes (``*batch``,
    ``#graph``); a level that no argument maps and no layout sizes (``unsized_levels``) takes its
    size from each call's bindings. ``static_nest`` is the nest when neither happens;
    ``_nest.nest_for`` settles the others per call. ``chunks`` are the batch names mapped in
    slices (``chunk=``): a number of examples, or a ``Budget`` settled per call. ``fixed`` are the
    values a partial fixes (its positionals), each at its per-example layout, checked with the arguments.
    """

    function: str
    types: FunctionTypes
    arguments: tuple[Argument, ...]
    results: tuple[Result, ...]
    order: tuple[str, ...]
    fixed_sizes: dict[str, int]
    levels: tuple[Level, ...] | None
    chunks: dict[str, int | Budget] = field(default_factory=dict)
    fixed: tuple[Argument, ...] = ()  # values a partial fixes (its positionals): shared, checked, not passed

    @functools.cached_property
    def bound_keywords(self) -> frozenset[str]:
        """The keywords a partial binds that this plan shares (the call does not override them)."""
        return frozenset(argument.name for argument in self.arguments if argument.bound is not None)

    @functools.cached_property
    def array_arguments(self) -> tuple[int, ...]:
        """Indices (in ``arguments``) of the parameters that go through ``vmap``."""
        return tuple(i for i, argument in enumerate(self.arguments) if argument.placement is not None)

    @property
    def returns_tuple(self) -> bool:
        """The return annotation is a ``tuple[...]``: one result per element."""
        return self.types.returns_tuple

    def with_mapped(self, values: list[Any], mapped: Sequence[Any]) -> list[Any]:
        """``values`` (one per parameter) with the array arguments replaced by ``mapped``, in order."""
        values = list(values)
        for index, value in zip(self.array_arguments, mapped, strict=True):
            values[index] = value
        return values

    def vmap_out_axes(self, level: Level) -> Any:
        """``out_axes`` as ``jax.vmap`` takes them: a tuple for a tuple result, else the one axis."""
        return level.out_axes if self.returns_tuple else level.out_axes[0]

    @functools.cached_property
    def static_nest(self) -> VmapNest | None:
        """The nest every call runs, when no call's shapes or sizes change it (else None)."""
        return VmapNest(self.levels, ()) if self.levels is not None and not self.unsized_levels else None

    @functools.cached_property
    def positional_and_mapped(self) -> bool:
        """Every parameter positional and an array: ``vmap`` can call the body directly."""
        return all(argument.positional and argument.placement is not None for argument in self.arguments)

    @functools.cached_property
    def leading_positionals(self) -> int:
        """How many parameters, from the first, take a positional argument each (not ``*args``)."""
        return next((i for i, argument in enumerate(self.arguments) if not argument.positional), len(self.arguments))

    @functools.cached_property
    def replays_by_shapes(self) -> bool:
        """A call of JAX arrays (or PyTrees of them) passed by position, with the shapes of one checked
        before, runs the same nest as that one with nothing checked again: levels settled once, no
        ``SplitKey`` to split, no ``{x.shape[0]}`` dim reading values (and, checked per call, nothing
        static: ``has_statics``)."""
        return self.static_nest is not None and not self.split_keys and not self.has_fstring_dims

    @functools.cached_property
    def split_keys(self) -> tuple[int, ...]:
        """Indices (in ``arguments``) of the keys passed as one and split per call (``SplitKey``)."""
        return tuple(i for i, argument in enumerate(self.arguments) if argument.split)

    @functools.cached_property
    def has_statics(self) -> bool:
        """Some parameter is held static: its value (an object's state) can change the results."""
        return any(argument.placement is None for argument in self.arguments)

    @functools.cached_property
    def has_fstring_dims(self) -> bool:
        """Some layout has a ``{x.shape[0]}`` dim: it reads argument values, not only shapes."""
        return any(
            isinstance(dim, SymbolicDim) and "{" in dim.expression
            for placement in self.placements()
            for dim in placement.batched.dims
        )

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
        """Placements of the array arguments, then of the results (each subtree's, for a layout tree)."""
        values = [self.arguments[i].placement for i in self.array_arguments] + [r.placement for r in self.results]
        return [leaf for placement in values for leaf in placement.leaves]

    def signature_text(self) -> str:
        """The batched signature: ``"graph node node, graph node feat -> graph node feat"``.

        A scalar's empty layout keeps its comma, without a second space: ``"i d, j d, -> j i d"``.
        """
        inputs = ", ".join(str(self.arguments[i].placement.batched) for i in self.array_arguments)
        outputs = ", ".join(str(result.placement.batched) for result in self.results)
        return f"{inputs} -> {outputs}".replace(",  ", ", ").replace(", ,", ",,").rstrip()

    def levels_for(self, shape: CallShape) -> VmapNest:
        """The levels for one shape of call (memoised)."""
        return self.memo(
            ("levels", shape),
            lambda: derive_levels(
                tuple(self.arguments[i].placement for i in self.array_arguments),
                tuple(result.placement for result in self.results),
                self.order,
                self.fixed_sizes,
                shape,
                self.chunks,
            ),
        )

    def memo(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """``compute()``, remembered under ``key`` for this plan (bounded): what calls with the same
        abstract shapes share. The cache lives and dies with the plan, so it holds nothing of the
        user's beyond the function's own life."""
        return self._memo.get_or_compute(key, compute)

    def memo_get(self, key: Hashable) -> Any:
        """What ``memo_add`` remembered under ``key``, or None."""
        return self.__dict__.get("_shared_checks", self._memo).get(key)

    def memo_add(self, key: Hashable, value: Any) -> None:
        """Remember ``value`` under ``key`` for this plan (bounded). A plan decorated again for the
        same function and options (``_rebuilt``) keeps these, the checked argument shapes, in a
        cache all its copies share (``_shared_checks``): they hold sizes, nothing of a call's values."""
        self.__dict__.get("_shared_checks", self._memo).add(key, value)

    @functools.cached_property
    def _memo(self) -> BoundedCache[Any]:
        return BoundedCache(maxsize=512)


def plan_of(fn: Any) -> Plan:
    """The plan behind a function made by ``shapedmap.batched`` (``TypeError`` for anything else)."""
    described = getattr(fn, "__shapedmap__", None)
    if described is None:
        raise TypeError(f"{describe_value(fn)} is not a function made by shapedmap.batched")
    return described.plan
