"""Sizes by name for one call: every named dim's size, and where it was first seen.

``Bindings.bind`` matches one array against its layout; a size that disagrees with one seen
before is a ``ShapeError`` naming the function, the dimension, and both places with their
shapes (``_messages`` words it from the sizes and ``Origin``s). Nothing here uses ``assert``:
these checks must hold under ``python -O``.

Example:
    >>> import jax.numpy as jnp
    >>> from shapedmap._grammar import parse_layout
    >>> bindings = Bindings("message_passing")
    >>> bindings.bind(parse_layout("graph node node"), jnp.ones((5, 7, 7)), "argument 'a'")
    >>> bindings.bind(parse_layout("graph node feat"), jnp.ones((4, 7, 2)), "argument 'f'")
    Traceback (most recent call last):
    ...
    shapedmap._errors.ShapeError: message_passing: dimension 'graph' has size 5 in argument 'a' (axis 0 of f32[5,7,7])
    but size 4 in argument 'f' (axis 0 of f32[4,7,2])
      argument 'f' has layout 'graph node feat': expected (graph=5, node=7, feat), got f32[4,7,2]
    >>> bindings.size_of("graph"), bindings.size_of("node"), bindings.size_of("feat")
    (5, 7, None)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jax
import numpy as np

from . import _messages as messages
from ._errors import ShapeError
from ._grammar import (
    AnonymousDim,
    FixedDim,
    Layout,
    NamedDim,
    SymbolicDim,
    VariadicDim,
)
from ._places import Origin

__all__ = ["Bindings"]


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
        missing: list[Any] | None = None  # the batch dims of an argument passed with one example's rank
        shared: tuple[str, ...] = ()  # the batch dims an argument has but is not mapped over
        if parameter is not None:  # results come out of the map: their batch dims are never missing
            if per_example is not None and rank == per_example.min_rank and per_example.min_rank < layout.min_rank:
                missing = [dim for dim in layout.dims if dim not in per_example.dims]
            elif shared_over and rank == layout.min_rank + len(shared_over):
                shared = shared_over
        message = messages.wrong_rank(
            self.function,
            place,
            value,
            layout,
            parameter=parameter,
            per_example=per_example,
            missing=missing,
            shared_over=shared,
        )
        raise ShapeError(message)

    def _bind_one(self, dim: Any, size: int, origin: Origin, layout: Layout, labels: frozenset[str]) -> None:
        if isinstance(dim, AnonymousDim):
            return
        if getattr(dim, "broadcastable", False) and size == 1:
            return
        if isinstance(dim, FixedDim):
            if size != dim.size:
                raise ShapeError(messages.fixed_size_mismatch(self.function, dim, layout, (size, origin)))
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
        if known[0] != size:
            conflict = messages.size_conflict(
                self.function, name, known, (size, origin), layout, self.sizes, self.variadics
            )
            raise ShapeError(conflict)

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
                    messages.variadics_do_not_broadcast(self.function, name, known, (shape, origin))
                ) from None
            if merged != known_shape:
                self.variadics[name] = (merged, origin if merged == shape else known_origin)
            return
        if known_shape != shape:
            conflict = messages.variadic_conflict(
                self.function, name, known, (shape, origin), layout, self.sizes, self.variadics
            )
            raise ShapeError(conflict)

    def unify_structure(self, name: str, value: Any, place: str) -> None:
        """Values annotated ``PyTree[..., name]`` must share one tree structure."""
        paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(value)
        paths = [jax.tree_util.keystr(path) for path, _ in paths_and_leaves]
        known = self.structures.get(name)
        if known is None:
            self.structures[name] = (treedef, paths, place)
            return
        if treedef != known[0]:
            raise ShapeError(messages.structure_conflict(self.function, name, known, (treedef, paths, place)))

    # -- after all names are bound --------------------------------------------------------

    def check_symbolic(self) -> None:
        """Evaluate every pending expression (``2*f``) now that the names are bound."""
        pending, self._symbolic = self._symbolic, []
        sizes = {name: size for name, (size, _) in self.sizes.items()}
        for dim, size, origin, layout in pending:
            try:
                expected = dim.evaluate(sizes, self.arguments)
            except NameError as error:
                raise ShapeError(
                    messages.unbound_expression(self.function, dim.expression, origin.place, error)
                ) from None
            except Exception as error:
                raise ShapeError(
                    messages.expression_failed(self.function, dim.expression, origin.place, error)
                ) from None
            if expected != size:
                names = dim.names()
                used = {name: known for name, known in self.sizes.items() if name in names}
                raise ShapeError(
                    messages.expression_mismatch(self.function, dim.expression, layout, expected, used, (size, origin))
                )

    def size_of(self, name: str) -> int | None:
        """The bound size of a named dimension, or None."""
        known = self.sizes.get(name)
        return None if known is None else known[0]
