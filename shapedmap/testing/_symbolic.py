"""The arguments of one symbolic trace: one ``jax.export`` symbol per dim name, read off the plan.

A ``Case`` says what one trace of ``verify`` varies: the rank of every ``*name`` dim, which
``#`` dims are 1, a ``*batch`` argument given size-1 or missing leading dims, the dtype of an
argument, optional arrays left out, names unified into one symbol and ``jax.export``
constraints. ``arguments`` turns a plan and a case into one value per parameter:
``jax.ShapeDtypeStruct`` leaves whose sizes are symbols named as the dims are (``n``, ``graph``,
``batch_0``), fixed dims as ints, expressions (``2*f``, ``n+1``) computed with JAX's symbolic
arithmetic, static parameters from their defaults or from ``given``.

Nothing here needs Hypothesis: a PyTree argument gets the smallest structure its annotation
admits (``Skeleton``), and what cannot be built (a static parameter without default, a class
instance, a non-array item of a tuple) is a ``NeedsValue`` naming the parameter and ``given=``.

Example:
    >>> from shapedmap.examples import message_passing
    >>> from shapedmap._plan import plan_of
    >>> built = arguments(plan_of(message_passing), Case("all distinct"), {})
    >>> [value.shape for value in built.values]
    [(graph, node, node), (graph, node, feat)]
    >>> built = arguments(plan_of(message_passing), Case("one", unified=(("feat", "node"),)), {})
    >>> [value.shape for value in built.values]
    [(graph, node, node), (graph, node, node)]
"""

from __future__ import annotations

import collections.abc
import inspect
import keyword
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import AbstractArray, PyTree

from .._grammar import AnonymousDim, FixedDim, Layout, NamedDim, SymbolicDim, VariadicDim, parse_layout
from .._plan import Argument, Plan

__all__ = ["Built", "Case", "NeedsValue", "arguments", "dim_names", "dtype_choices"]

_RESERVED = frozenset({"min", "max", "mod", "floordiv", "non_negative", "abs"})  # JAX's operators in symbol text
_COMMON_DTYPES = ("float32", "int32", "bool", "complex64", "uint32")
_COMMON_DTYPES_X64 = ("float64", "int64", "complex128", "uint64")
_OTHER_DTYPES = ("float16", "bfloat16", "int8", "int16", "uint8", "uint16")
KEY = "key"


class NeedsValue(ValueError):
    """A parameter ``verify`` cannot make a value for: give one with ``given={name: value}``."""


@dataclass(frozen=True)
class Case:
    """What one trace varies (every field has the plain trace's value by default)."""

    label: str
    rank: int = 1  # of every '*name' dim, the variadic batch dim and core ones
    ones: frozenset[tuple[str, int]] = frozenset()  # (parameter, token index): a '#' dim that is 1 there
    batch_shapes: tuple[tuple[str, str], ...] = ()  # (parameter, "ones" | "shorter"): its '*batch' dims
    dtypes: tuple[tuple[str, str], ...] = ()  # (parameter, dtype name) where not the first admitted
    absent: frozenset[str] = frozenset()  # optional arrays passed as None
    unified: tuple[tuple[str, str | int], ...] = ()  # (name, what it is): one symbol for both, or a size
    constraints: tuple[str, ...] = ()  # jax.export constraints beyond the user's


@dataclass(frozen=True)
class Built:
    """One value per parameter, which of them came from a structure ``verify`` chose, and the symbols."""

    values: list[Any]
    chosen_trees: tuple[str, ...]  # PyTree parameters whose structure the annotation left open
    symbols: dict[str, Any] = field(default_factory=dict)  # by name: a symbol, or the size a case gave
    names: tuple[str, ...] = ()  # the user's dim names (not the ones made for '*', '_', '?' dims)


def dim_names(plan: Plan) -> tuple[str, ...]:
    """The dim names of the array parameters, in first-seen order (expressions' names included).

    Example:
        >>> from shapedmap.examples import message_passing
        >>> from shapedmap._plan import plan_of
        >>> dim_names(plan_of(message_passing))
        ('graph', 'node', 'feat')
    """
    found: dict[str, None] = {}
    for argument in plan.arguments:
        if argument.placement is not None:
            found.update(dict.fromkeys(dim_names_of(argument.placement.batched)))
    return tuple(found)


