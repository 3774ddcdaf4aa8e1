"""Sizes by name for one call: every named dim's size, and where it was first seen.

``Bindings.bind`` matches one array against its layout; a size that disagrees with one seen
before is a ``ShapeError`` naming the function, the dimension, and both places with their
shapes. Nothing here uses ``assert``: these checks must hold under ``python -O``.

Example:
    >>> bindings = Bindings("message_passing")
    >>> bindings.bind(parse_layout("graph node node"), jnp.ones((5, 7, 7)), "argument 'a'")
    >>> bindings.bind(parse_layout("graph node feat"), jnp.ones((4, 7, 2)), "argument 'f'")
    Traceback (most recent call last):
    ...
    shapedmap.ShapeError: message_passing: dimension 'graph' has size 5 in argument 'a' (axis 0 of f32[5,7,7])
    but size 4 in argument 'f' (axis 0 of f32[4,7,2])
      argument 'f' has layout 'graph node feat': expected (graph=5, node=7, feat), got f32[4,7,2]
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jax
import numpy as np

from ._errors import ShapeError, describe_array, describe_value
from ._grammar import (
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

__all__ = ["Bindings", "Origin"]


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
