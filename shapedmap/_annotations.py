"""Read a per-example function's jaxtyping annotations into value types (``_value_types``).

``read_function(fn)`` resolves the hints with ``typing.get_type_hints`` (a failure is a
``SpecError``, never a silently unchecked parameter) and classifies each parameter and
the return value: an array with a per-example ``Layout``, a PyTree of such arrays, or a
static (non-array) value. The hints come from the function behind its wrappers
(``_wrappers``); a function made by ``jax.grad`` returns what ``_transforms`` derives. An array
annotation must name a JAX or NumPy array type (or ``Any``): inside the map every array is a
JAX array, so ``Float[torch.Tensor, "n"]`` is a ``SpecError``.

Example:
    >>> def f(x: Float[Array, "n"], k: int) -> Float[Array, ""]: ...
    >>> types = read_function(f)
    >>> [(p.name, p.value.kind) for p in types.parameters]
    [('x', 'array'), ('k', 'static')]
    >>> types.parameters[0].value.array.layout, types.outputs[0].array.layout
    (Layout('n'), Layout(''))
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from dataclasses import replace
from typing import Any

import jax
import numpy as np
import numpy.typing as npt
from jaxtyping import AbstractArray, Bool, Complex, Float, Int, Num, PyTree, Shaped

from ._compat import Derivative
from ._errors import SpecError
from ._grammar import parse_layout
from ._transforms import derivative_in, derivative_outputs
from ._value_types import (
    ANY_SHAPE,
    ANY_TREE,
    ArrayType,
    FunctionTypes,
    ParameterType,
    ValueType,
    array_type_text,
    hint_text,
)
from ._wrappers import (
    PartialParts,
    contract_function,
    function_name,
    partial_parts,
    resolved_hints,
    wrappers_text,
)

__all__ = ["classify", "read_function"]

_ARRAY_CLASSES = (jax.Array, np.ndarray, np.generic)  # what an array annotation may name: JAX converts them


def read_function(fn: Any, hints: dict[str, Any] | None = None) -> FunctionTypes:
    """Classify every parameter and the return value of ``fn`` by its annotation.

    Wrappers that keep the contract (``functools.partial``, ``jax.jit``, ``jax.custom_jvp``,
    ``jax.custom_vjp``, stacks of them: see ``contract_function``) are read through: the hints
    come from the wrapped function, the signature from ``fn`` (``inspect.signature`` follows
    ``__wrapped__`` and applies a partial's fixed arguments). Annotated ``*args``/``**kwargs`` hold one array per entry
    (a PyTree, all with that layout); unannotated ones are static.

    Raises:
        SpecError: if the annotations cannot be resolved, or an array annotation can never
            be batched (a union of different shapes, a non-array return annotation…).
        NameError: (as ``UnresolvedAnnotation``) for a name not defined yet, which may be
            defined later in the module (a forward reference).
    """
    name = function_name(fn)
    parts = partial_parts(fn)
    try:
        signature = inspect.signature(fn) if parts is None else parts.signature()
        fixed_values = {} if parts is None else _fixed_values(parts)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{name}: cannot read the signature: {error}") from None
    if hints is None:
        hints = resolved_hints(fn, name)
    derivative = derivative_in(fn)
    # A wrapper of a function with no annotations at all: the plan's message says what to annotate.
    wrapped_in = wrappers_text(fn) if not hints and signature.parameters and derivative is None else ""
    parameters = []
    for parameter in signature.parameters.values():
        where = f"{name}: parameter '{parameter.name}'"
        value = classify(hints.get(parameter.name), where)
        if value.kind == "array" and parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            value = ValueType("tree", value.array, value.optional, value.hint, one_array_each=True)
        bound = None if parts is None or parameter.name not in parts.keywords else parts.keywords[parameter.name][1]
        parameters.append(ParameterType(parameter.name, parameter.kind, parameter.default, value, bound))
    fixed = []
    for parameter_name, (kind, value, bound_by) in fixed_values.items():
        value_type = classify(hints.get(parameter_name), f"{name}: parameter '{parameter_name}'")
        if value_type.kind == "array" and kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            value_type = ValueType("tree", value_type.array, value_type.optional, value_type.hint, one_array_each=True)
        fixed.append(ParameterType(parameter_name, kind, value, value_type, bound_by))
    outputs, returns_tuple = _classify_return(hints.get("return", inspect.Parameter.empty), name, derivative)
    if derivative is not None:
        name = f"{derivative.transform}({name})"

        def gradient_type(parameter: str) -> ValueType:
            return classify(hints.get(parameter), f"{name}: the gradient of parameter '{parameter}'")

        target = contract_function(fn)
        outputs, returns_tuple = derivative_outputs(derivative, target, name, outputs, gradient_type)
    return FunctionTypes(name, signature, tuple(parameters), outputs, returns_tuple, tuple(fixed), wrapped_in)


def _fixed_values(parts: PartialParts) -> dict[str, tuple[inspect._ParameterKind, Any, str]]:
    """The values partials bind that leave the signature, by parameter: its kind, the value, the partial
    that bound it (a ``*args`` parameter's value: the tuple of the positionals it takes)."""
    parameters = inspect.signature(parts.func).parameters
    fixed = {}
    for position, (parameter_name, value) in enumerate(parts.positional_names().items()):
        fixed[parameter_name] = (parameters[parameter_name].kind, value, parts.positionals[position][1])
    for parameter_name in parts.fixed:
        kind = parameters[parameter_name].kind if parameter_name in parameters else inspect.Parameter.KEYWORD_ONLY
        fixed[parameter_name] = (kind, *parts.keywords[parameter_name])
    return fixed


def _classify_return(hint: Any, name: str, derivative: Derivative | None) -> tuple[tuple[ValueType, ...], bool]:
    """What ``fn`` returns by its annotation (a differentiated function's: what the loss returns)."""
    where = f"{name}: the return annotation"
    if hint is inspect.Parameter.empty:
        return (ValueType("tree", ArrayType(ANY_SHAPE)),), False
    hint = _strip_annotated(hint)
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if items and items[-1] is not Ellipsis:
            outputs = tuple(_classify_output(item, f"{where} (item {i})", derivative) for i, item in enumerate(items))
            return outputs, True
    return (_classify_output(hint, where, derivative),), False


def _classify_output(hint: Any, where: str, derivative: Derivative | None) -> ValueType:
    value = classify(hint, where)
    if not value.is_array and (
        hint is Any or (isinstance(hint, type) and hint.__module__ != "builtins") or derivative is not None
    ):
        # Any, or a class (an Equinox State, a NamedTuple, a module): a PyTree, whose leaves JAX batches.
        # A differentiated loss's `-> float` is no result of the transform: its value is a PyTree too.
        return replace(ANY_TREE, hint=hint)
    if not value.is_array:
        raise SpecError(
            f"{where} {hint_text(hint)} is not an array annotation: a batched function returns "
            "arrays. Annotate it like Float[Array, 'n'] (or leave it out)."
        )
    return value


def classify(hint: Any, where: str, *, in_tree: bool = False) -> ValueType:
    """Classify one type hint (``where`` prefixes any error; ``in_tree``: a PyTree's leaf type)."""
    if hint is None:
        return ValueType("static")
    hint = _strip_annotated(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _classify_union(hint, where, in_tree)
    if isinstance(hint, type) and issubclass(hint, PyTree) and hint is not PyTree:
        leaf = getattr(hint, "leaftype", None)
        if _holds_arrays(leaf):
            # PyTree[Params] of a NamedTuple (dataclass, Module…) with array fields: JAX flattens it
            # into those arrays, each batched in front; their own shapes are the class's business.
            return ValueType("tree", ArrayType(ANY_SHAPE), hint=hint, structure=getattr(hint, "structure", None))
        leaf_value = classify(leaf, where, in_tree=True)
        if leaf_value.kind != "array":
            return ValueType("static", hint=hint)
        structure = getattr(hint, "structure", None)
        if structure is None:
            _refuse_treepath_dims(leaf_value.array, hint, where)
        return ValueType("tree", leaf_value.array, leaf_value.optional, hint, structure)
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        array = _array_type(hint, where)
        if not in_tree:
            _refuse_treepath_dims(array, hint, where)
        return ValueType("array", array, hint=hint)
    if hint is jax.Array or hint is np.ndarray:
        return ValueType("array", ArrayType(ANY_SHAPE, array_type=hint), hint=hint)
    is_container = origin in (list, tuple, dict) or getattr(origin, "__module__", None) == "collections.abc"
    # A Callable's arguments are its parameter and return types, not contents: it is static.
    if is_container and origin is not collections.abc.Callable:
        items = [classify(arg, where) for arg in typing.get_args(hint) if arg is not Ellipsis]
        arrays = [item for item in items if item.is_array]
        if arrays:
            return _merge(arrays, hint, where, kind="tree")
    return ValueType("static", hint=hint)


def _holds_arrays(cls: Any) -> bool:
    """Is ``cls`` a class (not an array annotation) with an array-annotated field?"""
    if not isinstance(cls, type) or issubclass(cls, AbstractArray) or cls.__module__ == "builtins":
        return False
    try:
        fields = typing.get_type_hints(cls)
    except Exception:  # unresolvable field annotations: not ours to judge
        return False
    return any(_is_array_hint(field_hint) for field_hint in fields.values())


def _is_array_hint(hint: Any) -> bool:
    """An array annotation, or an Optional/union with one (looked at one level deep: no recursion)."""
    hint = _strip_annotated(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_array_hint(member) for member in typing.get_args(hint))
    return hint is jax.Array or hint is np.ndarray or (isinstance(hint, type) and issubclass(hint, AbstractArray))


def _classify_union(hint: Any, where: str, in_tree: bool) -> ValueType:
    members = typing.get_args(hint)
    optional = type(None) in members
    # ArrayLike (or ArrayLike | None) is a Union meaning "anything jnp.asarray takes": any array.
    if set(members) - {type(None)} == set(typing.get_args(jax.typing.ArrayLike)):
        return ValueType("array", ArrayType(ANY_SHAPE, array_type=jax.Array), optional, hint)
    members = _numpy_array_like_as_ndarray(members)
    values = [classify(member, where, in_tree=in_tree) for member in members if member is not type(None)]
    arrays = [value for value in values if value.is_array]
    if not arrays:
        return ValueType("static", hint=hint)
    scalars = [_SCALAR_DTYPES.get(member) for member in members if member is not type(None)]
    if (
        len(arrays) != len(values)
        and all(value.array.layout.dims == () for value in arrays)
        and all(value.is_array or dtype is not None for value, dtype in zip(values, scalars, strict=True))
    ):
        # jaxtyping's ScalarLike (Shaped[Array, ''] | float | int…): a scalar, given as an array or a number.
        values = [
            value if value.is_array else ValueType("array", _array_type(dtype[jax.Array, ""], where))
            for value, dtype in zip(values, scalars, strict=True)
        ]
        arrays = values
    kind = "tree" if any(value.kind == "tree" for value in arrays) else "array"
    merged = _merge(arrays, hint, where, kind)
    if len(arrays) != len(values):
        # Arrays or something else (nnx's `rngs: Rngs | RngStream | Array | None`): held static
        # unless `layouts=` gives it a layout; an array passed there is refused, never silently shared.
        return ValueType("static", merged.array, optional, hint)
    return ValueType(merged.kind, merged.array, optional or merged.optional, hint, merged.structure)


# Python and NumPy scalar types a union may add to scalar array annotations, by their jaxtyping dtype.
_SCALAR_DTYPES: dict[Any, Any] = {
    bool: Bool,
    int: Int,
    float: Float,
    complex: Complex,
    np.bool_: Bool,
    np.number: Num,
    np.generic: Shaped,
}


def _merge(values: list[ValueType], hint: Any, where: str, kind: str) -> ValueType:
    """One array type for a union or a container: same layout, the union of dtypes."""
    layouts = list(dict.fromkeys(str(value.array.layout) for value in values))  # in the annotation's order
    alternatives: tuple[ArrayType, ...] = ()
    if len(layouts) > 1:
        members = tuple(dict.fromkeys(a for value in values for a in (value.array.alternatives or (value.array,))))
        if any(member.layout.variadic_index is not None for member in members):
            raise SpecError(
                f"{where} {hint_text(hint)} allows several shapes ({', '.join(map(repr, layouts))}): "
                "a union of shapes is batched by the rank of each example, which a variadic dim "
                "('*name', '...') leaves open. Annotate one layout, or shapes of fixed rank."
            )
        alternatives = members
    first = values[0].array if not alternatives else ArrayType(ANY_SHAPE)
    if any(value.array.dtypes is None for value in values):
        dtypes = None
    else:
        dtypes = tuple(dict.fromkeys(d for value in values for d in value.array.dtypes))
    classes = [value.array.dtype for value in values]
    dtype = None if None in classes else classes[0]
    others = () if dtype is None else tuple(c for c in dict.fromkeys(classes) if c is not dtype)
    array = ArrayType(first.layout, dtype, first.array_type, dtypes, others, alternatives)
    structure = next((value.structure for value in values if value.structure), None)
    return ValueType(kind, array, any(value.optional for value in values), hint, structure)


def _refuse_treepath_dims(array: ArrayType, hint: Any, where: str) -> None:
    """``?n`` (a size per PyTree leaf) only means something inside ``PyTree[..., "T"]``."""
    for dim in array.layout.dims:
        if getattr(dim, "treepath", False):
            raise SpecError(
                f"{where} {hint_text(hint)}: '?{dim.name}' gives each PyTree leaf its own size, so it is "
                "allowed only inside a structured PyTree annotation, e.g. PyTree[Float[Array, '?n'], 'T']"
            )


# NumPy's ArrayLike as jaxtyping reads Float[npt.ArrayLike, "n"]: one member per class it names (_Buffer, str…).
_NUMPY_ARRAY_LIKE = frozenset(member.array_type for member in typing.get_args(Shaped[npt.ArrayLike, "n"]))


def _numpy_array_like_as_ndarray(members: tuple[Any, ...]) -> tuple[Any, ...]:
    """A union's members, ``Float[npt.ArrayLike, 'n']``'s read as the one ``Float[np.ndarray, 'n']``."""
    array_types = {m.array_type for m in members if isinstance(m, type) and issubclass(m, AbstractArray)}
    if not array_types >= _NUMPY_ARRAY_LIKE:
        return members
    as_ndarray = (
        m.dtype[np.ndarray, m.dim_str] if getattr(m, "array_type", None) in _NUMPY_ARRAY_LIKE else m for m in members
    )
    return tuple(dict.fromkeys(as_ndarray))


def _array_type(hint: Any, where: str) -> ArrayType:
    array_type = hint.array_type
    if array_type is not Any and not (isinstance(array_type, type) and issubclass(array_type, _ARRAY_CLASSES)):
        dtype = getattr(hint.dtype, "__name__", "Shaped")
        raise SpecError(
            f"{where} {hint_text(hint)} names the array type {array_type_text(array_type)}, which is not a "
            f"JAX or NumPy array: inside the map the function gets JAX arrays, never a {array_type_text(array_type)}. "
            f"Annotate it {dtype}[Array, {hint.dim_str!r}] (NumPy arrays and Python numbers passed in are converted)."
        )
    try:
        layout = parse_layout(hint.dim_str)
    except SpecError as error:
        raise SpecError(f"{where} {hint_text(hint)}: {error}") from None
    dtypes = hint.dtypes if isinstance(hint.dtypes, tuple) else None
    return ArrayType(layout, hint.dtype, hint.array_type, dtypes)


def _strip_annotated(hint: Any) -> Any:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint
