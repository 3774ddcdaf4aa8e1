"""The checks of a call before and after the map, against the plan's layouts.

Before the map, ``check_arguments`` converts every array argument (NumPy arrays and Python
numbers become JAX arrays; lists and other objects are refused), checks its dtype and binds
its sizes by name (``Bindings``), so that a conflict is a ``ShapeError`` naming the function,
the parameter, the dimension and both sides. Inside the map, ``check_results_per_example``
checks that each result is an array of its per-example rank (what ``jax.vmap`` needs to put
the batch dims back); after it, ``check_results`` continues the call's bindings over the
batched results. These functions decide what is wrong; ``_messages`` words it. Nothing here
uses ``assert``: these checks must hold under ``python -O``.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> from shapedmap._plan import plan_of
    >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    ...     return x @ y
    >>> plan = plan_of(batched(vv, "b a, a -> b"))
    >>> bindings, values = check_arguments(plan, [jnp.ones((5, 3)), jnp.ones(3)])
    >>> bindings.size_of("b"), bindings.size_of("a")
    (5, 3)
    >>> check_arguments(plan, [jnp.ones((5, 3)), jnp.ones(4)])
    Traceback (most recent call last):
    ...
    shapedmap._errors.ShapeError: vv: dimension 'a' has size 3 in argument 'x' (axis 1 of f32[5,3])
    but size 4 in argument 'y' (axis 0 of f32[4])
      argument 'y' has layout 'a': expected (a=3), got f32[4]
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from beartype.door import is_bearable
from beartype.roar import BeartypeException

from . import _messages as messages
from ._arrays import as_array, check_python_scalar, is_array_like, is_result_leaf, per_example_arguments
from ._binding import Bindings
from ._errors import ShapeError
from ._grammar import FixedDim, SymbolicDim, dim_text
from ._key_checks import check_split_key, one_key_for_many, passes_one_key
from ._layout_trees import TreePlacement, mismatch, placed
from ._misplaced import misplaced_note
from ._objects import check_class, check_stated_shapes
from ._places import Origin, argument_place, layout_place, leaf_place, result_place
from ._plan import unannotated_note

if TYPE_CHECKING:
    from ._plan import Placement, Plan
    from ._value_types import ArrayType, ValueType

__all__ = [
    "bind_fixed_values",
    "check_arguments",
    "check_results",
    "check_results_per_example",
    "check_static_values",
    "convert_arguments",
]


def check_arguments(
    plan: Plan, values: list[Any], *, abstract: bool = True, notes: bool = True
) -> tuple[Bindings, list[Any]]:
    """Check every array argument of a call; returns the bindings and the converted values.

    ``abstract``: ``jax.ShapeDtypeStruct`` arguments are accepted (explaining or planning a call,
    not making it); a call itself passes ``abstract=False``. ``notes``: a refused call's error says
    when its arguments would fit transposed or swapped (``_misplaced``).
    """
    try:
        return _check_arguments(plan, values, abstract)
    except ShapeError as error:
        if not notes:
            raise
        try:
            note = misplaced_note(plan, values, functools.partial(_fits, plan))
        except Exception:  # a note is a courtesy: never the reason a call's own error is lost
            note = ""
        if not note:
            raise
        raise ShapeError(f"{error}\n{note}") from error.__cause__


def _fits(plan: Plan, values: list[Any]) -> bool:
    """Do these values (``jax.ShapeDtypeStruct``s for the arrays) fit the plan's layouts?"""
    try:
        _check_arguments(plan, values, True)
    except Exception:  # refused, whatever the reason: this move does not fit
        return False
    return True


def _check_arguments(plan: Plan, values: list[Any], abstract: bool) -> tuple[Bindings, list[Any]]:
    bindings = Bindings(plan.function)
    values = list(values)
    variadic = plan.variadic_batch
    broadcast = frozenset() if variadic is None else frozenset({variadic})
    _bind_result_sizes(plan, bindings)
    bind_fixed_values(plan, bindings)
    one_keys = []  # keys passed alone where one per example is expected: named once the sizes are known
    # What a partial binds is fixed: checked first, so a call's argument that disagrees is named.
    for index in sorted(plan.array_arguments, key=lambda i: plan.arguments[i].bound is None):
        argument = plan.arguments[index]
        if passes_one_key(argument, values[index]):
            one_keys.append(index)
            continue
        if argument.split:
            check_split_key(plan.function, argument, values[index])
        placement = argument.passed  # a split key is passed as one key: its per-example layout
        values[index] = _check_value(
            bindings,
            argument.value,
            placement,
            values[index],
            argument.place,
            broadcast,
            parameter=argument.name,
            one_array_each=argument.value.one_array_each,
            abstract=abstract,
            shared_over=tuple(name for name in plan.order if name not in placement.batch_names),
        )
    if one_keys:
        raise ShapeError(one_key_for_many(plan, bindings, plan.arguments[one_keys[0]], values[one_keys[0]]))
    _check_batch_dims_have_arrays(plan, values)
    if plan.has_fstring_dims:  # jaxtyping evaluates them on the per-example call's arguments
        bindings.arguments = per_example_arguments(plan, values, passed=True)
    bindings.check_symbolic()
    _check_result_expressions(plan, bindings)
    return bindings, values


