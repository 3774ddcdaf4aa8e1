"""A layout that is a PyTree prefix of its value, as ``jax.vmap`` reads ``in_axes``/``out_axes``.

``layouts={"params": {"w": None, "b": "batch n"}}`` gives each subtree of the argument its own
layout: a ``TreePlacement`` holds the layout tree's structure (layout strings and None are its
leaves) and one ``Placement`` per leaf. ``derive_levels`` gives such a value one axis per leaf at
each level and writes it as ``jax.vmap`` takes it: one axis where every leaf has the same one
(``collapsed``), else the tree of axes (``{"w": None, "b": 0}``). The call layers reach a value's
leaves through ``placed``/``map_placed`` (one placement, or one per subtree) and ``map_axes``
(one axis, or a tree of them); a value whose tree the layout tree does not fit is named by the
path where they part (``mismatch``).

Example:
    >>> import jax.numpy as jnp
    >>> from shapedmap._grammar import parse_layout
    >>> shared = Placement(parse_layout("n"), parse_layout("n"), ())
    >>> mapped = Placement(parse_layout("b n"), parse_layout("n"), ((0, "b"),))
    >>> tree = TreePlacement.of({"w": None, "b": "b n"}, [mapped, shared])  # flattened: b, w
    >>> tree.batch_names, [jax.tree_util.keystr(path) for path in tree.paths], tree.batched
    (('b',), ["['b']", "['w']"], "{'b': 'b n', 'w': None}")
    >>> mismatch({"w": None, "b": "b n"}, {"w": jnp.ones(3)})
    ('', "a dict with keys 'b', 'w' where the value has a dict with keys 'w'")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax

from ._grammar import Layout, parse_layout
from ._levels import AxesTree, Placement

__all__ = [
    "TreePlacement",
    "is_layout_leaf",
    "map_axes",
    "map_placed",
    "mismatch",
    "placed",
    "tree_of",
    "unmapped_somewhere",
]


def is_layout_leaf(node: Any) -> bool:
    """A leaf of a layout tree: a layout string, or None (the subtree is shared)."""
    return node is None or isinstance(node, str)


def tree_of(layout: Any) -> bool:
    """``layout`` is a layout tree (a PyTree container), not one layout (a string or a parsed ``Layout``),
    None, or something else that is no PyTree node (refused as a layout, by the grammar)."""
    if is_layout_leaf(layout) or isinstance(layout, Layout):
        return False
    try:
        return not jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(layout))
    except Exception:  # a value JAX cannot flatten is no layout tree
        return False


@dataclass(frozen=True)
class TreePlacement:
    """Where the batch dims sit in each subtree of a value: ``leaves[i]`` is the placement of the
    subtree at ``paths[i]`` of the layout tree whose structure is ``treedef`` (None a leaf)."""

    treedef: Any
    leaves: tuple[Placement, ...]
    paths: tuple[tuple[Any, ...], ...]

    @staticmethod
    def of(layout: Any, placements: list[Placement]) -> TreePlacement:
        """The placement of the layout tree ``layout`` with ``placements`` (one per leaf, in flatten order)."""
        paths, treedef = jax.tree_util.tree_flatten_with_path(layout, is_leaf=is_layout_leaf)
        return TreePlacement(treedef, tuple(placements), tuple(path for path, _ in paths))

    @functools.cached_property
    def batch_names(self) -> tuple[str, ...]:
        """The batch names of every leaf's layout, in the order they first appear."""
        return tuple(dict.fromkeys(name for leaf in self.leaves for name in leaf.batch_names))

    @functools.cached_property
    def labels(self) -> frozenset[str]:
        return frozenset().union(*(leaf.labels for leaf in self.leaves))

    @property
    def per_example(self) -> Any:
        """The per-example layout: the annotation's, the same for every leaf; for an unannotated value
        whose leaves' layouts differ per example, ``...`` (each leaf is checked against its own)."""
        layouts = {leaf.per_example for leaf in self.leaves}
        return self.leaves[0].per_example if len(layouts) == 1 else parse_layout("...")

    @property
    def variadic_batch(self) -> None:
        return None  # refused in a layout tree (``_placing.place_tree``)

    @property
    def broadcastable_batch(self) -> frozenset[str]:
        return frozenset()  # refused in a layout tree

    @functools.cached_property
    def batched(self) -> str:
        """The layout tree as it is written: ``{'b': 'b n', 'w': None}``."""
        return repr(self.treedef.unflatten([str(leaf.batched) if leaf.batch else None for leaf in self.leaves]))

    def split(self, value: Any) -> list[Any]:
        """The subtree of ``value`` each leaf's layout applies to (``ValueError`` where it does not fit)."""
        return self.treedef.flatten_up_to(value)


