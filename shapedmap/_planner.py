"""Annotations and a spec -> the ``Plan`` of a batched function: ``make_plan`` (decoration time).

Every array parameter and every result gets a batched layout (from the spec, ``layouts=``
and ``out=``); its batch dims are the names the per-example annotation lacks, and the
remaining core dims must be exactly the per-example ones. An unannotated parameter or result
given a layout has the layout less the batch names as its per-example layout (``_placing``,
``_unannotated``); one given none is static (a parameter) or any PyTree (a result). Then the batch names are ordered
(outermost first), their fixed sizes read, every symbolic dim checked to be computable, and
the ``jax.vmap`` levels derived (``Plan.levels_for``). A spec that can never work is a
``SpecError`` here, naming the function and the parameter.

Example:
    >>> from shapedmap._annotations import read_function
    >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    ...     return x @ y
    >>> make_plan(read_function(vv), "b a, a c -> b c").order
    ('b', 'c')
    >>> make_plan(read_function(vv), "b a, b -> b")
    Traceback (most recent call last):
    ...
    shapedmap._errors.SpecError: vv: the layout 'b' of parameter 'y' lacks the per-example dim(s) 'a' ...
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._errors import SpecError
from ._grammar import (
    FixedDim,
    Layout,
    NamedDim,
    Spec,
    SymbolicDim,
    VariadicDim,
)
from ._keys import with_split_keys
from ._layout_trees import tree_of
from ._levels import Budget, CallShape, SplitKey
from ._places import result_place
from ._placing import (
    batch_names,
    checked_chunks,
    checked_layouts,
    parse_layout_for,
    parse_spec_for,
    per_example_of,
    place,
    place_tree,
    prepend,
    result_layouts,
    with_given_layouts,
)
from ._plan import Argument, Plan, Result, bound_note, fixed_arguments
from ._unannotated import by_position, checked_input_count, unannotated_lead
from ._value_types import ArrayType, FunctionTypes

__all__ = ["make_plan"]


def make_plan(
    types: FunctionTypes,
    spec: str | None,
    layouts: dict[str, Any] | None = None,
    out: str | tuple[str, ...] | list[str] | None = None,
    chunk: dict[str, int | Budget] | None = None,
    overridden: frozenset[str] = frozenset(),
) -> Plan:
    """Derive the plan for ``types`` (from ``read_function``) batched by ``spec``.

    ``chunk`` maps batch names to the number of examples each slice of them holds (or a
    ``Budget``); those levels run as ``jax.lax.map`` over slices. A keyword a partial binds is
    shared (its per-example layout, once the layout given for it is checked) unless the call
    passes it again (``overridden``): then it follows its layout like any keyword argument.

    Raises:
        SpecError: for any spec that can never work, naming the function and the parameter.
    """
    name = types.name

    def fail(message: str) -> SpecError:
        return SpecError(f"{name}: {message}")

    parsed = parse_spec_for(spec, fail)
    layouts = checked_layouts(layouts, types, fail)
    parsed, layouts = by_position(types, parsed, layouts, fail)
    given_results = result_layouts(types, parsed, out, fail)
    batch = batch_names(parsed, given_results, types)
    types = with_given_layouts(types, layouts, batch, fail)
    parsed = checked_input_count(types, parsed, spec, fail)
    lead = unannotated_lead(types, parsed.batch)
    arguments = []
    signature_layouts = iter(parsed.inputs or ())
    for parameter in types.parameters:
        bound = None if parameter.name in overridden else parameter.bound
        if not parameter.value.is_array:
            arguments.append(Argument(parameter.name, parameter.kind, parameter.default, parameter.value, None, bound))
            continue
        per_example = parameter.value.array.layout
        from_signature = next(signature_layouts, None)
        where = f"parameter '{parameter.name}'"
        if parameter.name in layouts and tree_of(layouts[parameter.name]):
            tree = place_tree(layouts[parameter.name], parameter.value, where, fail, batch)
            if bound is not None:  # the partial's value, as jax.vmap closes over it: shared
                tree = place(per_example, per_example, where, fail)
            arguments.append(Argument(parameter.name, parameter.kind, parameter.default, parameter.value, tree, bound))
            continue
        if isinstance(layouts.get(parameter.name), SplitKey):
            batched_layout = per_example  # one key: over every batch name once they are known
        elif parameter.name in layouts and layouts[parameter.name] is None:
            batched_layout = per_example  # shared: mapped over no batch name, like in_axes=None
        elif parameter.name in layouts:
            batched_layout = parse_layout_for(layouts[parameter.name], where, fail)
        elif parsed.batch is not None:
            batched_layout = prepend(parsed.batch, per_example, where, fail)
        elif from_signature is not None:
            batched_layout = from_signature
        else:
            batched_layout = per_example
        placement = place(batched_layout, per_example, where, fail)
        if bound is not None:  # the partial's value, as jax.vmap closes over it: shared
            placement = place(per_example, per_example, where, fail)
        arguments.append(Argument(parameter.name, parameter.kind, parameter.default, parameter.value, placement, bound))
    fixed = fixed_arguments(types)

    input_batch = _ordered_names(a.placement for a in arguments if a.placement is not None)
    results = _place_results(types, parsed, given_results, batch, input_batch, fail)
    order, fixed_sizes = _order_and_sizes(arguments, results, fail, lead)
    _check_symbolic([*fixed, *arguments], results, types.returns_tuple, fail)
    split = {name for name, layout in layouts.items() if isinstance(layout, SplitKey)}
    if split:
        variadic = next((p.variadic_batch for p in (a.placement for a in arguments) if p and p.variadic_batch), None)
        arguments = with_split_keys(arguments, split, order, variadic, fail)
    plan = Plan(
        function=name,
        types=types,
        arguments=tuple(arguments),
        results=tuple(results),
        order=order,
        fixed_sizes=fixed_sizes,
        levels=None,
        fixed=fixed,
    )
    plan = dataclasses.replace(plan, chunks=checked_chunks(chunk, plan, fail))
    if not order:
        if lead:
            raise fail(f"{lead} As it is, no layout has a batch dim, so there is nothing to map.")
        raise fail(
            "no batch dims: every layout equals its per-example annotation, so there is "
            "nothing to map. Name the batch dims in the spec, e.g. batched(f, 'batch')"
        )
    if plan.variadic_batch is None and not plan.broadcastable_batch:
        lengths = tuple(0 for _ in plan.array_arguments)
        unsqueezed = tuple(frozenset() for _ in plan.array_arguments)
        plan = dataclasses.replace(plan, levels=plan.levels_for(CallShape(0, lengths, unsqueezed)).levels)
    return plan


def _ordered_names(placements: Any) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for placement in placements:
        for name in placement.batch_names:
            names.setdefault(name)
    return tuple(names)


def _place_results(
    types: FunctionTypes,
    parsed: Spec,
    layouts: list[Layout | None] | None,
    batch: frozenset[str] | None,
    input_batch: tuple[str, ...],
    fail: Any,
) -> list[Result]:
    results = []
    for index, value in enumerate(types.outputs):
        where = result_place(types.returns_tuple, index)
        given = None if layouts is None else layouts[index]
        if given is not None and tree_of(given):
            results.append(Result(value, place_tree(given, value, where, fail, batch)))
            continue
        if given is not None and value.takes_layout:
            # Unannotated (or Any): its per-example layout is its layout less the batch names.
            value = dataclasses.replace(value, array=ArrayType(per_example_of(given, batch, where, fail)))
        per_example = value.array.layout
        if layouts is not None:
            batched_layout = per_example if given is None else given
        elif parsed.batch is not None:
            batched_layout = prepend(parsed.batch, per_example, where, fail)
        else:
            names = [n for n in input_batch if n not in per_example.names()]
            batched_layout = Layout((*(NamedDim(n) for n in names), *per_example.dims))
        results.append(Result(value, place(batched_layout, per_example, where, fail)))
    return results


def _order_and_sizes(
    arguments: list[Argument], results: list[Result], fail: Any, lead: str = ""
) -> tuple[tuple[str, ...], dict[str, int]]:
    """Batch names outermost first (by the outputs, then the inputs), and their fixed sizes.

    ``lead``: what an error of an output batch dim no input sizes says first (the unannotated parameters)."""
    argument_placements = [leaf for a in arguments if a.placement is not None for leaf in a.placement.leaves]
    placements = [leaf for r in results for leaf in r.placement.leaves] + argument_placements
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
    for placement in argument_placements:
        bound_anywhere |= {d.name for d in placement.batched.dims if isinstance(d, NamedDim) and not d.treepath}
        bound_anywhere |= placement.labels
        variadic_anywhere |= {d.name for d in placement.batched.dims if isinstance(d, VariadicDim)}
        mentioned |= placement.batched.names()
    for result in (leaf for r in results for leaf in r.placement.leaves):
        for batch_name in result.batch_names:
            binding = variadic_anywhere if batch_name == result.variadic_batch else bound_anywhere
            if batch_name not in binding and batch_name not in fixed_sizes:
                where = (
                    "gets no size from the input layouts (there it is only a variadic or a fixed size's label)"
                    if batch_name in mentioned
                    else "appears in no input layout"
                )
                if lead:
                    raise fail(f"{lead} As it is, the output batch dim '{batch_name}' {where}, so its size is unknown.")
                raise fail(
                    f"the output batch dim '{batch_name}' {where}, so its size is unknown; give it a size "
                    f"in the output layout ('{batch_name}=5') or map an input over it" + bound_note(arguments)
                )
    for name in variadic:
        if any(p.variadic_batch != name and name in p.batch_names for p in placements):
            raise fail(f"'{name}' is used both as '*{name}' and as a single batch dim")
    return order, fixed_sizes


def _check_symbolic(arguments: list[Argument], results: list[Result], returns_tuple: bool, fail: Any) -> None:
    """Every name an expression uses must be bound somewhere; jaxtyping needs it bound earlier."""
    parameter_names = {argument.name for argument in arguments}
    bound: set[str] = set()
    for argument in arguments:
        for leaf in () if argument.placement is None else argument.placement.leaves:
            bound |= {dim.name for dim in leaf.batched.dims if isinstance(dim, NamedDim)}
    for result in results:
        for leaf in result.placement.leaves:
            bound |= {dim.name for dim in leaf.batched.dims if isinstance(dim, NamedDim)}
    seen_in_order: set[str] = set()
    for argument in arguments:
        if argument.placement is None:
            continue
        for dim in argument.placement.per_example.dims:
            if isinstance(dim, NamedDim):
                seen_in_order.add(dim.name)
            elif isinstance(dim, SymbolicDim):
                _check_expression(dim, f"parameter '{argument.name}'", bound, parameter_names, fail)
                later = dim.names() - seen_in_order
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
        for dim in (dim for leaf in result.placement.leaves for dim in leaf.batched.dims):
            if isinstance(dim, SymbolicDim):
                _check_expression(dim, result_place(returns_tuple, index), bound, parameter_names, fail)
                batch_only = dim.names() - per_example
                if batch_only:
                    raise fail(
                        f"the dimension {dim.expression!r} of {result_place(returns_tuple, index)} uses "
                        f"{', '.join(map(repr, sorted(batch_only)))}, which only a batched layout binds: the "
                        "per-example annotation is checked on one example, where a batch dim has no size"
                    )


def _check_expression(dim: SymbolicDim, where: str, bound: set[str], parameters: set[str], fail: Any) -> None:
    unknown = dim.names() - bound
    if unknown:
        raise fail(
            f"the dimension {dim.expression!r} of {where} uses {', '.join(map(repr, sorted(unknown)))}, "
            "which no layout binds"
        )
    unknown_arguments = dim.argument_names() - parameters
    if unknown_arguments:
        raise fail(
            f"the dimension {dim.expression!r} of {where} refers to {', '.join(map(repr, sorted(unknown_arguments)))} "
            "in braces, which is not a parameter"
        )
