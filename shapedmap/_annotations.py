"""Read a per-example function's jaxtyping annotations into value types.

``read_function(fn)`` resolves the hints with ``typing.get_type_hints`` (a failure is a
``SpecError``, never a silently unchecked parameter) and classifies each parameter and
the return value: an array with a per-example ``Layout``, a PyTree of such arrays, or a
static (non-array) value.

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
import functools
import inspect
import re
import types
import typing
from dataclasses import dataclass, replace
from typing import Any

import jax
import numpy as np
from jaxtyping import AbstractArray, Bool, Complex, Float, Int, Num, PyTree, Shaped

from ._compat import Derivative, derivative_of
from ._errors import SpecError
from ._grammar import FixedDim, Layout, parse_layout

__all__ = [
    "ArrayType",
    "FunctionTypes",
    "ParameterType",
    "UnresolvedAnnotation",
    "ValueType",
    "contract_function",
    "function_name",
    "read_function",
    "resolved_hints",
    "unwrap_partial",
]

_ANY_SHAPE = parse_layout("...")


@dataclass(frozen=True)
class ArrayType:
    """One array annotation: which dtypes it admits and its per-example layout.

    ``dtype`` is the jaxtyping dtype class (``Float``, ``Key``…) or None for a plain
    ``jax.Array``/``np.ndarray`` hint; ``other_dtypes`` the further classes of a union
    (``Float[Array, "n"] | Int[Array, "n"]``); ``dtypes`` the admitted dtype names (None: any).
    ``alternatives``: for a union of shapes (jaxtyping's ``PRNGKeyArray``: ``Key[Array, '']
    | UInt32[Array, '2'] | UInt32[Array, '4']``), one array type per member; the layout is then
    ``...`` (the batch dims go in front) and each example must match one member, dtype and shape
    together.
    """

    layout: Layout
    dtype: Any = None
    array_type: Any = jax.Array
    dtypes: tuple[str | re.Pattern[str], ...] | None = None
    other_dtypes: tuple[Any, ...] = ()
    alternatives: tuple[ArrayType, ...] = ()

    def with_layout(self, layout: Layout) -> Any:
        """The jaxtyping annotation for the same dtype(s) and array type with another layout.

        It is a subclass of jaxtyping's own annotation (so it checks exactly the same), named
        ``Float[Array, 'graph n']`` rather than ``Float[jaxlib._jax.Array, 'graph n']`` so that
        ``help()`` and generated docs read well. Other array types (``np.ndarray``, NumPy's
        ``ArrayLike``…) become ``jax.Array``: inside ``vmap`` and ``jit`` every array is a tracer.
        A union of shapes puts each member's shape where the layout has ``...``.
        """
        if self.alternatives:
            members = tuple(member.with_layout(_fill(layout, member.layout)) for member in self.alternatives)
            return typing.Union[members]  # noqa: UP007
        array_type = self.array_type if self.array_type in (jax.Array, Any) else jax.Array
        return _annotation(self.dtype, self.other_dtypes, array_type, str(layout))

    def admits_example(self, dtype: Any, shape: tuple[int, ...]) -> bool:
        """For a union of shapes: does one example of ``shape`` and ``dtype`` match a member?

        The member's rank and fixed sizes are checked here; its named dims by jaxtyping's
        per-example check (they are not bound across arguments by shapedmap).
        """
        return any(member.admits_dtype(dtype) and _admits_shape(member.layout, shape) for member in self.alternatives)

    def admits_dtype(self, dtype: Any) -> bool:
        """Does an array of ``dtype`` satisfy the annotation? (jaxtyping's own rule.)"""
        return self.dtypes is None or _admits(self.dtypes, dtype_name(dtype))

    def dtype_description(self) -> str:
        """``Float`` or ``Float or Int``: how the annotation names its dtypes."""
        if self.dtype is None:
            return "any"
        return " or ".join(dtype.__name__ for dtype in (self.dtype, *self.other_dtypes))


def _admits_shape(layout: Layout, shape: tuple[int, ...]) -> bool:
    """Does ``shape`` have the rank of ``layout`` (which has no variadic) and its fixed sizes?"""
    if len(shape) != len(layout.dims):
        return False
    return all(
        not isinstance(dim, FixedDim) or size == dim.size or (dim.broadcastable and size == 1)
        for dim, size in zip(layout.dims, shape, strict=True)
    )


def _fill(layout: Layout, shape: Layout) -> Layout:
    """``layout`` with its ``...`` token replaced by the dims of ``shape``."""
    tokens = str(layout).split()
    at = tokens.index("...")
    return parse_layout(" ".join([*tokens[:at], *str(shape).split(), *tokens[at + 1 :]]))


@functools.lru_cache(maxsize=4096)
def _annotation(dtype: Any, other_dtypes: tuple[Any, ...], array_type: Any, layout: str) -> Any:
    """One annotation class per dtype, array type and layout: shared by every function that uses
    it, so that jaxtyping and beartype, which remember every annotation they meet, keep one."""
    annotations = []
    for each in (dtype if dtype is not None else Shaped, *other_dtypes):
        annotation = each[array_type, layout]
        name = f"{each.__name__}[{_array_type_text(array_type)}, {layout!r}]"
        annotations.append(type(annotation)(name, (annotation,), {"__module__": "jaxtyping", "__qualname__": name}))
    return annotations[0] if len(annotations) == 1 else typing.Union[tuple(annotations)]  # noqa: UP007


@functools.lru_cache(maxsize=1024)
def _admits(dtypes: tuple[str | re.Pattern[str], ...], name: str) -> bool:
    return any(allowed == name if isinstance(allowed, str) else bool(allowed.match(name)) for allowed in dtypes)


def dtype_name(dtype: Any) -> str:
    """The name jaxtyping matches dtypes by: ``float32``, ``int8``, ``prng_key``…"""
    scalar_type = getattr(dtype, "type", None)
    return getattr(scalar_type, "__name__", None) or str(dtype)


@dataclass(frozen=True)
class ValueType:
    """What a parameter or a result holds.

    ``kind`` is ``"array"`` (one array), ``"tree"`` (a PyTree whose every leaf is such an
    array) or ``"static"`` (anything else: held fixed, never mapped). A static ``array`` is the
    array member of a union of arrays and non-arrays (``Rngs | Array``): it is mapped only if
    ``layouts=`` gives it a layout. ``optional`` values
    may also be None. ``structure`` is the name of ``PyTree[..., "T"]``: every value with the
    same name must have the same tree structure. ``one_array_each``: the tuple of ``*args``
    (or dict of ``**kwargs``) of an array annotation, each entry one array.
    """

    kind: str
    array: ArrayType | None = None
    optional: bool = False
    hint: Any = None
    structure: str | None = None
    one_array_each: bool = False

    @property
    def is_array(self) -> bool:
        """Arrays and PyTrees of arrays have layouts; static values do not."""
        return self.kind != "static"


@dataclass(frozen=True)
class ParameterType:
    """A parameter of the per-example function."""

    name: str
    kind: inspect._ParameterKind
    default: Any
    value: ValueType


@dataclass(frozen=True)
class FunctionTypes:
    """Everything the annotations of a function say, in signature order.

    ``outputs`` holds one ``ValueType`` per element when the function returns a fixed-size
    tuple (``returns_tuple``), else a single one; an unannotated return is a PyTree of
    arrays of any shape.
    """

    name: str
    signature: inspect.Signature
    parameters: tuple[ParameterType, ...]
    outputs: tuple[ValueType, ...]
    returns_tuple: bool


def unwrap_partial(fn: Any) -> Any:
    """The function a ``functools.partial`` (of a partial…) fixes arguments of; ``fn`` otherwise."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


_MAX_WRAPPERS = 64  # an object whose __wrapped__ makes a new wrapper each time stops here

# How messages name the wrapper objects that contract_function sees through.
_WRAPPER_NAMES = {
    "PjitFunction": "jax.jit",
    "custom_jvp": "jax.custom_jvp",
    "custom_vjp": "jax.custom_vjp",
    "_JitWrapper": "equinox.filter_jit",
    "BoundMethod": "an Equinox bound method",
    "partial": "functools.partial",
}


def _inner(fn: Any) -> Any:
    """The callable a wrapper object wraps, or None: ``functools.partial``'s ``func``; the
    ``__wrapped__`` that ``jax.jit`` (``jax._src.util.wraps``), ``jax.custom_jvp`` and
    ``jax.custom_vjp`` (``functools.update_wrapper``), ``equinox.filter_jit`` and Equinox's
    bound methods set; else a ``custom_jvp``/``custom_vjp``'s ``fun``."""
    if isinstance(fn, functools.partial):
        return fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        # A function carries its own annotations: a functools.wraps decorator copies them, and a
        # batched function's are its batched ones, which its wrapped function's are not.
        return None
    try:
        inner = getattr(fn, "__wrapped__", None)
        if inner is None and isinstance(fn, jax.custom_jvp | jax.custom_vjp):
            inner = fn.fun
    except Exception:  # an object whose attribute lookup raises: read it as it is
        return None
    return inner if callable(inner) else None


def contract_function(fn: Any) -> Any:
    """The function whose annotations are ``fn``'s per-example contract.

    Wrappers that keep the contract are seen through: ``functools.partial``, ``jax.jit``,
    ``jax.custom_jvp``, ``jax.custom_vjp``, ``equinox.filter_jit``, Equinox bound methods,
    and any stack of them (any callable object with a ``__wrapped__``, the attribute
    ``inspect.signature`` follows too). Plain functions and methods (``jax.checkpoint`` and
    ``functools.wraps`` decorators make functions whose annotations are the wrapped one's),
    batched functions and callable objects without ``__wrapped__`` are returned as they are.
    Only the annotations come from the result: the batched function still calls ``fn``.
    """
    seen = {id(fn)}
    while (inner := _inner(fn)) is not None and id(inner) not in seen and len(seen) < _MAX_WRAPPERS:
        seen.add(id(inner))
        fn = inner
    return fn


def _wrapper_chain(fn: Any) -> list[str]:
    """How messages name the wrappers between ``fn`` and its contract function, outermost first."""
    names = []
    seen = {id(fn)}
    while (inner := _inner(fn)) is not None and id(inner) not in seen and len(seen) < _MAX_WRAPPERS:
        seen.add(id(inner))
        names.append(_WRAPPER_NAMES.get(type(fn).__name__, type(fn).__qualname__))
        fn = inner
    if inspect.isfunction(fn) and hasattr(fn, "__wrapped__") and not hasattr(fn, "__shapedmap__"):
        names.append("a decorator (functools.wraps)")
    return names


def function_name(fn: Any) -> str:
    """The name errors use for ``fn``: ``rotate``, or ``Scaler.apply`` for a method.

    Read through the wrappers ``contract_function`` sees through (``jax.jit(rotate)`` is
    ``rotate``). Enclosing functions (``test_x.<locals>.rotate``) are dropped: they are noise
    in a message.
    """
    fn = contract_function(fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    if not isinstance(name, str):
        name = type(fn).__name__
    return name.rsplit("<locals>.", 1)[-1]


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
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{name}: cannot read the signature: {error}") from None
    if hints is None:
        hints = resolved_hints(fn, name)
        if not hints and signature.parameters:
            _refuse_unannotated_wrapped(fn, name, signature)
    parameters = []
    for parameter in signature.parameters.values():
        where = f"{name}: parameter '{parameter.name}'"
        value = classify(hints.get(parameter.name), where)
        if value.kind == "array" and parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            value = ValueType("tree", value.array, value.optional, value.hint, one_array_each=True)
        parameters.append(ParameterType(parameter.name, parameter.kind, parameter.default, value))
    derivative = _derivative_in(fn)
    outputs, returns_tuple = _classify_return(hints.get("return", inspect.Parameter.empty), name, derivative)
    if derivative is not None:
        name = f"{derivative.transform}({name})"
        outputs, returns_tuple = _derivative_outputs(derivative, contract_function(fn), hints, name, outputs)
    return FunctionTypes(name, signature, tuple(parameters), outputs, returns_tuple)


_ANY_TREE = ValueType("tree", ArrayType(_ANY_SHAPE))  # what an unannotated function returns


def _derivative_in(fn: Any) -> Derivative | None:
    """The transform that made ``fn`` or a wrapper ``contract_function`` sees through on the way to
    its contract (``jax.jit(jax.grad(loss))``, ``equinox.filter_grad(loss)``), else None."""
    seen = {id(fn)}
    while (derivative := derivative_of(fn)) is None:
        inner = _inner(fn)
        if inner is None or id(inner) in seen or len(seen) >= _MAX_WRAPPERS:
            return None
        seen.add(id(inner))
        fn = inner
    return derivative


def _derivative_outputs(
    derivative: Derivative, target: Any, hints: dict[str, Any], name: str, loss: tuple[ValueType, ...]
) -> tuple[tuple[ValueType, ...], bool]:
    """What ``jax.grad``/``jax.value_and_grad`` of a function return, from its annotations.

    The gradient of a parameter has that parameter's annotation (per example); a static
    (unannotated) parameter's gradient is a PyTree of arrays. ``loss`` is what the
    differentiated function returns: its value, or ``(value, aux)`` with ``has_aux``.
    """
    if not derivative.readable:
        raise SpecError(
            f"{name}: shapedmap cannot tell what {derivative.transform} returns (its annotations are the "
            f"function's own, not its result's). Annotate a function that calls it, e.g. "
            f"def f(x: Float[Array, 'n']) -> Float[Array, 'n n']: return {name}(x)"
        )
    parameters = inspect.signature(target).parameters.values()
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    star_args = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)

    def gradient(index: int) -> ValueType:
        if star_args is not None and index < 0:
            return _ANY_TREE  # which argument it names depends on how many the call passes
        if star_args is not None and index >= len(positional):
            parameter = star_args  # an entry of *args: one array with its annotation
        elif -len(positional) <= index < len(positional):
            parameter = positional[index]
        else:
            raise SpecError(
                f"{name}: argnums={derivative.argnums} names positional argument {index}, but the "
                f"function has {len(positional)} positional parameter(s)"
            )
        value = classify(hints.get(parameter), f"{name}: the gradient of parameter '{parameter}'")
        if not value.is_array:
            return _ANY_TREE
        return replace(value, optional=True) if derivative.filtered else value  # None for no floats

    if isinstance(derivative.argnums, int):
        gradients: tuple[ValueType, ...] = (gradient(derivative.argnums),)
    else:
        gradients = tuple(gradient(index) for index in derivative.argnums)
    if not derivative.with_value and not derivative.has_aux:
        return gradients, not isinstance(derivative.argnums, int)
    one_gradient = gradients[0] if isinstance(derivative.argnums, int) else _ANY_TREE
    if not derivative.with_value:
        aux = loss[1] if len(loss) == 2 else _ANY_TREE
        return (one_gradient, aux), True
    value = _ANY_TREE if derivative.has_aux else loss[0]
    return (value, one_gradient), True


class UnresolvedAnnotation(NameError):
    """An annotation names something not defined (yet): maybe a forward reference."""


def _refuse_unannotated_wrapped(fn: Any, name: str, signature: inspect.Signature) -> None:
    """A wrapper of a function with no annotations at all can never be batched: say what to annotate."""
    chain = _wrapper_chain(fn)
    if not chain:
        return  # a plain function: the plan says what its spec lacks
    first = next(iter(signature.parameters))
    raise SpecError(
        f"{name}: the function that {' inside '.join(reversed(chain))} wraps has no annotations, so shapedmap "
        f"cannot tell which parameters are arrays or what their per-example shapes are. Annotate "
        f"the parameters and the return value of {name} itself (the function the wrapper is made "
        f"from), like {first}: Float[Array, 'n'] and -> Float[Array, '']."
    )


def resolved_hints(fn: Any, name: str) -> dict[str, Any]:
    """``fn``'s annotations, resolved (``typing.get_type_hints``).

    Read from ``contract_function(fn)``: through partials, ``jax.jit``, ``custom_jvp``/``custom_vjp``
    and other ``__wrapped__`` wrappers; a callable object's from its class's ``__call__``; a
    function that wraps a partial with none of its own (``jax.grad(partial(loss, w))``) the
    partial's function's.
    """
    target = contract_function(fn)
    wrapped = getattr(target, "__wrapped__", None) if inspect.isfunction(target) else None
    if isinstance(wrapped, functools.partial) and not target.__annotations__:
        # functools.wraps (and jax.grad's) copies no annotations from a partial, which has none
        target = contract_function(wrapped)
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        target = type(target).__call__  # a callable object: its __call__ carries the hints
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError as error:
        raise UnresolvedAnnotation(
            f"{name}: cannot resolve its annotations (NameError: {error}). Annotations that name "
            "something local to a function cannot be resolved under 'from __future__ import "
            "annotations'; move the alias to module level."
        ) from None
    except Exception as error:  # TypeError, SyntaxError from user annotations
        raise SpecError(f"{name}: cannot resolve its annotations ({type(error).__name__}: {error})") from None


def _classify_return(hint: Any, name: str, derivative: Derivative | None) -> tuple[tuple[ValueType, ...], bool]:
    """What ``fn`` returns by its annotation (a differentiated function's: what the loss returns)."""
    where = f"{name}: the return annotation"
    if hint is inspect.Parameter.empty:
        return (ValueType("tree", ArrayType(_ANY_SHAPE)),), False
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
        return ValueType("tree", ArrayType(_ANY_SHAPE), hint=hint)
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
            return ValueType("tree", ArrayType(_ANY_SHAPE), hint=hint, structure=getattr(hint, "structure", None))
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
        return ValueType("array", ArrayType(_ANY_SHAPE, array_type=hint), hint=hint)
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
        return ValueType("array", ArrayType(_ANY_SHAPE, array_type=jax.Array), optional, hint)
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
    first = values[0].array if not alternatives else ArrayType(_ANY_SHAPE)
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


def _array_type(hint: Any, where: str) -> ArrayType:
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


def hint_text(hint: Any) -> str:
    """A readable hint: ``Float[Array, 'n']`` rather than ``jaxtyping.Float[jaxlib._jax.Array, 'n']``."""
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        dtype = getattr(hint.dtype, "__name__", "Shaped")
        array = _array_type_text(hint.array_type)
        return f"{dtype}[{array}, {hint.dim_str!r}]"
    if isinstance(hint, type):
        return hint.__qualname__ if hint.__module__ == "builtins" else f"{hint.__module__}.{hint.__qualname__}"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join("None" if arg is type(None) else hint_text(arg) for arg in typing.get_args(hint))
    text = repr(hint)
    return text.replace("jaxlib._jax.Array", "Array").replace("jaxtyping.", "")


def _array_type_text(array_type: Any) -> str:
    if array_type is jax.Array:
        return "Array"
    if array_type is np.ndarray:
        return "np.ndarray"
    if array_type is Any:
        return "Any"
    return getattr(array_type, "__name__", repr(array_type))