def dtype_choices(argument: Argument) -> tuple[str, ...]:
    """One dtype per family the annotation admits, most common first (a PRNG key as ``"key"``).

    Example:
        >>> from shapedmap.examples import message_passing
        >>> from shapedmap._plan import plan_of
        >>> dtype_choices(plan_of(message_passing).arguments[0])
        ('float32',)
    """
    array = argument.value.array
    if array is None or array.dtypes is None:
        return ("float32",)
    common = _COMMON_DTYPES + (_COMMON_DTYPES_X64 if jax.config.read("jax_enable_x64") else ())
    admitted = tuple(name for name in common if array.admits_dtype(jnp.dtype(name)))
    if admitted:
        return admitted
    if array.admits_dtype(_key_dtype()):
        return (KEY,)
    others = tuple(name for name in _OTHER_DTYPES if array.admits_dtype(jnp.dtype(name)))
    if others:
        return others[:1]
    raise NeedsValue(
        f"the parameter '{argument.name}' admits {array.dtype_description()} dtypes only, none of which "
        f"verify makes; give a value: given={{{argument.name!r}: ...}} (a jax.ShapeDtypeStruct will do)"
    )


def _key_dtype() -> Any:
    return jax.eval_shape(lambda: jax.random.key(0)).dtype


def arguments(plan: Plan, case: Case, given: dict[str, Any], constraints: tuple[str, ...] = ()) -> Built:
    """One value per parameter for ``case``: symbolic arrays, given values and static defaults.

    A value given for an array parameter gives its PyTree structure: each leaf becomes a symbolic
    array of the parameter's layout, with the leaf's dtype (and, for a ``...`` or ``*name`` dim, its rank).
    """
    builder = _Builder(plan, case, given)
    leaves = {
        argument.name: builder.leaves_of(argument)
        for argument in plan.arguments
        if argument.placement is not None and argument.name not in case.absent
    }
    symbols = builder.symbols(tuple(constraints) + case.constraints)
    values: list[Any] = []
    for argument in plan.arguments:
        if argument.placement is None:
            values.append(given[argument.name] if argument.name in given else _static(argument))
        elif argument.name in case.absent:
            values.append(None)
        else:
            default = _dtype(argument, case)
            arrays = [
                jax.ShapeDtypeStruct(builder.resolve(tokens, symbols), dtype or default)
                for tokens, dtype in leaves[argument.name]
            ]
            values.append(jax.tree.unflatten(builder.treedefs[argument.name], arrays))
    return Built(values, tuple(builder.chosen), symbols, tuple(builder.user_names))


def _static(argument: Argument) -> Any:
    if argument.default is not inspect.Parameter.empty:
        return argument.default
    if argument.kind is inspect.Parameter.VAR_POSITIONAL:
        return ()
    if argument.kind is inspect.Parameter.VAR_KEYWORD:
        return {}
    what = "an instance" if argument.name in ("self", "cls") else "a value"
    raise NeedsValue(
        f"the static parameter '{argument.name}' has no default, so verify has nothing to trace it with; "
        f"give {what}: given={{{argument.name!r}: ...}}"
        + (" (or verify the method of an instance: verify(obj.method))" if argument.name == "self" else "")
    )


def _dtype(argument: Argument, case: Case) -> Any:
    name = dict(case.dtypes).get(argument.name) or dtype_choices(argument)[0]
    return _key_dtype() if name == KEY else jnp.dtype(name)


@dataclass(frozen=True)
class _Leaf:
    """Where an array goes in a structure: with the layout its own annotation gives (a tuple's
    ``Float[Array, "n"]``), the dtype and rank of a given leaf, or nothing more."""

    layout: Layout | None = None
    dtype: Any = None
    rank: int | None = None


_LEAF = _Leaf()


