"""One value's batched layout: the options that give layouts (the spec, ``layouts=``, ``chunk=``)
checked against the function, and a batched layout split into its batch dims and the per-example
layout (``place``), which must be exactly the annotation's.

``_planner.make_plan`` places every parameter and result with these; each failure is a
``SpecError`` naming the function and the parameter (``fail`` prefixes the function's name).

Example:
    >>> def fail(message):
    ...     return SpecError(f"f: {message}")
    >>> placement = place(parse_layout("n b"), parse_layout("n"), "parameter 'x'", fail)
    >>> placement.batch
    ((1, 'b'),)
    >>> place(parse_layout("b m"), parse_layout("n"), "parameter 'x'", fail)
    Traceback (most recent call last):
    ...
    shapedmap._errors.SpecError: f: the layout 'b m' of parameter 'x' lacks the per-example dim(s) 'n' ...
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from ._errors import SpecError, describe_value
from ._grammar import Layout, Spec, VariadicDim, dim_name, dim_text, is_batch_token, parse_layout, parse_spec
from ._levels import Budget, Placement
from ._plan import Plan
from ._value_types import FunctionTypes

__all__ = [
    "checked_chunks",
    "checked_layouts",
    "parse_layout_for",
    "parse_spec_for",
    "place",
    "prepend",
    "with_given_layouts",
]


def parse_spec_for(spec: str | None, fail: Any) -> Spec:
    if spec is None:
        return Spec()
    try:
        return parse_spec(spec)
    except SpecError as error:
        raise fail(f"invalid spec {spec!r}: {error}") from None


def parse_layout_for(text: Any, where: str, fail: Any) -> Layout:
    try:
        return parse_layout(text)
    except SpecError as error:
        raise fail(f"invalid layout {text!r} for {where}: {error}") from None


def checked_layouts(layouts: Any, types: FunctionTypes, fail: Any) -> dict[str, str | None]:
    if layouts is None:
        return {}
    if not isinstance(layouts, dict):
        raise fail(f"layouts= must be a dict from parameter name to layout, got {type(layouts).__name__}")
    known = {p.name: p for p in types.parameters}
    for key in layouts:
        if key not in known:
            raise fail(f"layouts= names {key!r}, which is not a parameter (parameters: {', '.join(known) or 'none'})")
        if not known[key].value.is_array and known[key].value.array is None:
            hint = known[key].value.hint
            annotated = "is not annotated" if hint is None else f"is annotated {getattr(hint, '__name__', hint)}"
            raise fail(
                f"layouts= gives a layout for '{key}', which {annotated}: only array parameters "
                "have layouts (non-array parameters are held static, never mapped)"
            )
    return layouts


def checked_chunks(chunk: Any, plan: Plan, fail: Any) -> dict[str, int | Budget]:
    """``chunk=`` checked against the batch names: a positive number of examples, or one ``Budget``."""
    if chunk is None:
        return {}
    if not isinstance(chunk, dict) or not chunk:
        raise fail(
            "chunk= must be a non-empty dict from batch name to the number of examples in each slice, "
            f"e.g. chunk={{'graph': 1024}}, got {describe_value(chunk)}"
        )
    batch_names = [name for name in plan.order if name != plan.variadic_batch]
    mapped = {name for i in plan.array_arguments for name in plan.arguments[i].placement.batch_names}
    for key, value in chunk.items():
        if key == plan.variadic_batch:
            raise fail(f"chunk= names '*{key}', whose number of dims varies per call; chunk named batch dims only")
        if key not in batch_names:
            raise fail(
                f"chunk= names {key!r}, which is not a batch dim of this function "
                f"(batch dims: {', '.join(batch_names) or 'none'})"
            )
        if key not in mapped:
            raise fail(
                f"chunk= names '{key}', which no argument is mapped over (only the results have it): "
                "there is nothing to slice"
            )
        if isinstance(value, Budget):
            budget = value.bytes
            if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
                raise fail(f"chunk={{{key!r}: {value!r}}}: the budget must be a positive number of bytes")
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise fail(
                f"chunk={{{key!r}: ...}} must be a positive number of examples (an int) or a "
                f"shapedmap.Budget(bytes=...), got {describe_value(value)}"
            )
    budgeted = [key for key, value in chunk.items() if isinstance(value, Budget)]
    if len(budgeted) > 1:
        raise fail(
            f"chunk= gives memory budgets to {' and '.join(map(repr, budgeted))}: a budget chooses the chunk "
            "of one batch name; give the others a number of examples"
        )
    return dict(chunk)


def with_given_layouts(types: FunctionTypes, layouts: dict[str, str | None]) -> FunctionTypes:
    """A union of arrays and non-arrays (``Rngs | Array``) that ``layouts=`` names is an array parameter."""
    parameters = tuple(
        dataclasses.replace(p, value=dataclasses.replace(p.value, kind="array"))
        if p.name in layouts and p.value.kind == "static" and p.value.array is not None
        else p
        for p in types.parameters
    )
    return dataclasses.replace(types, parameters=parameters)


def prepend(batch: tuple[Any, ...], per_example: Layout, where: str, fail: Any) -> Layout:
    clashes = [dim_name(dim) for dim in batch if dim_name(dim) in per_example.names()]
    if clashes:
        raise fail(
            f"the batch name '{clashes[0]}' is already a dimension of the per-example annotation "
            f"{str(per_example)!r} of {where}; pick another batch name"
        )
    return Layout((*batch, *per_example.dims))


def place(batched: Layout, per_example: Layout, where: str, fail: Any) -> Placement:
    """Find the batch dims of ``batched`` and check the rest is exactly ``per_example``.

    An empty layout (``layouts={"key": ""}``) for a per-example annotation of any shape (``'...'``,
    or a union of shapes such as ``PRNGKeyArray``) has no batch name: the argument is shared, as
    with ``None``.
    """
    if not batched.dims and _any_shape(per_example):
        return Placement(per_example, per_example, ())
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
    if "..." in missing and any(isinstance(dim, VariadicDim) for dim in batched.dims):
        return (
            f"{head} lacks the '...' of the annotation {str(per_example)!r}, and cannot have both: '...' "
            "and a '*name' batch dim each stand for any number of dims. Annotate the per-example dims "
            "by name (Float[Array, 'n m']), or batch over named dims ('batch')"
        )
    if "..." in missing:  # the annotation's '...' stands for every per-example dim: it must stay
        suggestion = " ".join([*(dim_text(d) for d in batched.dims), *(token for token in missing)])
        return (
            f"{head} lacks the '...' of the annotation {str(per_example)!r}, which stands for the "
            f"per-example dims: write {suggestion!r} (the batch dims, then '...'), or annotate the "
            "per-example dims by name"
        )
    if missing:
        return (
            f"{head} lacks the per-example dim(s) {', '.join(map(repr, missing))} of the annotation "
            f"{str(per_example)!r}; a batched layout is the per-example layout with batch dims inserted"
        )
    return (
        f"{head} without its batch dims is {str(core)!r}, but the per-example annotation is "
        f"{str(per_example)!r}; a batched layout is the per-example layout with batch dims inserted"
    )


def _any_shape(per_example: Layout) -> bool:
    """A per-example layout of any shape: ``'...'`` (also what a union of shapes is placed with)."""
    return (
        len(per_example.dims) == 1 and isinstance(per_example.dims[0], VariadicDim) and per_example.dims[0].name is None
    )
