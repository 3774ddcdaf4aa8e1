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

from . import _size_messages as messages
from ._errors import ShapeError
from ._expressions import Size, deciding_constraint, same_size
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

Shape = tuple[Size, ...]
Seen = tuple[Shape, Origin]  # a variadic's shape and where it was seen


class Bindings:
    """The sizes of one call's named dimensions, each with the place it was first seen.

    ``broadcast`` names (variadic batch dims such as ``*batch``) and ``*#name`` tokens unify
    NumPy-style; every other name must have one size everywhere (``#name`` tokens accept size 1).
    Sizes may be symbolic (``jax.export``): two are the same size where JAX can prove it.
    """

    def __init__(self, function: str, arguments: dict[str, Any] | None = None) -> None:
        self.function = function
        self.arguments = arguments or {}
        self.sizes: dict[str, tuple[Size, Origin]] = {}
        self.variadics: dict[str, Seen] = {}
        self.broadcasts: dict[str, tuple[Seen, ...]] = {}  # see _unify_variadic
        self.structures: dict[str, tuple[Any, list[str], str]] = {}
        self._symbolic: list[tuple[SymbolicDim, Size, Origin, Layout]] = []

    def snapshot(self) -> tuple[Any, ...]:
        """The bound sizes as immutable tuples: what a call with the same shapes starts from.

        Argument values (for ``{...}`` dims) are not kept: a remembered snapshot keeps nothing alive.
        """
        return tuple(tuple(table.items()) for table in (self.sizes, self.variadics, self.broadcasts, self.structures))

    @classmethod
    def restore(cls, function: str, snapshot: tuple[Any, ...]) -> Bindings:
        """Fresh bindings holding the sizes of ``snapshot``."""
        bindings = cls(function)
        sizes, variadics, broadcasts, structures = map(dict, snapshot)
        bindings.sizes, bindings.variadics, bindings.broadcasts, bindings.structures = (
            sizes,
            variadics,
            broadcasts,
            structures,
        )
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

        ``parameter`` is None for a result. Symbolic sizes, of arguments and results alike, agree only
        where JAX proves them equal, as ``jax.vmap`` and jaxtyping take them: distinct symbols are
        distinct sizes unless the ``jax.export`` constraints say otherwise, and a result size JAX cannot
        decide (``n - min(n, 3)`` for ``n-3``) is refused with the constraint that would decide it.
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

    def _bind_one(self, dim: Any, size: Size, origin: Origin, layout: Layout, labels: frozenset[str]) -> None:
        if isinstance(dim, AnonymousDim):
            return
        if getattr(dim, "broadcastable", False) and same_size(size, 1):
            return
        if isinstance(dim, FixedDim):
            if not same_size(size, dim.size):
                message = messages.fixed_size_mismatch(self.function, dim, layout, (size, origin))
                raise ShapeError(message + _note(size, dim.size))
            if dim.label in labels:
                self._unify(dim.label, size, origin, layout)
            return
        if isinstance(dim, SymbolicDim):
            self._symbolic.append((dim, size, origin, layout))
            return
        if isinstance(dim, NamedDim):
            self._unify(dim.name, size, origin, layout)

    def _unify(self, name: str, size: Size, origin: Origin, layout: Layout) -> None:
        known = self.sizes.get(name)
        if known is None:
            self.sizes[name] = (size, origin)
            return
        if not same_size(known[0], size):
            conflict = messages.size_conflict(
                self.function, name, known, (size, origin), layout, self.sizes, self.variadics
            )
            raise ShapeError(conflict + _note(known[0], size))

    def _unify_variadic(
        self,
        dim: VariadicDim,
        shape: Shape,
        origin: Origin,
        layout: Layout,
        broadcast: frozenset[str],
    ) -> None:
        """Bind ``*name`` with jaxtyping's rule, whatever the order of the arguments.

        The shapes of plain ``*name`` tokens must be equal; those of broadcasting ones (``*#name``,
        and the spec's ``*batch`` in arguments) must broadcast to them, or, while no plain token has
        been seen, with each other. ``self.broadcasts`` keeps the broadcasting shapes of a name no
        plain token has bound yet: a plain one seen later must be what each broadcasts to.
        """
        name, seen = dim.name, (shape, origin)
        known = self.variadics.get(name)
        pending = self.broadcasts.get(name)
        if name in broadcast or dim.broadcastable:
            if known is None:
                self.variadics[name], self.broadcasts[name] = seen, (seen,)
            elif pending is None:  # bound by a plain token: this shape must broadcast to it
                if not _shapes_agree(_broadcast(shape, known[0]), known[0]):
                    raise ShapeError(self._does_not_broadcast_to(name, seen, known))
            else:
                for other in pending:
                    if _broadcast(other[0], shape) is None:
                        raise ShapeError(self._do_not_broadcast(name, other, seen))
                merged = _broadcast(known[0], shape)
                if not _shapes_agree(merged, known[0]):
                    self.variadics[name] = (merged, origin if _shapes_agree(merged, shape) else known[1])
                self.broadcasts[name] = (*pending, seen)
            return
        if known is not None and pending is None:  # bound by a plain token: the same shape
            if not _shapes_agree(known[0], shape):
                conflict = messages.variadic_conflict(
                    self.function, name, known, seen, layout, self.sizes, self.variadics
                )
                raise ShapeError(conflict + _note(known[0], shape))
            return
        for other in pending or ():  # the broadcasting shapes seen before the first plain one
            if not _shapes_agree(_broadcast(other[0], shape), shape):
                raise ShapeError(self._does_not_broadcast_to(name, other, seen))
        self.broadcasts.pop(name, None)
        self.variadics[name] = seen

    def _do_not_broadcast(self, name: str, known: Seen, seen: Seen) -> str:
        message = messages.variadics_do_not_broadcast(self.function, name, known, seen)
        return message + _note(known[0], seen[0])

    def _does_not_broadcast_to(self, name: str, seen: Seen, target: Seen) -> str:
        message = messages.variadic_does_not_broadcast_to(self.function, name, seen, target)
        return message + _note(seen[0], target[0])

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
            if not same_size(expected, size):
                names = dim.names()
                used = {name: known for name, known in self.sizes.items() if name in names}
                message = messages.expression_mismatch(
                    self.function, dim.expression, layout, expected, used, (size, origin)
                )
                raise ShapeError(message + _note(expected, size))

    def size_of(self, name: str) -> Size | None:
        """The bound size of a named dimension, or None."""
        known = self.sizes.get(name)
        return None if known is None else known[0]