def _is_leaf(value: Any) -> bool:
    return isinstance(value, _Leaf)


class _Builder:
    """Shapes as tokens first (names, ints, expressions), then symbols for every name at once."""

    def __init__(self, plan: Plan, case: Case, given: dict[str, Any]) -> None:
        self.plan, self.case, self.given = plan, case, given
        self.user_names: dict[str, None] = dict.fromkeys(dim_names(plan))
        self.names: dict[str, None] = dict(self.user_names)
        self.unified = dict(case.unified)
        self.chosen: list[str] = []
        self.structures: dict[str, Any] = {}
        self.treedefs: dict[str, Any] = {}
        self.statics = {
            argument.name: given.get(argument.name, argument.default)
            for argument in plan.arguments
            if argument.placement is None
        }
        self.fresh = 0

    def _name(self, stem: str) -> str:
        self.fresh += 1
        name = f"{stem}_{self.fresh}"
        self.names.setdefault(name)
        return name

    def leaves_of(self, argument: Argument) -> list[tuple[list[Any], Any]]:
        """Token shape and dtype (None: the case's) of each leaf of the argument; its treedef kept."""
        skeleton = self._skeleton_of(argument)
        leaves, self.treedefs[argument.name] = jax.tree.flatten(skeleton, is_leaf=_is_leaf)
        return [(self._leaf_tokens(argument, leaf), leaf.dtype) for leaf in leaves]

    def _skeleton_of(self, argument: Argument) -> Any:
        value = argument.value
        if argument.name in self.given:
            return jax.tree.map(_given_leaf, self.given[argument.name])
        if argument.kind is inspect.Parameter.VAR_POSITIONAL:
            return (_LEAF,)
        if argument.kind is inspect.Parameter.VAR_KEYWORD:
            return {"extra": _LEAF}
        if value.kind == "array":
            return _LEAF
        if value.structure is not None and value.structure in self.structures:
            return self.structures[value.structure]
        skeleton, open_structure = _skeleton(value.hint, argument.name)
        if open_structure:
            self.chosen.append(argument.name)
        if value.structure is not None:
            self.structures[value.structure] = skeleton
        return skeleton

    def _leaf_tokens(self, argument: Argument, leaf: _Leaf) -> list[Any]:
        placement = argument.placement
        dims = list(placement.batched.dims)
        if leaf.layout is not None and placement.per_example.dims == (VariadicDim(None),):
            # 'b ...' over a tuple of annotated arrays: each leaf has its own annotation's dims.
            at = next(index for index, dim in enumerate(dims) if dim == VariadicDim(None))
            dims[at : at + 1] = leaf.layout.dims
            for name in dim_names_of(leaf.layout):
                self.user_names.setdefault(name)
                self.names.setdefault(name)
        rank = self.case.rank
        if leaf.rank is not None and any(isinstance(dim, VariadicDim) for dim in dims):
            rank = max(0, leaf.rank - (len(dims) - 1))
        per_leaf: dict[str, str] = {}
        tokens: list[Any] = []
        for index, dim in enumerate(dims):
            if (argument.name, index) in self.case.ones:
                tokens.extend([1] * (rank if isinstance(dim, VariadicDim) else 1))
            elif isinstance(dim, NamedDim) and dim.treepath:
                tokens.append(per_leaf.setdefault(dim.name, self._name(dim.name)))
            elif isinstance(dim, NamedDim):
                tokens.append(dim.name)
            elif isinstance(dim, FixedDim):
                tokens.append(dim.size)
            elif isinstance(dim, SymbolicDim):
                tokens.append(dim)
            elif isinstance(dim, AnonymousDim):
                tokens.append(self._name("anonymous"))
            elif dim.name is not None and dim.name == placement.variadic_batch:
                tokens.extend(self._batch_tokens(argument.name, dim.name))
            elif dim.name is not None and not dim.treepath:
                components = [f"{dim.name}_{i}" for i in range(rank)]  # one shape per name
                self.names.update(dict.fromkeys(components))
                tokens.extend(components)
            else:
                stem = dim.name or "ellipsis"
                tokens.extend(self._name(stem) for _ in range(rank))
        return tokens

    def _batch_tokens(self, parameter: str, name: str) -> list[Any]:
        rank = self.case.rank
        tokens: list[Any] = [f"{name}_{i}" for i in range(rank)]
        self.names.update(dict.fromkeys(tokens))
        kind = dict(self.case.batch_shapes).get(parameter)
        if kind == "ones":
            return [1] * rank
        return tokens[1:] if kind == "shorter" else tokens

    def symbols(self, constraints: tuple[str, ...]) -> dict[str, Any]:
        """One symbol per name (unified names share one), in one scope with the constraints."""
        texts = {name: _symbol_text(name) for name in self.names if name not in self.unified}
        symbols: dict[str, Any] = {}
        if texts:
            scope = jax.export.SymbolicScope(tuple(constraints))
            created = jax.export.symbolic_shape(", ".join(texts.values()), scope=scope)
            symbols = dict(zip(texts, created, strict=True))
        for name, target in self.unified.items():
            symbols[name] = target if isinstance(target, int) else symbols[target]
        return symbols

    def resolve(self, tokens: list[Any], symbols: dict[str, Any]) -> tuple[Any, ...]:
        shape = []
        for token in tokens:
            if isinstance(token, SymbolicDim):
                token = token.evaluate(symbols, self.statics)
            elif isinstance(token, str):
                token = symbols[token]
            shape.append(token)
        return tuple(shape)


