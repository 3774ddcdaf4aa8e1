"""Bind dimension sizes by name across arguments and results, and explain conflicts.

A ``Bindings`` object collects, for one call, the size of every named dimension and
where it was first seen. ``bind`` matches one array against its layout; a mismatch is a
``ShapeError`` that names the function, the place (parameter or result), the dimension,
the expected and the actual shape, and where a conflicting size came from.

Nothing here uses ``assert``: these checks must hold under ``python -O``.

Example:
    >>> bindings = Bindings("message_passing")
    >>> bindings.bind(parse_layout("graph node node"), a, "argument 'a'")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from beartype.door import is_bearable
from beartype.roar import BeartypeException

from .annotation import hint_text
from .errors import ShapeError, describe_array, describe_value
from .layout import (
    AnonymousDim,
    FixedDim,
    Layout,
    NamedDim,
    SymbolicDim,
    VariadicDim,
    dim_text,
    evaluate_symbolic,
    symbolic_names,
)

if TYPE_CHECKING:
    from .annotation import ArrayType, ValueType
    from .plan import Placement, Plan

__all__ = [
    "Bindings",
    "Origin",
    "as_array",
    "check_arguments",
    "check_results",
    "check_results_per_example",
    "check_static_values",
    "convert_arguments",
    "is_array_like",
    "is_result_leaf",
]


@dataclass(frozen=True)
class Origin:
    """Where a size was seen: ``argument 'a' (axis 0 of f32[5,7,7])``.

    ``shape`` and ``dtype`` describe the array; the text is written only when a message needs it.
    A size the layout itself gives (``rep=3``) has no axis and no array: ``dtype`` holds its token.
    """

    place: str
    axis: int | tuple[int, int] | None
    shape: tuple[int, ...]
    dtype: Any

    @property
    def value(self) -> str:
        """``f32[5,7,7]``."""
        return describe_array(self.shape, self.dtype)

    def __str__(self) -> str:
        if self.axis is None:  # a size the layout itself gives: ``rep=3``
            return f"{self.place}, which fixes it"
        if isinstance(self.axis, tuple):
            start, stop = self.axis
            axes = f"axes {start}..{stop - 1}" if stop - start != 1 else f"axis {start}"
            return f"{self.place} ({axes} of {self.value})"
        return f"{self.place} (axis {self.axis} of {self.value})"


def is_array_like(value: Any) -> bool:
    """Arrays, tracers and NumPy arrays/scalars: anything with a tuple shape and a dtype.

    An object whose ``shape`` or ``dtype`` raises is not array-like (never an error of ours).
    """
    try:
        return isinstance(getattr(value, "shape", None), tuple) and hasattr(value, "dtype")
    except Exception:
        return False


class Bindings:
    """The sizes of one call's named dimensions, each with the place it was first seen.

    ``broadcast`` names (variadic batch dims such as ``*batch``) unify NumPy-style;
    every other name must have one size everywhere (``#name`` tokens accept size 1).
    """

    def __init__(self, function: str, arguments: dict[str, Any] | None = None) -> None:
        self.function = function
        self.arguments = arguments or {}
        self.sizes: dict[str, tuple[int, Origin]] = {}
        self.variadics: dict[str, tuple[tuple[int, ...], Origin]] = {}
        self.structures: dict[str, tuple[Any, list[str], str]] = {}
        self._symbolic: list[tuple[SymbolicDim, int, Origin, Layout]] = []

    def snapshot(self) -> tuple[Any, ...]:
        """The bound sizes as immutable tuples: what a call with the same shapes starts from.

        Argument values (for ``{...}`` dims) are not kept: a remembered snapshot keeps nothing alive.
        """
        return (tuple(self.sizes.items()), tuple(self.variadics.items()), tuple(self.structures.items()))

    @classmethod
    def restore(cls, function: str, snapshot: tuple[Any, ...]) -> Bindings:
        """Fresh bindings holding the sizes of ``snapshot``."""
        bindings = cls(function)
        sizes, variadics, structures = snapshot
        bindings.sizes, bindings.variadics, bindings.structures = dict(sizes), dict(variadics), dict(structures)
        return bindings

    # -- matching one array ------------------------------------------------------------

    def bind(
        self,
        layout: Layout,
        value: Any,
        place: str,
        *,
        broadcast: frozenset[str] = frozenset(),
        labels: frozenset[str] = frozenset(),
        per_example: Layout | None = None,
        parameter: str | None = None,
        leaf: str | None = None,
        shared_over: tuple[str, ...] = (),
    ) -> None:
        """Match ``value`` (array-like) against ``layout``, binding and checking sizes.

        ``labels`` are the ``name=3`` labels that name batch dims (bound like names);
        ``per_example`` and ``parameter`` only improve the wrong-rank message. ``leaf`` is the
        PyTree path of ``value``: ``?n`` dims are bound once per leaf path. ``shared_over`` names the
        batch dims this argument is not mapped over (for the too-many-dims message).
        """
        shape = tuple(value.shape)
        dtype = value.dtype
        self._check_rank(layout, shape, place, value, per_example, parameter, shared_over)
        start = 0
        for dim, size in zip(layout.dims, layout.split(shape), strict=True):
            width = len(size) if isinstance(size, tuple) else 1
            if getattr(dim, "treepath", False) and dim.name is not None:
                dim = replace(dim, name=f"{dim.name}{leaf or ''}", treepath=False)
            if isinstance(dim, VariadicDim):
                origin = Origin(place, (start, start + width), shape, dtype)
                if dim.name is not None:
                    self._unify_variadic(dim, size, origin, layout, broadcast)
            else:
                origin = Origin(place, start, shape, dtype)
                self._bind_one(dim, size, origin, layout, labels)
            start += width

    def _check_rank(
        self,
        layout: Layout,
        shape: tuple[int, ...],
        place: str,
        value: Any,
        per_example: Layout | None,
        parameter: str | None,
        shared_over: tuple[str, ...],
    ) -> None:
        rank = len(shape)
        if layout.admits_rank(rank):
            return
        message = (
            f"{self.function}: {place} has {rank} dims ({describe_value(value)}) but its layout {str(layout)!r} "
            f"needs {layout.rank_text}"
        )
        if (
            parameter is not None  # results come out of the map: their batch dims are never missing
            and per_example is not None
            and rank == per_example.min_rank
            and per_example.min_rank < layout.min_rank
        ):
            missing = [dim_text(d) for d in layout.dims if d not in per_example.dims]
            names = ", ".join(map(repr, missing))
            dims = f"batch dim {names} is" if len(missing) == 1 else f"batch dims {names} are"
            message += f". It has the per-example shape {str(per_example)!r}: the {dims} missing."
            if parameter is not None:
                message += (
                    f" To share one value across the batch, give it a layout without {'it' if len(missing) == 1 else 'them'}: "
                    f"layouts={{{parameter!r}: {str(per_example)!r}}}."
                )
        elif parameter is not None and shared_over and rank == layout.min_rank + len(shared_over):
            names = ", ".join(map(repr, shared_over))
            batched = " ".join((*shared_over, str(layout))).strip()
            message += (
                f". Its layout has no {names}, so one value of it is shared across the batch: pass one, "
                f"or map it too with layouts={{{parameter!r}: {batched!r}}}."
            )
        raise ShapeError(message)

    def _bind_one(self, dim: Any, size: int, origin: Origin, layout: Layout, labels: frozenset[str]) -> None:
        if isinstance(dim, AnonymousDim):
            return
        if getattr(dim, "broadcastable", False) and size == 1:
            return
        if isinstance(dim, FixedDim):
            if size != dim.size:
                what = f"'{dim.label}'" if dim.label else f"{dim.size}"
                raise ShapeError(
                    f"{self.function}: dimension {what} of layout {str(layout)!r} must have size "
                    f"{dim.size}, but {origin} has {size}"
                )
            if dim.label in labels:
                self._unify(dim.label, size, origin, layout)
            return
        if isinstance(dim, SymbolicDim):
            self._symbolic.append((dim, size, origin, layout))
            return
        if isinstance(dim, NamedDim):
            self._unify(dim.name, size, origin, layout)

    def _unify(self, name: str, size: int, origin: Origin, layout: Layout) -> None:
        known = self.sizes.get(name)
        if known is None:
            self.sizes[name] = (size, origin)
            return
        known_size, known_origin = known
        if known_size != size:
            raise ShapeError(
                f"{self.function}: dimension '{name}' has size {known_size} in {known_origin}\n"
                f"but size {size} in {origin}"
                f"{self._expected_line(origin, layout)}"
            )

    def _unify_variadic(
        self, dim: VariadicDim, shape: tuple[int, ...], origin: Origin, layout: Layout, broadcast: frozenset[str]
    ) -> None:
        name = dim.name
        known = self.variadics.get(name)
        if known is None:
            self.variadics[name] = (shape, origin)
            return
        known_shape, known_origin = known
        if name in broadcast or dim.broadcastable:
            try:
                merged = tuple(np.broadcast_shapes(known_shape, shape))
            except ValueError:
                raise ShapeError(
                    f"{self.function}: the dims '*{name}' do not broadcast: {known_shape} in "
                    f"{known_origin}\nbut {shape} in {origin}"
                ) from None
            if merged != known_shape:
                self.variadics[name] = (merged, origin if merged == shape else known_origin)
            return
        if known_shape != shape:
            raise ShapeError(
                f"{self.function}: the dims '*{name}' are {known_shape} in {known_origin}\n"
                f"but {shape} in {origin}{self._expected_line(origin, layout)}"
            )

    def _expected_line(self, origin: Origin, layout: Layout) -> str:
        """``\\n  expected argument 'f' to have shape (graph=5, node=7, feat) ...``."""
        parts = []
        for dim in layout.dims:
            if isinstance(dim, NamedDim) and dim.name in self.sizes:
                parts.append(f"{dim.name}={self.sizes[dim.name][0]}")
            elif isinstance(dim, VariadicDim) and dim.name in self.variadics:
                parts.append(f"*{dim.name}={self.variadics[dim.name][0]}")
            else:
                parts.append(dim_text(dim))
        return f"\n  {origin.place} has layout {str(layout)!r}: expected ({', '.join(parts)}), got {origin.value}"

    def unify_structure(self, name: str, value: Any, place: str) -> None:
        """Values annotated ``PyTree[..., name]`` must share one tree structure."""
        paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(value)
        paths = [jax.tree_util.keystr(path) for path, _ in paths_and_leaves]
        known = self.structures.get(name)
        if known is None:
            self.structures[name] = (treedef, paths, place)
            return
        known_treedef, known_paths, known_place = known
        if treedef == known_treedef:
            return
        extra = [path for path in known_paths if path not in paths]
        missing = [path for path in paths if path not in known_paths]
        if extra:
            detail = f"{known_place} has {', '.join(extra)}, which {place} lacks"
        elif missing:
            detail = f"{place} has {', '.join(missing)}, which {known_place} lacks"
        else:
            detail = f"{known_place} is {known_treedef} but {place} is {treedef}"
        raise ShapeError(
            f"{self.function}: {place} and {known_place} must have the same PyTree structure '{name}' "
            f"(both are annotated PyTree[..., '{name}']): {detail}"
        )

    # -- after all names are bound --------------------------------------------------------

    def check_symbolic(self) -> None:
        """Evaluate every pending expression (``2*f``) now that the names are bound."""
        pending, self._symbolic = self._symbolic, []
        sizes = {name: size for name, (size, _) in self.sizes.items()}
        for dim, size, origin, layout in pending:
            try:
                expected = evaluate_symbolic(dim, sizes, self.arguments)
            except NameError as error:
                raise ShapeError(
                    f"{self.function}: cannot evaluate the dimension {dim.expression!r} of "
                    f"{origin.place} ({error}): no argument of this call binds that name"
                ) from None
            except Exception as error:
                raise ShapeError(
                    f"{self.function}: evaluating the dimension {dim.expression!r} of {origin.place} "
                    f"failed: {type(error).__name__}: {error}"
                ) from None
            if expected != size:
                used = symbolic_names(dim)
                names = ", ".join(
                    f"{name}={known} from {where}" for name, (known, where) in self.sizes.items() if name in used
                )
                raise ShapeError(
                    f"{self.function}: dimension {dim.expression!r} of layout {str(layout)!r} should be "
                    f"{expected}{f' ({names})' if names else ''},\nbut {origin} has {size}"
                )

    def size_of(self, name: str) -> int | None:
        """The bound size of a named dimension, or None."""
        known = self.sizes.get(name)
        return None if known is None else known[0]


# -- checking a whole call against a plan ----------------------------------------------------

_SCALARS = (bool, int, float, complex)
_VARIADIC_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def as_array(value: Any, function: str, place: str, expected: str | Callable[[], str], *, abstract: bool = True) -> Any:
    """``value`` as a JAX array (NumPy arrays and scalars are converted), else a ``ShapeError``.

    Lists, strings, dicts and other objects are refused: a list may be meant as a PyTree,
    so guessing would hide bugs. Other array types (anything with a shape and a dtype) are
    converted with ``jnp.asarray``; a ``jax.ShapeDtypeStruct`` (a shape without data) is kept
    when ``abstract`` (``explain``, ``partition_specs``), refused otherwise (a real call).
    """
    if isinstance(value, jax.Array):
        return value
    if callable(expected):  # the message text, built only when a message may be written
        expected = expected()
    if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "biufc":
        return jnp.asarray(value)
    if isinstance(value, _SCALARS):
        try:
            return jnp.asarray(value)
        except OverflowError as error:  # a Python int beyond every JAX integer dtype
            raise ShapeError(
                f"{function}: {place} must be an array {expected}, got {describe_value(value)}, "
                f"which no JAX dtype can hold ({error})"
            ) from None
    if isinstance(value, jax.ShapeDtypeStruct):
        if abstract:
            return value
        raise ShapeError(
            f"{function}: {place} must be an array {expected}, got jax.ShapeDtypeStruct {describe_value(value)}: "
            "a shape without data can be traced (jax.eval_shape), not called with"
        )
    if is_array_like(value) and not isinstance(value, np.ndarray | np.generic):
        try:
            return jnp.asarray(value)  # another array type, with __jax_array__ or __array__
        except Exception as error:
            raise ShapeError(
                f"{function}: {place} must be an array {expected}, got {type(value).__name__} "
                f"{describe_value(value)}, which JAX cannot convert to one ({type(error).__name__}: {error})"
            ) from None
    hint = " (jnp.asarray makes one array of it)" if isinstance(value, list | tuple) else ""
    raise ShapeError(f"{function}: {place} must be an array {expected}, got {describe_value(value)}{hint}")


def check_arguments(plan: Plan, values: list[Any], *, abstract: bool = True) -> tuple[Bindings, list[Any]]:
    """Check every array argument of a call; returns the bindings and the converted values.

    ``abstract``: ``jax.ShapeDtypeStruct`` arguments are accepted (explaining or planning a call,
    not making it); a call itself passes ``abstract=False``.
    """
    arguments = {argument.name: value for argument, value in zip(plan.arguments, values, strict=True)}
    bindings = Bindings(plan.function, arguments)
    values = list(values)
    variadic = plan.variadic_batch
    broadcast = frozenset() if variadic is None else frozenset({variadic})
    _bind_result_sizes(plan, bindings)
    for index in plan.array_arguments:
        argument = plan.arguments[index]
        place = f"argument '{argument.name}'"
        one_array_each = argument.kind in _VARIADIC_KINDS and _is_array_hint(argument.value.hint)
        values[index] = _check_value(
            bindings,
            argument.value,
            argument.placement,
            values[index],
            place,
            broadcast,
            convert=True,
            one_array_each=one_array_each,
            abstract=abstract,
            shared_over=tuple(name for name in plan.order if name not in argument.placement.batch_names),
        )
    _check_batch_dims_have_arrays(plan, values)
    bindings.check_symbolic()
    _check_result_expressions(plan, bindings)
    return bindings, values


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
        place = f"argument '{argument.name}'"
        expected = functools.partial(_expected_text, argument.value, argument.placement.batched)
        if argument.value.kind == "array":
            values[index] = as_array(value, plan.function, place, expected, abstract=False)
        else:
            paths_and_leaves, treedef = _flatten(value, plan.function, place)
            leaves = [as_array(leaf, plan.function, place, expected, abstract=False) for _, leaf in paths_and_leaves]
            values[index] = jax.tree_util.tree_unflatten(treedef, leaves)
    return values


def _check_result_expressions(plan: Plan, bindings: Bindings) -> None:
    """Evaluate the results' expressions the arguments already determine (``n**2``), before mapping.

    One that cannot be a size (``n**(10**9)``, ``n // 0``) is refused here, by name, rather than
    left to the per-example check, which would compute it without bound or fail without context.
    """
    sizes = {name: size for name, (size, _) in bindings.sizes.items()}
    for number, result in enumerate(plan.results):
        for dim in result.placement.batched.dims:
            if not isinstance(dim, SymbolicDim) or "{" in dim.expression or not symbolic_names(dim) <= sizes.keys():
                continue
            try:
                evaluate_symbolic(dim, sizes, bindings.arguments)
            except (ValueError, ArithmeticError) as error:
                where = f"result {number}" if plan.returns_tuple else "the return value"
                raise ShapeError(
                    f"{plan.function}: the dimension {dim.expression!r} of {where} cannot be a size for these "
                    f"arguments ({', '.join(f'{n}={sizes[n]}' for n in sorted(symbolic_names(dim)))}): {error}"
                ) from None


def _bind_result_sizes(plan: Plan, bindings: Bindings) -> None:
    """Batch dims a result's layout sizes (``"b=3 n"``) are bound first, so an argument that disagrees is named."""
    for number, result in enumerate(plan.results):
        for index, name in result.placement.batch:
            dim = result.placement.batched.dims[index]
            if isinstance(dim, FixedDim) and name not in bindings.sizes:
                where = f"result {number}" if plan.returns_tuple else "the return value"
                layout = str(result.placement.batched)
                bindings.sizes[name] = (dim.size, Origin(f"the layout {layout!r} of {where}", None, (), dim_text(dim)))


def _is_array_hint(hint: Any) -> bool:
    from jaxtyping import AbstractArray

    return hint is jax.Array or hint is np.ndarray or (isinstance(hint, type) and issubclass(hint, AbstractArray))


def check_static_values(plan: Plan, values: list[Any]) -> None:
    """Check every annotated non-array argument against its annotation, with beartype's rule.

    Run on every call, before mapping: the per-example check inside the map runs only on the first
    call with given shapes, and not at all under ``python -O`` (beartype switches itself off there).
    """
    for index in plan.annotated_statics:
        argument, value = plan.arguments[index], values[index]
        hint = argument.value.hint
        if argument.kind is inspect.Parameter.VAR_POSITIONAL:
            entries = value
        elif argument.kind is inspect.Parameter.VAR_KEYWORD:
            entries = value.values()
        else:
            entries = (value,)
        for entry in entries:
            try:
                admitted = is_bearable(entry, hint)
            except BeartypeException:
                admitted = True  # a hint beartype cannot check: nor could the per-example check
            if not admitted:
                raise ShapeError(
                    f"{plan.function}: argument '{argument.name}' is annotated {hint_text(hint)}, "
                    f"got {describe_value(entry)}"
                )


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
        holders = " nor ".join(f"argument '{plan.arguments[i].name}' ({describe_value(values[i])})" for i in mapping)
        raise ShapeError(
            f"{plan.function}: nothing gives the size of the batch dim '{name}': neither {holders} holds an array"
            if len(mapping) > 1
            else f"{plan.function}: nothing gives the size of the batch dim '{name}': {holders} holds no array"
        )


def check_results(plan: Plan, bindings: Bindings, output: Any) -> None:
    """Check the batched results against their layouts, continuing the call's bindings.

    Results must match exactly: a ``*batch`` result has the full broadcast shape.
    """
    outputs = output if plan.returns_tuple else (output,)
    for index, (result, value) in enumerate(zip(plan.results, outputs, strict=True)):
        place = f"result {index}" if plan.returns_tuple else "the return value"
        _check_value(bindings, result.value, result.placement, value, place, frozenset(), convert=False)
    bindings.check_symbolic()


def check_results_per_example(plan: Plan, output: Any) -> None:
    """Inside the map: each result is an array (or a PyTree of them) with its per-example rank.

    That is what ``jax.vmap`` needs to put the batch dims back; without this check a wrong
    result is JAX's error about ``out_axes`` or an invalid JAX type, naming nothing of ours.
    Sizes and dtypes are checked after the map, against the batched layouts.
    """
    function = plan.function
    if plan.returns_tuple and not (isinstance(output, tuple) and len(output) == len(plan.results)):
        raise ShapeError(
            f"{function}: the return value should be a tuple of {len(plan.results)} (its annotation), "
            f"got {describe_value(output)}"
        )
    outputs = output if plan.returns_tuple else (output,)
    for index, (result, value) in enumerate(zip(plan.results, outputs, strict=True)):
        place = f"result {index}" if plan.returns_tuple else "the return value"
        if value is None and result.value.optional:
            continue
        if result.value.kind == "array":
            leaves = [(place, value)]
        else:
            leaves = [(_leaf_place(place, path), leaf) for path, leaf in _flatten(value, function, place)[0]]
        layout = result.placement.per_example
        for where, leaf in leaves:
            if isinstance(leaf, bool | int | float | complex):
                _check_python_scalar(function, where, leaf)
                rank = 0  # vmap makes a Python number a 0-d array
            elif is_result_leaf(leaf):
                rank = len(leaf.shape)
            else:
                raise ShapeError(f"{function}: {where} should be an array, got {_not_a_result_text(leaf)}")
            if not layout.admits_rank(rank):
                raise ShapeError(
                    f"{function}: {where} of one example is {describe_value(leaf)} ({rank} dims), but its "
                    f"per-example layout {str(layout)!r} needs {layout.rank_text} (the map adds the batch dims to it)"
                )


def is_result_leaf(value: Any) -> bool:
    """What JAX takes as a result: a JAX array or tracer, or a NumPy array or scalar of a numeric dtype."""
    if isinstance(value, jax.Array):
        return True
    if isinstance(value, np.ndarray | np.generic):
        return bool(jnp.issubdtype(value.dtype, jnp.number) or jnp.issubdtype(value.dtype, jnp.bool_))
    return False


def _not_a_result_text(value: Any) -> str:
    """``str 's'``; a value with a shape and a dtype JAX cannot hold: ``ndarray str32[3]``, by type."""
    if is_array_like(value):
        return f"{type(value).__name__} {describe_value(value)}, which JAX cannot hold"
    return describe_value(value)


def _check_python_scalar(function: str, where: str, value: bool | int | float | complex) -> None:
    """A Python int must fit the integer dtype JAX gives it (int32 unless x64 is on)."""
    if isinstance(value, int) and not isinstance(value, bool):
        limits = jnp.iinfo(jax.dtypes.canonicalize_dtype(np.int64))
        if not limits.min <= value <= limits.max:
            raise ShapeError(
                f"{function}: {where} should be an array, got {describe_value(value)}, which does not fit "
                f"{limits.dtype} (JAX's integer dtype here)"
            )


def _leaf_place(place: str, path: Any) -> str:
    """``the return value at ['a']``; a bare leaf has an empty path: just ``the return value``."""
    path_text = jax.tree_util.keystr(path)
    return f"{place} at {path_text}" if path_text else place


def _check_value(
    bindings: Bindings,
    value_type: ValueType,
    placement: Placement,
    value: Any,
    place: str,
    broadcast: frozenset[str],
    *,
    convert: bool,
    one_array_each: bool = False,
    abstract: bool = True,
    shared_over: tuple[str, ...] = (),
) -> Any:
    """Check one argument or result (every leaf of a PyTree) against its placement.

    ``one_array_each``: the value is ``*args``' tuple or ``**kwargs``' dict of an array annotation,
    so each entry must be one array (``None`` or a list there is not an empty or a bigger PyTree).
    """
    function = bindings.function
    parameter = place.removeprefix("argument '").removesuffix("'") if convert else None
    if value is None and value_type.optional:
        return value

    def check_leaf(leaf: Any, where: str, path: str | None = None) -> Any:
        if convert:
            expected = functools.partial(_expected_text, value_type, placement.batched)
            leaf = as_array(leaf, function, where, expected, abstract=abstract)
        elif not is_result_leaf(leaf):
            raise ShapeError(f"{function}: {where} should be an array, got {_not_a_result_text(leaf)}")
        _check_dtype(function, value_type.array, leaf, where)
        bindings.bind(
            placement.batched,
            leaf,
            where,
            broadcast=broadcast,
            labels=placement.labels,
            per_example=placement.per_example,
            parameter=parameter,
            leaf=path,
            shared_over=shared_over,
        )
        return leaf

    if value_type.kind == "array":
        return check_leaf(value, place)
    is_leaf = (lambda node: node is not value) if one_array_each else None
    paths_and_leaves, treedef = _flatten(value, function, place, is_leaf)
    if value_type.structure is not None:
        bindings.unify_structure(value_type.structure, value, place)
    checked = [
        check_leaf(leaf, _leaf_place(place, path), jax.tree_util.keystr(path)) for path, leaf in paths_and_leaves
    ]
    return jax.tree_util.tree_unflatten(treedef, checked)


def _flatten(value: Any, function: str, place: str, is_leaf: Any = None) -> tuple[list[Any], Any]:
    """``tree_flatten_with_path``, or a ``ShapeError`` naming the argument JAX cannot flatten."""
    try:
        return jax.tree_util.tree_flatten_with_path(value, is_leaf=is_leaf)
    except Exception as error:  # e.g. a dict whose keys cannot be sorted ({1: x, "a": y})
        raise ShapeError(
            f"{function}: {place} is not a PyTree JAX can flatten ({type(error).__name__}: {error}): "
            f"{describe_value(value)}"
        ) from None


def _check_dtype(function: str, array: ArrayType, value: Any, where: str) -> None:
    if not array.admits_dtype(value.dtype):
        raise ShapeError(
            f"{function}: {where} has dtype {value.dtype} ({describe_value(value)}) but its "
            f"annotation admits only {array.dtype_description()} dtypes"
        )


def _expected_text(value: ValueType, layout: Layout) -> str:
    return f"matching {hint_text(value.array.with_layout(layout))}"
