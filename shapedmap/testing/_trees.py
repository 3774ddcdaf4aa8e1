"""PyTree arguments: a skeleton drawn from the annotation, then filled with arrays.

A skeleton is the PyTree with ``LEAF`` where an array goes: ``tuple[Float[Array, "n"], ...]``
draws a tuple of 1 to 3 leaves, ``dict[str, Float[Array, "n"]]`` a small dict, a bare
``PyTree`` a small nest of tuples and dicts. ``fill`` then puts one drawn array at each leaf.

Example:
    >>> from hypothesis import find
    >>> from jaxtyping import Array, Float
    >>> smallest = find(skeleton(tuple[Float[Array, "n"], ...]), lambda structure: True)
    >>> fill(smallest, lambda: "an array")
    ('an array',)
    >>> fill((LEAF, {"a": LEAF}), lambda: 0)
    (0, {'a': 0})
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import jax
import numpy as np
from jaxtyping import AbstractArray, PyTree

from .._plan import Argument

__all__ = ["LEAF", "fill", "is_bare_tree", "skeleton", "structure_for"]

LEAF = object()  # a placeholder for an array leaf in a drawn PyTree structure


def structure_for(draw: st.DrawFn, argument: Argument, structures: dict[str, Any]) -> Any:
    """A skeleton for ``argument``; arguments annotated with the same named ``PyTree[..., "T"]``
    structure share one skeleton per example (kept in ``structures``)."""
    value = argument.value
    if argument.kind is inspect.Parameter.VAR_POSITIONAL:
        return tuple(draw(st.lists(st.just(LEAF), min_size=1, max_size=2)))
    if argument.kind is inspect.Parameter.VAR_KEYWORD:
        keys = st.sampled_from(["extra_a", "extra_b"])
        return draw(st.dictionaries(keys, st.just(LEAF), min_size=1, max_size=2))
    name = getattr(value, "structure", None)
    if name is not None:
        if name not in structures:
            structures[name] = draw(skeleton(value.hint))
        return structures[name]
    return draw(skeleton(value.hint))


_GENERIC_TREE = st.recursive(
    st.just(LEAF),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=2).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), children, min_size=1, max_size=2),
    ),
    max_leaves=3,
)


def skeleton(hint: Any) -> st.SearchStrategy[Any]:
    """A strategy of skeletons that fit the annotation ``hint``."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(skeleton(member) for member in arguments if member is not type(None)))
    if hint is None or hint is jax.Array or hint is np.ndarray:
        return st.just(LEAF)
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        return st.just(LEAF)
    if isinstance(hint, type) and issubclass(hint, PyTree):
        return _GENERIC_TREE
    if origin is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return st.lists(skeleton(arguments[0]), min_size=1, max_size=3).map(tuple)
        return st.tuples(*(skeleton(item) for item in arguments))
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return st.lists(skeleton(arguments[0]) if arguments else _GENERIC_TREE, min_size=1, max_size=3)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        child = skeleton(arguments[1]) if len(arguments) == 2 else _GENERIC_TREE
        return st.dictionaries(st.sampled_from(["a", "b", "c"]), child, min_size=1, max_size=2)
    if origin is not None or isinstance(hint, type):
        return st.from_type(hint)  # a non-array item of a container (``tuple[Float[...], int]``)
    return _GENERIC_TREE


def is_bare_tree(hint: Any) -> bool:
    """Is ``hint`` a ``PyTree[...]`` that states no structure (optional or not)?

    Example:
        >>> from jaxtyping import Array, Float
        >>> is_bare_tree(PyTree[Float[Array, "..."]] | None), is_bare_tree(dict[str, Float[Array, "n"]])
        (True, False)
    """
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(hint) if member is not type(None)]
        return len(members) == 1 and is_bare_tree(members[0])
    return skeleton(hint) is _GENERIC_TREE


def fill(structure: Any, leaf: Callable[[], Any]) -> Any:
    """``structure`` with each ``LEAF`` replaced by a fresh ``leaf()`` (a ``PyTreeDef``: at each of its leaves)."""
    if structure is LEAF:
        return leaf()
    if isinstance(structure, jax.tree_util.PyTreeDef):
        return structure.unflatten([leaf() for _ in range(structure.num_leaves)])
    if isinstance(structure, tuple):
        return tuple(fill(item, leaf) for item in structure)
    if isinstance(structure, list):
        return [fill(item, leaf) for item in structure]
    if isinstance(structure, dict):
        return {key: fill(item, leaf) for key, item in structure.items()}
    return structure