def _given_leaf(leaf: Any) -> _Leaf:
    """A leaf of a given structure: its dtype and rank, where it has them."""
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    return _Leaf(None, dtype, len(shape) if isinstance(shape, tuple) else None)


def dim_names_of(layout: Layout) -> tuple[str, ...]:
    """The names of a layout's named dims and expressions, in order."""
    found: dict[str, None] = {}
    for dim in layout.dims:
        if isinstance(dim, NamedDim) and not dim.treepath:
            found.setdefault(dim.name)
        elif isinstance(dim, SymbolicDim):
            found.update(dict.fromkeys(sorted(dim.names())))
    return tuple(found)


def _symbol_text(name: str) -> str:
    """The symbol for a dim name: the name itself where JAX reads it back as one."""
    if name.isidentifier() and name.isascii() and not keyword.iskeyword(name) and name not in _RESERVED:
        return name
    return "d_" + "".join(character if character.isalnum() else "_" for character in name.encode().hex())


def _skeleton(hint: Any, parameter: str) -> tuple[Any, bool]:
    """The smallest structure ``hint`` admits, and whether the annotation leaves the structure open.

    ``PyTree[...]`` is one leaf, ``dict[str, ...]`` two keys, ``list``/``tuple[x, ...]`` two
    items: a body that reads named entries of an open structure needs ``given=``.
    """
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    origin, items = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        members = [member for member in items if member is not type(None)]
        return _skeleton(members[0], parameter)
    if hint is None or hint is jax.Array or hint is np.ndarray:
        return _LEAF, False
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        try:
            return _Leaf(parse_layout(hint.dim_str)), False
        except Exception:  # a dim string shapedmap's planner would have refused already
            return _LEAF, False
    if isinstance(hint, type) and issubclass(hint, PyTree):
        return _LEAF, True
    if origin is tuple:
        if len(items) == 2 and items[1] is Ellipsis:
            child, _ = _skeleton(items[0], parameter)
            return (child, child), True
        children = [_skeleton(item, parameter) for item in items]
        return tuple(child for child, _ in children), any(open_ for _, open_ in children)
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        child, _ = _skeleton(items[0], parameter) if items else (_LEAF, True)
        return [child, child], True
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        child, _ = _skeleton(items[1], parameter) if len(items) == 2 else (_LEAF, True)
        return {"a": child, "b": child}, True
    raise NeedsValue(
        f"the parameter '{parameter}' holds {getattr(hint, '__name__', hint)}, which verify cannot make; "
        f"give a value: given={{{parameter!r}: ...}}"
    )
