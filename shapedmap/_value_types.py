"""What a parameter or a result of a per-example function may hold, as its annotation says.

``ValueType`` is one value: an array (``ArrayType``: its admitted dtypes and per-example
``Layout``), a PyTree of such arrays, or a static (non-array) value. ``ParameterType`` and
``FunctionTypes`` hold them for a whole function. These are immutable descriptions:
``_annotations`` reads them from type hints, ``_transforms`` from the transform that made a
function, and the plan places their layouts.

Example:
    >>> array = ArrayType(parse_layout("n"), Float, dtypes=("float16", "float32"))
    >>> array.admits_dtype(jnp.dtype("float32")), array.admits_dtype(jnp.dtype("int32")), array.dtype_description()
    (True, False, 'Float')
    >>> array.with_layout(parse_layout("b n")).__name__
    "Float[Array, 'b n']"
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jaxtyping import AbstractArray, PyTree, Shaped

from ._grammar import FixedDim, Layout, parse_layout

__all__ = [
    "ANY_SHAPE",
    "ANY_TREE",
    "ArrayType",
    "FunctionTypes",
    "ParameterType",
    "ValueType",
    "array_type_text",
    "dtype_name",
    "hint_text",
    "instance_class",
    "public_path",
]

ANY_SHAPE = parse_layout("...")


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
        name = f"{each.__name__}[{array_type_text(array_type)}, {layout!r}]"
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

    @property
    def takes_layout(self) -> bool:
        """Unannotated or annotated ``Any``: a layout ``layouts=``/``out=`` gives makes it an array value
        (a PyTree of arrays, each leaf with that layout); without one a parameter is static and a result
        any PyTree of arrays."""
        return (self.hint is None or self.hint is Any) and (self.array is None or self.array == _ANY_ARRAY)

    @functools.cached_property
    def instances(self) -> tuple[type, bool] | None:
        """The class ``hint`` asks its values to be, and whether PyTrees of them (``PyTree[Params]``)."""
        return instance_class(self.hint)


def instance_class(hint: Any) -> tuple[type, bool] | None:
    """The class ``hint`` asks for, and whether as ``PyTree[cls]`` (cls or any PyTree of them); else None.

    A class is one of the user's (not a builtin, an array type or ``Any``), alone, optional, or in
    ``PyTree[...]``: ``Params``, ``Params | None``, ``PyTree[Params]``.
    """
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(hint) if member is not type(None)]
        if len(members) != 1:
            return None
        (hint,) = members
    tree = isinstance(hint, type) and issubclass(hint, PyTree) and hint is not PyTree
    cls = getattr(hint, "leaftype", None) if tree else hint
    if not isinstance(cls, type) or cls is typing.Any or cls.__module__ == "builtins":
        return None
    if issubclass(cls, AbstractArray | jax.Array | np.ndarray | np.generic):
        return None
    return cls, tree


@dataclass(frozen=True)
class ParameterType:
    """A parameter of the per-example function.

    ``bound`` names the partial that binds its value (``"functools.partial"``), None otherwise: a
    bound keyword's ``default`` is the bound value, as ``inspect.signature`` shows a partial.
    """

    name: str
    kind: inspect._ParameterKind
    default: Any
    value: ValueType
    bound: str | None = None


@dataclass(frozen=True)
class FunctionTypes:
    """Everything the annotations of a function say, in signature order.

    ``outputs`` holds one ``ValueType`` per element when the function returns a fixed-size
    tuple (``returns_tuple``), else a single one; an unannotated return is a PyTree of
    arrays of any shape. ``fixed`` are the values a partial binds that are no parameter of the
    partial: its positionals (and the keywords ``equinox.Partial`` binds), each with its value as
    ``default``.
    ``wrapped_in``: for a wrapper (``jax.jit``…) of a function with no
    annotations at all, how messages name the wrappers (``"jax.jit"``), else empty.
    """

    name: str
    signature: inspect.Signature
    parameters: tuple[ParameterType, ...]
    outputs: tuple[ValueType, ...]
    returns_tuple: bool
    fixed: tuple[ParameterType, ...] = ()  # values a partial binds that leave the signature (default: the value)
    wrapped_in: str = ""


def array_type_text(array_type: Any) -> str:
    if array_type is jax.Array:
        return "Array"
    if array_type is np.ndarray:
        return "np.ndarray"
    if array_type is Any:
        return "Any"
    return getattr(array_type, "__name__", repr(array_type))


_ANY_ARRAY = ArrayType(ANY_SHAPE)
ANY_TREE = ValueType("tree", _ANY_ARRAY)  # what an unannotated function returns


def hint_text(hint: Any) -> str:
    """A readable hint: ``Float[Array, 'n']`` rather than ``jaxtyping.Float[jaxlib._jax.Array, 'n']``."""
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        dtype = getattr(hint.dtype, "__name__", "Shaped")
        array = array_type_text(hint.array_type)
        return f"{dtype}[{array}, {hint.dim_str!r}]"
    if isinstance(hint, type):
        return hint.__qualname__ if hint.__module__ == "builtins" else public_path(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join("None" if arg is type(None) else hint_text(arg) for arg in typing.get_args(hint))
    text = repr(hint)
    return text.replace("jaxlib._jax.Array", "Array").replace("jaxtyping.", "")


def public_path(cls: type) -> str:
    """Where users import ``cls`` from: ``equinox.nn.Dropout``, not ``equinox.nn._dropout.Dropout``.

    The longest prefix of its module without a private part (``_name``) that exports the class
    itself; its own module path when none does.

    Example:
        >>> import collections
        >>> public_path(collections.OrderedDict)
        'collections.OrderedDict'
        >>> from concurrent.futures import Future
        >>> public_path(Future)  # defined in concurrent.futures._base
        'concurrent.futures.Future'
    """
    module, qualname = cls.__module__, cls.__qualname__
    parts = module.split(".")
    public = next((i for i, part in enumerate(parts) if part.startswith("_")), len(parts))
    if public == len(parts):
        return f"{module}.{qualname}"
    for end in range(public, 0, -1):
        prefix = ".".join(parts[:end])
        found: Any = sys.modules.get(prefix)
        for name in qualname.split("."):
            found = getattr(found, name, None)
        if found is cls:
            return f"{prefix}.{qualname}"
    return f"{module}.{qualname}"