def _broadcast(first: Shape, second: Shape) -> Shape | None:
    """The NumPy broadcast of two shapes, or None where they do not broadcast.

    Sizes broadcast where they are the same size, or where one is 1 (a symbolic size is taken
    as not 1, as JAX takes it); ``same_size`` decides, so symbolic sizes broadcast as in JAX.
    """
    rank = max(len(first), len(second))
    first, second = (1,) * (rank - len(first)) + first, (1,) * (rank - len(second)) + second
    merged = []
    for left, right in zip(first, second, strict=True):
        if same_size(left, right) or same_size(right, 1):
            merged.append(left)
        elif same_size(left, 1):
            merged.append(right)
        else:
            return None
    return tuple(merged)


def _note(first: Size | Shape, second: Size | Shape) -> str:
    """For a conflict JAX could not decide (``a`` and ``b``): why, and the constraint that would decide it.

    ``first`` is the size known (or annotated), ``second`` the one seen; of two shapes, the last
    pair of sizes JAX cannot decide is the one explained.
    """
    pairs = zip(*(reversed(side) if isinstance(side, tuple) else (side,) for side in (first, second)), strict=False)
    undecided = next(((left, right) for left, right in pairs if same_size(left, right) is None), None)
    if undecided is None:
        return ""
    return messages.symbolic_note(*undecided, deciding_constraint(*undecided))


def _shapes_agree(first: Shape | None, second: Shape) -> bool:
    """Do two shapes (the first maybe a failed broadcast) agree: the same rank, every size provably equal?"""
    return (
        first is not None
        and len(first) == len(second)
        and all(same_size(left, right) for left, right in zip(first, second, strict=True))
    )
