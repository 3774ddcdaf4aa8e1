"""``given=``: a value or a strategy the caller fixes for any parameter, and the sizes it fixes.

``Options.resolve`` sorts the options that say what a parameter gets — ``given=`` (the whole
value, for any parameter), ``static=`` (its older form, for static parameters) and
``elements=`` (the scalars of an array that is still drawn) — refusing a name that is no
parameter and a parameter named by two of them. ``read_given`` reads one example's given
array values against their layouts with the core's own ``Bindings``: each binds the sizes of
its dims, which the drawn arguments then take, and two given values that disagree are named.
A value that fits the parameter's per-example layout but not its batched one is one
example's value: ``share`` broadcasts it along the batch dims once their sizes are drawn.

Example:
    >>> import jax.numpy as jnp
    >>> from shapedmap.examples import message_passing
    >>> from shapedmap._plan import plan_of
    >>> read = read_given(plan_of(message_passing), {"a": jnp.ones((2, 5, 5))}, "inputs(message_passing)")
    >>> read.sizes
    {'graph': 2, 'node': 5}
    >>> read_given(plan_of(message_passing), {"a": jnp.ones((5, 5))}, "inputs(message_passing)").shared
    frozenset({'a'})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from .._binding import Bindings
from .._errors import ShapeError, describe_value
from .._grammar import FixedDim, VariadicDim
from .._levels import Placement
from .._places import argument_place, leaf_place
from .._plan import Argument, Plan

__all__ = ["GivenSizes", "Options", "read_given", "share"]


@dataclass(frozen=True)
class Options:
    """What the caller fixed, by parameter: strategies for static parameters and for whole
    array arguments, and element strategies for drawn arrays."""

    static: dict[str, st.SearchStrategy[Any]]
    given: dict[str, st.SearchStrategy[Any]]
    elements: dict[str, st.SearchStrategy[Any]]

    @classmethod
    def resolve(
        cls,
        plan: Plan,
        static: Mapping[str, Any],
        elements: Mapping[str, Any],
        given: Mapping[str, Any],
        where: str,
        bound: str | None = None,
    ) -> Options:
        """The options by parameter, or a ``ValueError`` that says what to write instead.

        ``bound`` is the parameter a bound method holds already (its ``self``).
        """
        by_name = {argument.name: argument for argument in plan.arguments}
        named: dict[str, str] = {}
        for option, values in (("given", given), ("static", static), ("elements", elements)):
            if not isinstance(values, Mapping):
                raise TypeError(f"{where}: {option}= must be a dict from parameter name to a value or a strategy")
            for name in values:
                if name not in by_name:
                    raise ValueError(
                        f"{where}: {option}= names {name!r}, which is not a parameter "
                        f"(parameters: {', '.join(by_name) or 'none'})"
                    )
                if name == bound:
                    raise ValueError(
                        f"{where}: {option}= names {name!r}, which the bound method holds already; "
                        f"check the function on the class to give it (inputs(Class.method, given={{{name!r}: ...}}))"
                    )
                if name in named:
                    raise ValueError(
                        f"{where}: '{name}' is named by both {named[name]}= and {option}=; name it once: "
                        "given= fixes the whole value, static= is given= for a static parameter, and "
                        "elements= draws the values of an array that is still drawn"
                    )
                named[name] = option
        for name in static:
            if by_name[name].placement is not None:
                raise ValueError(
                    f"{where}: static= names {name!r}, which is an array parameter; give its value with "
                    f"given={{{name!r}: ...}} (a value or a strategy), or its elements' values with elements="
                )
        for name in elements:
            if by_name[name].placement is None:
                raise ValueError(
                    f"{where}: elements= names {name!r}, which is a static (non-array) parameter; "
                    f"give its value with given={{{name!r}: ...}}"
                )
        strategies = {name: _strategy(value) for name, value in given.items()}
        return cls(
            static={
                **{name: _strategy(value) for name, value in static.items()},
                **{name: s for name, s in strategies.items() if by_name[name].placement is None},
            },
            given={name: s for name, s in strategies.items() if by_name[name].placement is not None},
            elements={name: value.map(_scalar(where, name)) for name, value in elements.items()},
        )


def _strategy(value: Any) -> st.SearchStrategy[Any]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def _scalar(where: str, name: str) -> Any:
    """A check on each value an ``elements=`` strategy draws: one scalar, else say to use ``given=``."""

    def check(value: Any) -> Any:
        if isinstance(value, bool | int | float | complex | np.generic):
            return value
        if hasattr(value, "dtype") and np.shape(value) == ():
            return value
        raise ValueError(
            f"{where}: elements= for {name!r} drew {describe_value(value)}, not a scalar: elements= gives "
            f"the values of one array's elements; to give the whole argument, use given={{{name!r}: ...}}"
        )

    return check


@dataclass(frozen=True)
class GivenSizes:
    """What one example's given array values fix: sizes by dim name, shapes by ``*name``,
    the tree structures of named ``PyTree[..., "T"]``, and which values are one example's
    (``shared``: broadcast along the batch once its sizes are drawn)."""

    sizes: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    structures: dict[str, Any] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()


def read_given(plan: Plan, values: Mapping[str, Any], where: str) -> GivenSizes:
    """Bind the given array values against their layouts (``ValueError`` when one does not fit
    or two disagree)."""
    by_name = {argument.name: argument for argument in plan.arguments}
    bindings = Bindings(plan.function)
    broadcast = frozenset() if plan.variadic_batch is None else frozenset({plan.variadic_batch})
    shared: set[str] = set()
    structures: dict[str, Any] = {}
    for name, value in values.items():
        argument = by_name[name]
        if value is None and argument.value.optional:
            continue
        placement = argument.placement
        leaves, treedef = _array_leaves(argument, value, where)
        one_example = _is_one_example(argument, placement, [leaf for _, leaf in leaves])
        layout = placement.per_example if one_example else placement.batched
        for path, leaf in leaves:
            place = leaf_place(argument_place(name), path)
            if not argument.value.array.admits_dtype(leaf.dtype):
                raise ValueError(
                    f"{where}: the value given for '{name}' has {describe_value(leaf)} at {place}, but its "
                    f"annotation admits {argument.value.array.dtype_description()} dtypes"
                )
            try:
                bindings.bind(
                    layout,
                    leaf,
                    place,
                    broadcast=broadcast,
                    labels=frozenset() if one_example else placement.labels,
                    leaf=jax.tree_util.keystr(path),
                )
            except ShapeError as error:
                before = [other for other in values if other != name][: list(values).index(name)]
                raise ValueError(_does_not_fit(where, name, placement, error, before)) from None
        if one_example:
            shared.add(name)
        if argument.value.structure is not None:
            structures.setdefault(argument.value.structure, treedef)
    return GivenSizes(
        sizes={name: int(size) for name, (size, _) in bindings.sizes.items() if isinstance(size, int)},
        shapes={name: tuple(int(size) for size in shape) for name, (shape, _) in bindings.variadics.items()},
        structures=structures,
        shared=frozenset(shared),
    )


def _array_leaves(argument: Argument, value: Any, where: str) -> tuple[list[tuple[Any, Any]], Any]:
    """``(path, leaf)`` for each array leaf of a given value (with ``.shape`` and ``.dtype``)."""
    if argument.value.kind == "array":
        paths_and_leaves, treedef = [((), value)], None
    else:
        paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(value)
    leaves = []
    for path, leaf in paths_and_leaves:
        if isinstance(leaf, bool | int | float | complex):
            leaf = np.asarray(leaf)
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype") or getattr(leaf.dtype, "kind", None) == "O":
            at = f" at {jax.tree_util.keystr(path)}" if path else ""
            raise ValueError(
                f"{where}: the value given for '{argument.name}' has {describe_value(leaf)}{at}, which is not an "
                f"array, but '{argument.name}' is an array parameter ({_annotation_text(argument)}): give it arrays "
                "only, or annotate the parameter with the value's class (a model is then held static, like "
                "a config); for an equinox model, eqx.partition(model, eqx.is_array) splits off its arrays"
            )
        leaves.append((path, leaf))
    return leaves, treedef


def _annotation_text(argument: Argument) -> str:
    hint = argument.value.hint
    return f"annotated {getattr(hint, '__name__', hint)}" if hint is not None else "given a layout"


def _is_one_example(argument: Argument, placement: Placement, leaves: list[Any]) -> bool:
    """Does a given value hold one example (to be shared), not a batch?

    When it fits the per-example layout and not the batched one: by rank, or, for a union of
    shapes (``PRNGKeyArray``), by which members one example would match.
    """
    if not placement.batch or placement.variadic_batch is not None or not leaves:
        return False  # nothing to share along (a '*batch' value broadcasts as it is)
    ranks = [len(leaf.shape) for leaf in leaves]
    if not all(placement.per_example.admits_rank(rank) for rank in ranks):
        return False
    if not all(placement.batched.admits_rank(rank) for rank in ranks):
        return True
    alternatives = argument.value.array.alternatives
    if alternatives:
        array = argument.value.array
        as_batch = all(
            array.admits_example(leaf.dtype, placement.per_example_shape(tuple(leaf.shape))) for leaf in leaves
        )
        return not as_batch and all(array.admits_example(leaf.dtype, tuple(leaf.shape)) for leaf in leaves)
    return False


def _does_not_fit(where: str, name: str, placement: Placement, error: ShapeError, before: list[str]) -> str:
    detail = "\n".join("    " + line for line in str(error).splitlines())
    batch = placement.batch_names
    hint = ""
    if batch:
        names = ", ".join(f"'{b}'" for b in batch)
        hint = (
            f"\n  '{name}' is mapped over {names} (layout '{placement.batched}'): give a batch of values, "
            f"one example's value (layout '{placement.per_example}', shared by every example), or, for "
            f"one value every example shares, batch the function with layouts={{{name!r}: None}}"
        )
    others = f" with the sizes the values given for {', '.join(repr(b) for b in before)} bind" if before else ""
    return (
        f"{where}: the value given for '{name}' does not fit its layout '{placement.batched}'{others}:\n{detail}{hint}"
    )


def share(placement: Placement, value: Any, sizes: Mapping[str, int]) -> Any:
    """One example's ``value`` broadcast along the batch dims of its layout, at the drawn sizes
    (a ``#name`` dim stays 1: it broadcasts)."""
    batch_at = dict(placement.batch)

    def leaf(array: Any) -> Any:
        array = jnp.asarray(array)
        per_example = iter(placement.per_example.split(tuple(array.shape)))
        kept: list[int] = []
        target: list[int] = []
        for index, dim in enumerate(placement.batched.dims):
            if index in batch_at:
                size = dim.size if isinstance(dim, FixedDim) else 1 if dim.broadcastable else sizes[batch_at[index]]
                kept.append(1)
                target.append(size)
            else:
                part = next(per_example)
                part = part if isinstance(dim, VariadicDim) else (part,)
                kept.extend(part)
                target.extend(part)
        return jnp.broadcast_to(array.reshape(kept), tuple(target))

    return jax.tree_util.tree_map(leaf, value)
