"""One value's batched layout: the options that give layouts (the spec, ``layouts=``, ``out=``,
``chunk=``) checked against the function, and a batched layout split into its batch dims and the
per-example layout (``place``), which must be exactly the annotation's. An unannotated (or ``Any``)
value has no annotation to read: a layout given to it makes it an array value whose per-example
layout is the layout less the batch names (``with_given_layouts``, ``per_example_of``, ``batch_names``).

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

import jax

from ._errors import SpecError, describe_value
from ._grammar import Layout, Spec, VariadicDim, dim_name, dim_text, is_batch_token, parse_layout, parse_spec
from ._keys import checked_split_keys
from ._layout_trees import TreePlacement, is_layout_leaf, tree_of
from ._levels import Budget, Placement
from ._plan import Plan
from ._value_types import ANY_SHAPE, ArrayType, FunctionTypes, ValueType, hint_text

__all__ = [
    "batch_names",
    "checked_chunks",
    "checked_layouts",
    "parse_layout_for",
    "parse_spec_for",
    "per_example_of",
    "place",
    "place_tree",
    "prepend",
    "result_layouts",
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
    if isinstance(text, Layout):  # a full signature's, given by position
        return text
    try:
        return parse_layout(text)
    except SpecError as error:
        raise fail(f"invalid layout {text!r} for {where}: {error}") from None


def checked_layouts(layouts: Any, types: FunctionTypes, fail: Any) -> dict[str, Any]:
    """``layouts=`` checked against the parameters: each names one, an array or one that takes a layout,
    and a ``SplitKey`` only on a key."""
    if layouts is None:
        return {}
    if not isinstance(layouts, dict):
        raise fail(f"layouts= must be a dict from parameter name to layout, got {type(layouts).__name__}")
    checked_split_keys(layouts, types, fail)
    known = {p.name: p for p in types.parameters}
    fixed = {p.name: p.bound for p in types.fixed}
    for key in layouts:
        if key in fixed:
            raise fail(
                f"layouts= names {key!r}, which the {fixed[key]} binds: a value a partial fixes is shared by "
                "every example, as jax.vmap shares what a closure holds, so it has no layout; leave it out"
            )
        if key not in known:
            raise fail(f"layouts= names {key!r}, which is not a parameter (parameters: {', '.join(known) or 'none'})")
        value = known[key].value
        if not value.is_array and value.array is None and not value.takes_layout:
            raise fail(
                f"layouts= gives a layout for '{key}', which is annotated {hint_text(value.hint)}: only arrays and "
                "unannotated (or Any) parameters take layouts (other parameters are held static, never mapped)"
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


def with_given_layouts(types: FunctionTypes, layouts: dict[str, Any], batch: Any, fail: Any) -> FunctionTypes:
    """The parameters ``layouts=`` makes arrays: the array member of a union of arrays and non-arrays
    (``Rngs | Array``), and an unannotated (or ``Any``) parameter, a PyTree of arrays whose per-example
    layout is its layout less the batch names ``batch`` (``per_example_of``)."""
    parameters = []
    for p in types.parameters:
        if p.name in layouts and p.value.kind == "static" and p.value.array is not None:
            p = dataclasses.replace(p, value=dataclasses.replace(p.value, kind="array"))
        elif p.name in layouts and p.value.kind == "static" and p.value.takes_layout:
            given = layouts[p.name]
            # A layout tree: each leaf's per-example layout is its own (``place_tree``).
            layout = ANY_SHAPE if tree_of(given) else per_example_of(given, batch, f"parameter '{p.name}'", fail)
            p = dataclasses.replace(p, value=ValueType("tree", ArrayType(layout), hint=p.value.hint))
        parameters.append(p)
    return dataclasses.replace(types, parameters=tuple(parameters))


def per_example_of(layout: Any, batch: frozenset[str] | None, where: str, fail: Any) -> Layout:
    """The per-example layout of an unannotated value: its layout less the batch names (None: ``...``)."""
    if layout is None:
        return ANY_SHAPE  # shared, its shape unchecked
    layout = parse_layout_for(layout, where, fail)
    if batch is None:
        raise fail(
            f"{where} is not annotated, so its per-example layout is its layout {str(layout)!r} less the batch "
            "names, and no batch names are given: name them in the spec, e.g. "
            f"batched(f, 'batch', layouts={{...: 'batch ...'}}), or give the results' layouts with out="
        )
    return Layout(tuple(dim for dim in layout.dims if dim_name(dim) not in batch))


def result_layouts(types: FunctionTypes, parsed: Spec, out: Any, fail: Any) -> list[Any] | None:
    """The results' batched layouts ``out=`` or the full signature gives (None: unmapped; a layout tree
    stays a tree), or None."""
    count = len(types.outputs)
    if out is not None:
        texts = _out_layouts(out, types.returns_tuple, fail)
        # None: the per-example layout itself, a result that no batch dim maps (out_axes=None)
        layouts = [
            text if text is None or tree_of(text) else parse_layout_for(text, "the return value", fail)
            for text in texts
        ]
    elif parsed.outputs is not None:
        layouts = list(parsed.outputs)
    else:
        return None
    if len(layouts) != count:
        shape = f"a tuple of {count}" if types.returns_tuple else "one value"
        raise fail(
            f"{len(layouts)} output layout(s) given but the return annotation says {shape}"
            + ("" if types.returns_tuple or count != 1 else " (annotate tuple[...] for several results)")
        )
    return layouts


def _out_layouts(out: Any, returns_tuple: bool, fail: Any) -> tuple[Any, ...]:
    """``out=`` as one layout per result: a string, None or a layout tree each (a tuple of them for a
    tuple result). One result's layout may be a tree; ``("b n",)`` is still that one layout."""
    if isinstance(out, str):
        return (out,)
    if returns_tuple:
        if not isinstance(out, tuple | list):
            raise fail(f"out= must be a tuple of layouts, one per result, got {type(out).__name__}")
        return tuple(out)
    if isinstance(out, tuple | list) and len(out) == 1 and not tree_of(out[0]):
        return tuple(out)
    if out is not None and not tree_of(out):
        raise fail(f"out= must be a layout string, a tuple of them or a layout tree, got {type(out).__name__}")
    return (out,)