def bind_fixed_values(plan: Plan, bindings: Bindings, *, keywords: bool = False) -> None:
    """Bind the sizes of the values a partial fixes (``plan.fixed``; with ``keywords``, also the
    keywords it binds), each at its per-example layout: a ``ShapeError`` naming it as bound if refused."""
    bound = [plan.arguments[i] for i in plan.array_arguments if plan.arguments[i].bound is not None] if keywords else []
    for argument in (*plan.fixed, *bound):
        if argument.placement is not None:
            value, each = argument.value, argument.value.one_array_each
            _check_value(
                bindings,
                value,
                argument.placement,
                argument.default,
                argument.place,
                frozenset(),
                parameter=argument.name,
                one_array_each=each,
            )
        elif argument.value.hint is not None and not _bearable(argument.default, argument.value.hint):
            hint = argument.value.hint
            raise ShapeError(messages.fixed_static_mismatch(plan.function, argument.place, hint, argument.default))


def _bearable(value: Any, hint: Any) -> bool:
    try:
        return bool(is_bearable(value, hint))
    except BeartypeException:
        return True  # a hint beartype cannot check: nor could the per-example check


def convert_arguments(plan: Plan, values: list[Any]) -> list[Any]:
    """Every array argument as JAX arrays (``as_array`` on each leaf), without binding sizes.

    For a call whose shapes were checked before: conversion can still fail (``2**40``).
    """
    values = list(values)
    for index in plan.array_arguments:
        argument = plan.arguments[index]
        value = values[index]
        if isinstance(value, jax.Array) or (value is None and argument.value.optional):
            continue
        place = argument_place(argument.name)
        if isinstance(argument.placement, TreePlacement):
            values[index] = _converted_tree(plan.function, argument.value, argument.placement, value, place)
            continue
        expected = functools.partial(messages.expected_array, argument.value, argument.placement.batched)
        if argument.value.kind == "array":
            values[index] = as_array(value, plan.function, place, expected, abstract=False)
        else:
            paths_and_leaves, treedef = _flatten(value, plan.function, place)
            leaves = [as_array(leaf, plan.function, place, expected, abstract=False) for _, leaf in paths_and_leaves]
            values[index] = jax.tree_util.tree_unflatten(treedef, leaves)
    return values