def placed(placement: Placement | TreePlacement, value: Any) -> Iterator[tuple[Any, Any, Placement]]:
    """``(path, subtree, placement)`` for each part of ``value`` one layout applies to (the whole value
    for one ``Placement``); ``ValueError`` where a layout tree does not fit ``value``."""
    if not isinstance(placement, TreePlacement):
        yield (), value, placement
        return
    yield from zip(placement.paths, placement.split(value), placement.leaves, strict=True)


def map_placed(function: Callable[[Placement, Any], Any], placement: Placement | TreePlacement, value: Any) -> Any:
    """``function(placement, leaf)`` over every leaf of ``value``, with the placement that leaf has."""
    if not isinstance(placement, TreePlacement):
        return jax.tree.map(lambda leaf: function(placement, leaf), value)
    subtrees = [
        jax.tree.map(lambda leaf, part=part: function(part, leaf), subtree)
        for subtree, part in zip(placement.split(value), placement.leaves, strict=True)
    ]
    return placement.treedef.unflatten(subtrees)


def map_axes(function: Callable[[Any, Any], Any], axes: Any, *values: Any) -> Any:
    """``function(axis, *leaves)`` over the leaves of ``values``, ``axes`` a prefix of them as ``jax.vmap``
    reads it: one axis (or None) for everything, an ``AxesTree``, or a tuple of those (one per result)."""
    if axes is None or isinstance(axes, int):
        return jax.tree.map(lambda *leaves: function(axes, *leaves), *values)
    if isinstance(axes, AxesTree):
        treedef, leaf_axes = axes.treedef, axes.axes
    else:  # a tuple, one entry per result
        treedef = jax.tree_util.tree_structure(tuple(axes), is_leaf=lambda node: node is None)
        leaf_axes = tuple(axes)
    parts = [treedef.flatten_up_to(value) for value in values]
    return treedef.unflatten(
        [map_axes(function, axis, *subtrees) for axis, *subtrees in zip(leaf_axes, *parts, strict=True)]
    )


def unmapped_somewhere(axes: Any) -> bool:
    """Some leaf of ``axes`` (one axis, or an ``AxesTree``) is None: a value ``vmap`` leaves unmapped there."""
    return axes is None or (isinstance(axes, AxesTree) and None in axes.axes)


def mismatch(layout: Any, value: Any, path: str = "") -> tuple[str, str] | None:
    """Where the layout tree ``layout`` stops being a prefix of ``value``: ``(path, what differs)``, or None."""
    if is_layout_leaf(layout):
        return None
    layout_children, layout_def = _one_level(layout)
    value_children, value_def = _one_level(value)
    if layout_def.node_data() != value_def.node_data() or len(layout_children) != len(value_children):
        return path, f"{_node_text(layout, layout_children)} where the value has {_node_text(value, value_children)}"
    for (key, child), (_, value_child) in zip(layout_children, value_children, strict=True):
        found = mismatch(child, value_child, path + jax.tree_util.keystr((key,)))
        if found is not None:
            return found
    return None


def _one_level(node: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """The children of ``node`` with their keys (a leaf has none), and its one-level structure."""
    children, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda child: child is not node)
    if jax.tree_util.treedef_is_leaf(treedef):
        return [], treedef
    return [(path[0], child) for path, child in children], treedef


def _node_text(node: Any, children: list[tuple[Any, Any]]) -> str:
    if not children and not isinstance(node, tuple | list | dict):
        return f"a leaf ({type(node).__name__})" if node is not None else "None"
    if isinstance(node, dict):
        keys = [getattr(key, "key", key) for key, _ in children]  # in the order JAX flattens them
        return f"a dict with keys {', '.join(map(repr, keys))}" if node else "an empty dict"
    if isinstance(node, list | tuple) and type(node) in (list, tuple):
        return f"a {type(node).__name__} of {len(node)}"
    return f"a {type(node).__qualname__}"
