"""Parameters without annotations under a spec: which layouts they take, and what an error says of them.

A parameter that is not annotated (or annotated ``Any``) is held static unless something gives it a
layout: ``layouts=`` by name (``_placing.with_given_layouts`` makes it an array parameter), or, on a
function none of whose parameters is annotated as an array, a full signature by position
(``by_position``). A full signature that has more layouts than the function has array parameters
while some are unannotated mixes the two readings: a ``SpecError`` that shows the ``layouts=`` call
(``checked_input_count``). Where a batch dim finds no array, the error leads with the unannotated
parameters and both fixes (``unannotated_lead``).

Example:
    >>> from shapedmap._annotations import read_function
    >>> from shapedmap._errors import SpecError
    >>> from shapedmap._grammar import parse_spec
    >>> def fail(message):
    ...     return SpecError(f"f: {message}")
    >>> def f(x, w):
    ...     return x @ w
    >>> spec, layouts = by_position(read_function(f), parse_spec("b n, n m -> b m"), {}, fail)
    >>> spec.inputs, layouts
    (None, {'x': Layout('b n'), 'w': Layout('n m')})
    >>> print(unannotated_lead(read_function(f), parse_spec("b").batch))
    'x' and 'w' are not annotated, so they are held static (never mapped): give them layouts, e.g. batched(f, 'b', layouts={'x': 'b ...', 'w': 'b ...'}) ('b ...' maps each over a leading axis 'b', whatever its per-example shape; None shares one value by every example), or annotate them (x: Float[Array, '...'], w: Float[Array, '...']).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from ._grammar import Dim, Layout, Spec, VariadicDim, dim_name, dim_text
from ._value_types import FunctionTypes, ParameterType

__all__ = ["by_position", "checked_input_count", "unannotated_lead"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _receiver_skipped(types: FunctionTypes) -> list[ParameterType]:
    """The parameters, less an unannotated leading ``self``/``cls`` (a method's object is never mapped)."""
    parameters = list(types.parameters)
    if parameters and parameters[0].name in ("self", "cls") and parameters[0].value.hint is None:
        return parameters[1:]
    return parameters


def _open(types: FunctionTypes) -> list[ParameterType]:
    """The parameters that would take a layout and have none: unannotated (or ``Any``), held static."""
    return [p for p in _receiver_skipped(types) if p.value.kind == "static" and p.value.takes_layout]


def by_position(types: FunctionTypes, parsed: Spec, layouts: dict[str, Any], fail: Any) -> tuple[Spec, dict[str, Any]]:
    """A full signature on a function none of whose parameters is annotated as an array gives its
    layouts to the positional parameters in order (``layouts=`` overrides them); trailing ones with a
    default may be left out (held static). Returns the spec without its inputs and the layouts by name."""
    if parsed.inputs is None or any(p.value.is_array or p.value.array is not None for p in types.parameters):
        return parsed, layouts
    targets = [p for p in _open(types) if p.kind in _POSITIONAL]
    if not targets:
        return parsed, layouts  # nothing to give them to: the count's own error
    inputs = parsed.inputs
    if inputs == () and len(targets) == 1:
        inputs = (Layout(()),)  # nothing before '->' is one scalar's layout, for the one parameter
    left = [p.name for p in targets[len(inputs) :] if p.default is inspect.Parameter.empty and p.name not in layouts]
    if len(inputs) > len(targets) or left:
        names = ", ".join(f"'{p.name}'" for p in targets)
        raise fail(
            f"the spec has {len(inputs)} input layout(s) but the function has {len(targets)} positional "
            f"parameter(s) ({names}), none annotated: a full signature gives one layout to each, in order "
            "(trailing ones with a default may be left out: they are held static)"
        )
    given = {p.name: layout for p, layout in zip(targets, inputs, strict=False)}
    return dataclasses.replace(parsed, inputs=None), {**given, **layouts}


def checked_input_count(types: FunctionTypes, parsed: Spec, spec: Any, fail: Any) -> Spec:
    """A full signature has one layout per array parameter (``types`` with ``layouts=`` applied)."""
    arrays = [p for p in types.parameters if p.value.is_array]
    if parsed.inputs == () and len(arrays) == 1:
        # Nothing before '->' is no layout, or one scalar's for the one array parameter.
        return dataclasses.replace(parsed, inputs=(Layout(()),))
    if parsed.inputs is None or len(parsed.inputs) == len(arrays):
        return parsed
    unannotated = [p for p in _open(types) if p.kind in _POSITIONAL]
    annotated = [p for p in types.parameters if p.value.is_array or p.value.array is not None]
    if unannotated and annotated and len(parsed.inputs) > len(arrays):
        raise fail(_mixed(types, parsed, spec, annotated, unannotated))
    names = ", ".join(f"'{p.name}'" for p in arrays) or "none"
    raise fail(
        f"the spec {spec!r} has {len(parsed.inputs)} input layout(s) but the function has "
        f"{len(arrays)} array parameter(s) ({names}); give one layout per array "
        "parameter, in order (non-array parameters are skipped)"
    )


def _mixed(
    types: FunctionTypes, parsed: Spec, spec: Any, arrays: list[ParameterType], unannotated: list[ParameterType]
) -> str:
    head = (
        f"the spec {spec!r} has {len(parsed.inputs or ())} input layouts, but {_listed(p.name for p in arrays)} "
        f"{'is annotated as an array' if len(arrays) == 1 else 'are annotated as arrays'} and {_listed(p.name for p in unannotated)} "
        f"{'is' if len(unannotated) == 1 else 'are'} not: a full signature gives its layouts to the array "
        "parameters (by position only when none is annotated). Give the unannotated ones theirs by name with layouts="
    )
    targets = [p for p in _receiver_skipped(types) if p.kind in _POSITIONAL and (p in arrays or p in unannotated)]
    inputs = parsed.inputs or ()
    if len(targets) != len(inputs):
        return head + ", and name the batch dims in the spec: batched(f, 'batch', layouts={...})"
    per_example = frozenset(n for p in arrays if p.value.array is not None for n in p.value.array.layout.names())
    batch: dict[str, str] = {}  # batch name -> its token, in order: the results' first
    outputs = (parsed.outputs or ())[: len(types.outputs)]
    values = [*types.outputs[: len(outputs)], *(p.value for p in targets)]
    for layout, value in zip([*outputs, *inputs], values, strict=True):
        own = value.array.layout.names() if value.array is not None and not value.takes_layout else frozenset()
        for dim in layout.dims:
            name = dim_name(dim)
            if name is not None and name not in own | per_example and name not in batch:
                batch[name] = dim_text(dim)
    given = ", ".join(f"{p.name!r}: {str(layout)!r}" for p, layout in zip(targets, inputs, strict=True))
    texts = [repr(str(layout)) for layout in outputs]
    out = texts[0] if len(texts) == 1 else f"({', '.join(texts)})"
    return head + f": batched({_callable(types)}, {' '.join(batch.values())!r}, layouts={{{given}}}, out={out})"


def unannotated_lead(types: FunctionTypes, batch: tuple[Dim, ...] | None) -> str:
    """The first sentences of an error where a batch dim finds no array: the parameters held static for
    want of an annotation, and both fixes (a layout by name, or an annotation). Empty if there are none."""
    names = [p.name for p in _open(types)]
    if not names:
        return ""
    one = len(names) == 1
    batch_text = " ".join(dim_text(dim) for dim in batch) if batch else "batch"
    variadic = batch is not None and any(isinstance(dim, VariadicDim) for dim in batch)
    layout = batch_text if variadic else f"{batch_text} ..."
    example = ", ".join(f"{name!r}: {layout!r}" for name in names)
    call = f"batched({_callable(types)}, {batch_text!r}, layouts={{{example}}})"
    several = variadic or (batch is not None and len(batch) > 1)
    meaning = (
        f"({layout!r} maps {'it' if one else 'each'} over {'leading axes' if several else 'a leading axis'} {batch_text!r}, "
        f"{'one number per example' if variadic else 'whatever its per-example shape'}; "
        "None shares one value by every example)"
    )
    give = f"give {'it a layout' if one else 'them layouts'}, e.g. {call} {meaning}"
    if types.wrapped_in:
        return (
            f"the function that {types.wrapped_in} wraps has no annotations, so {_listed(names)} "
            f"{'is' if one else 'are'} held static (never mapped): {give}, or annotate the parameters and the "
            f"return value of {types.name} itself (the function the wrapper is made from), like "
            f"{names[0]}: Float[Array, 'n'] and -> Float[Array, '']."
        )
    annotations = ", ".join(f"{name}: Float[Array, '...']" for name in names)
    return (
        f"{_listed(names)} {'is' if one else 'are'} not annotated, so {'it is' if one else 'they are'} held "
        f"static (never mapped): {give}, or annotate {'it' if one else 'them'} ({annotations})."
    )


def _callable(types: FunctionTypes) -> str:
    """How a suggested call names the function: its name, or ``...`` where that is not what was batched."""
    name = types.name
    return "..." if types.wrapped_in or "<" in name or "[" in name else name


def _listed(names: Any) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"