def _converted_tree(function: str, value_type: ValueType, placement: TreePlacement, value: Any, place: str) -> Any:
    """``convert_arguments`` of a value with a layout tree: each leaf expected with its subtree's layout."""
    paths_and_leaves, treedef = _flatten(value, function, place)
    parts = fitted_leaves(function, placement, value, place)
    leaves = [
        as_array(
            leaf, function, place, functools.partial(messages.expected_array, value_type, part.batched), abstract=False
        )
        for (_, leaf), part in zip(paths_and_leaves, parts, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_result_expressions(plan: Plan, bindings: Bindings) -> None:
    """Evaluate the results' expressions the arguments already determine (``n**2``), before mapping.

    One that cannot be a size (``n**(10**9)``, ``n // 0``) is refused here, by name, rather than
    left to the per-example check, which would compute it without bound or fail without context.
    """
    sizes = {name: size for name, (size, _) in bindings.sizes.items()}
    for number, result in enumerate(plan.results):
        for dim in (dim for leaf in result.placement.leaves for dim in leaf.batched.dims):
            if not isinstance(dim, SymbolicDim) or "{" in dim.expression or not dim.names() <= sizes.keys():
                continue
            try:
                dim.evaluate(sizes, bindings.arguments)
            except (ValueError, ArithmeticError) as error:
                where = result_place(plan.returns_tuple, number)
                used = {name: sizes[name] for name in dim.names()}
                raise ShapeError(
                    messages.expression_cannot_be_a_size(plan.function, dim.expression, where, used, error)
                ) from None


def _bind_result_sizes(plan: Plan, bindings: Bindings) -> None:
    """Batch dims a result's layout sizes (``"b=3 n"``) are bound first, so an argument that disagrees is named."""
    for number, result in enumerate(plan.results):
        for placement in result.placement.leaves:
            for index, name in placement.batch:
                dim = placement.batched.dims[index]
                if isinstance(dim, FixedDim) and name not in bindings.sizes:
                    where = layout_place(placement.batched, result_place(plan.returns_tuple, number))
                    bindings.sizes[name] = (dim.size, Origin(where, None, (), dim_text(dim)))


def check_static_values(plan: Plan, values: list[Any], defaulted: Collection[str] = ()) -> bool:
    """Check every annotated non-array argument against its annotation, with beartype's rule.

    Run on every call, before mapping: the per-example check inside the map runs only on the first
    call with given shapes, and not at all under ``python -O`` (beartype switches itself off there).
    A parameter in ``defaulted`` (the caller did not pass it) still holding its own default object
    is not checked: the default is the function's choice (``state: State = sentinel``), not the
    caller's, and ``jax.vmap`` of the function accepts it. Returns whether one was left unchecked
    (then the per-example check, which would check it too, must not run on this call).
    """
    parameters = plan.types.signature.parameters
    skipped = False
    for index in plan.annotated_statics:
        argument, value = plan.arguments[index], values[index]
        if argument.name in defaulted and value is parameters[argument.name].default:
            skipped = True
            continue
        hint = argument.value.hint
        for entry in argument.entries(value):
            if argument.value.array is not None and isinstance(entry, jax.Array | np.ndarray):
                raise ShapeError(messages.array_in_static_union(plan.function, argument.name, hint, entry))
            if not _bearable(entry, hint) and argument.bound is not None:  # the partial's value, not the call's
                raise ShapeError(messages.fixed_static_mismatch(plan.function, argument.place, hint, entry))
            if not _bearable(entry, hint):
                raise ShapeError(messages.static_mismatch(plan.function, argument.name, hint, entry))
    return skipped


def _check_batch_dims_have_arrays(plan: Plan, values: list[Any]) -> None:
    """``vmap`` sizes a batch dim from the arrays mapped over it: some argument must hold one.

    A PyTree without leaves (``None``, ``()``, ``{"w": None}``) maps over nothing.
    """
    for name in plan.order:
        if name in plan.fixed_sizes or name == plan.variadic_batch:
            continue
        mapping = [i for i in plan.array_arguments if name in plan.arguments[i].placement.batch_names]
        if not mapping or any(jax.tree_util.tree_leaves(values[i]) for i in mapping):
            continue  # sized by an array, or by the bindings (a batch dim only the outputs have)
        holders = [(plan.arguments[i].name, values[i]) for i in mapping]
        raise ShapeError(
            messages.no_array_sizes_batch_dim(plan.function, name, holders, unannotated_note(plan.arguments))
        )


def check_results(plan: Plan, bindings: Bindings, output: Any) -> None:
    """Check the batched results against their layouts, continuing the call's bindings.

    Results must match exactly: a ``*batch`` result has the full broadcast shape; a result of a
    class is one, and an object in it that states its shape states the batch dims (``_objects``).
    """
    outputs = output if plan.returns_tuple else (output,)
    for index, (result, value) in enumerate(zip(plan.results, outputs, strict=True)):
        place = result_place(plan.returns_tuple, index)
        _check_value(bindings, result.value, result.placement, value, place, frozenset())
        if result.value.kind == "tree" and value is not None:
            for path, subtree, placement in placed(result.placement, value):
                check_stated_shapes(plan.function, bindings, placement, subtree, leaf_place(place, path))
    bindings.check_symbolic()


def check_results_per_example(plan: Plan, output: Any) -> None:
    """Inside the map: each result is an array (or a PyTree of them) with its per-example rank.

    That is what ``jax.vmap`` needs to put the batch dims back; without this check a wrong
    result is JAX's error about ``out_axes`` or an invalid JAX type, naming nothing of ours.
    Sizes and dtypes are checked after the map, against the batched layouts.
    """
    function = plan.function
    if plan.returns_tuple and not (isinstance(output, tuple) and len(output) == len(plan.results)):
        raise ShapeError(messages.not_a_tuple(function, len(plan.results), output))
    outputs = output if plan.returns_tuple else (output,)
    for index, (result, value) in enumerate(zip(plan.results, outputs, strict=True)):
        place = result_place(plan.returns_tuple, index)
        if value is None and result.value.optional:
            continue
        if result.value.kind == "array":
            leaves = [(place, value)]
        else:
            leaves = [(leaf_place(place, path), leaf) for path, leaf in _flatten(value, function, place)[0]]
            if isinstance(result.placement, TreePlacement):  # before vmap reads its out_axes tree
                fitted_leaves(function, result.placement, value, place)
        layout = result.placement.per_example
        for where, leaf in leaves:
            if isinstance(leaf, bool | int | float | complex):
                check_python_scalar(function, where, leaf)
                rank = 0  # vmap makes a Python number a 0-d array
            elif is_result_leaf(leaf):
                rank = len(leaf.shape)
            else:
                raise ShapeError(messages.not_a_result(function, where, leaf, array_like=is_array_like(leaf)))
            if not layout.admits_rank(rank):
                raise ShapeError(messages.per_example_rank(function, where, leaf, rank, layout))


def _check_value(
    bindings: Bindings,
    value_type: ValueType,
    placement: Placement,
    value: Any,
    place: str,
    broadcast: frozenset[str],
    *,
    parameter: str | None = None,
    one_array_each: bool = False,
    abstract: bool = True,
    shared_over: tuple[str, ...] = (),
) -> Any:
    """Check one argument or result (every leaf of a PyTree) against its placement.

    ``parameter``: the name of the argument checked (it is converted to JAX arrays); None for a result.
    ``one_array_each``: the value is ``*args``' tuple or ``**kwargs``' dict of an array annotation,
    so each entry must be one array (``None`` or a list there is not an empty or a bigger PyTree).
    """
    function = bindings.function
    convert = parameter is not None
    if value is None and value_type.optional:
        return value
    if value_type.kind == "tree":
        check_class(function, place, value_type, value, parameter)

    def check_leaf(leaf: Any, where: str, path: str | None = None, part: Placement = placement) -> Any:
        if convert:
            expected = functools.partial(messages.expected_array, value_type, part.batched)
            leaf = as_array(leaf, function, where, expected, abstract=abstract)
        elif not is_result_leaf(leaf):
            raise ShapeError(messages.not_a_result(function, where, leaf, array_like=is_array_like(leaf)))
        _check_dtype(function, value_type.array, leaf, where)
        bindings.bind(
            part.batched,
            leaf,
            where,
            broadcast=broadcast,
            labels=part.labels,
            per_example=part.per_example,
            parameter=parameter,
            leaf=path,
            shared_over=shared_over if part is placement else _shared_in_tree(placement, part, shared_over),
        )
        if value_type.array.alternatives:
            shape = part.per_example_shape(tuple(leaf.shape))
            if not value_type.array.admits_example(leaf.dtype, shape):
                raise ShapeError(
                    messages.no_alternative_matches(
                        function, where, leaf, shape, value_type.array, value_type.hint, path or ""
                    )
                )
        return leaf

    if value_type.kind == "array":
        return check_leaf(value, place)
    is_leaf = (lambda node: node is not value) if one_array_each else None
    paths_and_leaves, treedef = _flatten(value, function, place, is_leaf)
    if value_type.structure is not None:
        bindings.unify_structure(value_type.structure, value, place)
    if isinstance(placement, TreePlacement):
        parts = fitted_leaves(function, placement, value, place)
        checked = [
            check_leaf(leaf, leaf_place(place, path), jax.tree_util.keystr(path), part)
            for (path, leaf), part in zip(paths_and_leaves, parts, strict=True)
        ]
    else:
        checked = [
            check_leaf(leaf, leaf_place(place, path), jax.tree_util.keystr(path)) for path, leaf in paths_and_leaves
        ]
    return jax.tree_util.tree_unflatten(treedef, checked)


def fitted_leaves(function: str, placement: TreePlacement, value: Any, place: str) -> list[Placement]:
    """The placement of every leaf of ``value`` (flatten order), or a ``ShapeError`` naming the path where
    the layout tree stops fitting it."""
    try:
        subtrees = placement.split(value)
    except (ValueError, TypeError):
        path, detail = mismatch(placement.treedef.unflatten(placement.leaves), value) or ("", "another structure")
        raise ShapeError(messages.layout_tree_mismatch(function, place, placement.batched, path, detail)) from None
    return [part for subtree, part in zip(subtrees, placement.leaves, strict=True) for _ in jax.tree.leaves(subtree)]


def _shared_in_tree(placement: TreePlacement, part: Placement, shared_over: tuple[str, ...]) -> tuple[str, ...]:
    """The batch names a leaf of a layout tree is not mapped over: those of the call, and of its tree's other leaves."""
    return (*shared_over, *(name for name in placement.batch_names if name not in part.batch_names))


def _flatten(value: Any, function: str, place: str, is_leaf: Any = None) -> tuple[list[Any], Any]:
    """``tree_flatten_with_path``, or a ``ShapeError`` naming the argument JAX cannot flatten."""
    try:
        return jax.tree_util.tree_flatten_with_path(value, is_leaf=is_leaf)
    except Exception as error:  # e.g. a dict whose keys cannot be sorted ({1: x, "a": y})
        raise ShapeError(messages.not_a_pytree(function, place, value, error)) from None


def _check_dtype(function: str, array: ArrayType, value: Any, where: str) -> None:
    if not array.admits_dtype(value.dtype):
        raise ShapeError(messages.dtype_mismatch(function, where, value, array))