def batch_names(parsed: Spec, results: list[Layout | None] | None, types: FunctionTypes) -> frozenset[str] | None:
    """The batch names an unannotated value's layout is read with: the short spec's; else the names of the
    results' layouts (of an annotated result, those its annotation lacks) that no annotated parameter has
    per example; None where neither is given."""
    if parsed.batch is not None:
        return frozenset(name for dim in parsed.batch if (name := dim_name(dim)) is not None)
    if results is None:
        return None
    names: set[str] = set()
    for layout, value in zip(results, types.outputs, strict=True):
        own = frozenset() if value.takes_layout else value.array.layout.names()
        for leaf in _layout_leaves(layout):
            names |= leaf.names() - own
    for parameter in types.parameters:
        if parameter.value.array is not None:
            names -= parameter.value.array.layout.names()
    return frozenset(names)


def _layout_leaves(layout: Any) -> list[Layout]:
    """The layouts in one result's layout: itself, or a layout tree's string leaves, parsed."""
    if layout is None:
        return []
    if not tree_of(layout):
        return [layout]
    leaves = jax.tree_util.tree_leaves(layout, is_leaf=is_layout_leaf)
    return [parse_layout(leaf) for leaf in leaves if isinstance(leaf, str) and _parses(leaf)]


def _parses(text: str) -> bool:
    try:
        parse_layout(text)
    except SpecError:
        return False  # refused, with its place, when the tree is placed
    return True


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


def place_tree(
    layout: Any, value: ValueType, where: str, fail: Any, batch: frozenset[str] | None = None
) -> TreePlacement:
    """A layout tree (``{"w": None, "b": "batch n"}``, a prefix of the value as ``jax.vmap`` reads
    ``in_axes``): each leaf placed as a layout of its own against the annotation's per-example layout;
    an unannotated value's leaf against its own layout less the batch names ``batch``."""
    shown = _tree_text(layout)
    if value.kind == "array" or value.one_array_each:
        what = "*args/**kwargs entry" if value.one_array_each else "array"
        raise fail(
            f"the layout of {where} is a tree ({shown}), but {where} is one {what} (annotated "
            f"{str(value.array.layout)!r}), not a PyTree: give it one layout string" + _tuple_hint(where)
        )
    _check_tree_class(layout, value, where, shown, fail)
    paths_and_leaves = jax.tree_util.tree_flatten_with_path(layout, is_leaf=is_layout_leaf)[0]
    if not paths_and_leaves:
        raise fail(f"the layout tree {shown} of {where} has no layouts in it: give a layout string or None")
    per_example = value.array.layout
    placements = []
    for path, leaf in paths_and_leaves:
        at = f"{where} at {jax.tree_util.keystr(path)}"
        if not is_layout_leaf(leaf):
            example = " ".join(("batch", *([str(per_example)] if per_example.dims else [])))
            raise fail(
                f"the layout tree of {where} has {leaf!r} at {jax.tree_util.keystr(path)}: its leaves must be "
                f"layout strings or None (shared), e.g. {example!r} where jax.vmap would say 0"
            )
        own = per_example_of(leaf, batch, at, fail) if value.takes_layout else per_example
        placement = place(own if leaf is None else parse_layout_for(leaf, at, fail), own, at, fail)
        if placement.variadic_batch is not None or placement.broadcastable_batch:
            raise fail(
                f"the layout {leaf!r} of {at} broadcasts ('*name' or '#name'), which a layout tree cannot: "
                "give the whole value one layout"
            )
        placements.append(placement)
    return TreePlacement.of(layout, placements)


def _tree_text(layout: Any) -> str:
    try:
        return repr(layout)
    except Exception:
        return type(layout).__name__


def _tuple_hint(where: str) -> str:
    return " (annotate tuple[...] for several results)" if where == "the return value" else ""


def _check_tree_class(layout: Any, value: ValueType, where: str, shown: str, fail: Any) -> None:
    """A layout tree whose top is not the class the annotation asks for can never fit (``jax.vmap`` needs
    the same node types): a dict written for a ``NamedTuple``, or another class."""
    instances = value.instances
    if instances is None:
        return
    cls = instances[0]
    if isinstance(layout, cls):
        return
    builtin = type(layout) in (dict, list, tuple)
    fields = getattr(cls, "_fields", None)
    if fields is None and dataclasses.is_dataclass(cls):
        fields = tuple(field.name for field in dataclasses.fields(cls))
    keys = tuple(layout) if isinstance(layout, dict) else None
    if (builtin and keys is not None and fields is not None and set(keys) == set(fields)) or not builtin:
        example = ", ".join(f"{name}=..." for name in fields or ())
        raise fail(
            f"the layout tree of {where} is {'a dict' if keys is not None else 'a ' + type(layout).__name__} "
            f"({shown}), but {where} is annotated {cls.__name__}: a layout tree must have the argument's node types, "
            f"as jax.vmap's in_axes: write {cls.__name__}({example}) with a layout string or None in each field"
        )


def _any_shape(per_example: Layout) -> bool:
    """A per-example layout of any shape: ``'...'`` (also what a union of shapes is placed with)."""
    return (
        len(per_example.dims) == 1 and isinstance(per_example.dims[0], VariadicDim) and per_example.dims[0].name is None
    )
