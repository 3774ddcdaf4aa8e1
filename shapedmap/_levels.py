"""Where batch dims sit in a layout, and the ``jax.vmap`` levels that follow from it.

A ``Placement`` records which tokens of a batched layout are batch dims; the other tokens
are exactly the per-example layout. ``derive_levels`` turns the placements of a plan into one
``Level`` per batch dim (outermost first): the ``in_axes`` of every array argument and the
``out_axes`` of every result, as token positions (negative when a variadic token comes
first, so one level serves any number of variadic dims).

Example:
    >>> from shapedmap._grammar import parse_layout
    >>> placement = Placement(parse_layout("n col"), parse_layout("n"), ((1, "col"),))
    >>> placement.slots()
    ('<core>', 'col')
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax

from ._grammar import FixedDim, Layout, VariadicDim

__all__ = [
    "AxesTree",
    "Budget",
    "CallShape",
    "Level",
    "Placement",
    "SplitKey",
    "VmapNest",
    "collapsed",
    "derive_levels",
    "leaf_entries",
    "level_axes",
    "level_sizes",
    "variadic_key",
    "vmap_axes",
]

# Slot markers: a token that is not a batch dim, and a variadic token that is not one.
_CORE = "<core>"
_CORE_VARIADIC = "<core...>"


@dataclass(frozen=True)
class Placement:
    """Where the batch dims sit in one batched layout.

    ``batch`` lists ``(token index, batch name)`` pairs; the other tokens, in order, are
    exactly the per-example layout.
    """

    batched: Layout
    per_example: Layout
    batch: tuple[tuple[int, str], ...]

    treedef: ClassVar[None] = None  # one layout for the whole value (``_layout_trees.TreePlacement``: one per subtree)

    @property
    def leaves(self) -> tuple[Placement, ...]:
        """The placements of the parts of a value: this one, for all of it."""
        return (self,)

    @property
    def batch_names(self) -> tuple[str, ...]:
        """The batch names of this layout, in axis order."""
        return tuple(name for _, name in self.batch)

    @functools.cached_property
    def labels(self) -> frozenset[str]:
        """Batch names given a size in the layout (``graph=13``): bound like names."""
        return frozenset(name for index, name in self.batch if isinstance(self.batched.dims[index], FixedDim))

    @functools.cached_property
    def variadic_batch(self) -> str | None:
        """The name of a ``*batch`` token among the batch dims, if any."""
        for index, name in self.batch:
            if isinstance(self.batched.dims[index], VariadicDim):
                return name
        return None

    @functools.cached_property
    def broadcastable_batch(self) -> frozenset[str]:
        """``#graph`` batch names: an argument whose axis has size 1 is not mapped over them."""
        return frozenset(
            name for index, name in self.batch if getattr(self.batched.dims[index], "broadcastable", False)
        )

    def per_example_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape one example has inside the map: ``shape`` without its batch dims."""
        batch = {index for index, _ in self.batch}
        kept: list[int] = []
        for index, size in enumerate(self.batched.split(shape)):
            if index not in batch:
                kept.extend(size if isinstance(size, tuple) else (size,))
        return tuple(kept)

    def slots(self, variadic_length: int = 0) -> tuple[str, ...]:
        """One entry per axis kind: a level key for batch dims, else a core marker.

        A ``*batch`` token becomes ``variadic_length`` keys ``batch[0]``… (outermost first).
        """
        batch_at = dict(self.batch)
        slots: list[str] = []
        for index, dim in enumerate(self.batched.dims):
            name = batch_at.get(index)
            if name is None:
                slots.append(_CORE_VARIADIC if isinstance(dim, VariadicDim) else _CORE)
            elif isinstance(dim, VariadicDim):
                slots.extend(variadic_key(name, j) for j in range(variadic_length))
            else:
                slots.append(name)
        return tuple(slots)


@dataclass(frozen=True)
class Budget:
    """A memory budget for a chunked batch dim: ``chunk={"graph": Budget(bytes=2**30)}``.

    The chunk is then the whole batch when its compiled call needs at most ``bytes`` of temporary
    memory (XLA's ``memory_analysis().temp_size_in_bytes``), else the largest power of two below
    the batch size that does, found by compiling the call from the largest power down, once for
    each abstract signature (see the "Chunks" page of the docs). A budget that one example at a
    time exceeds is a ``SpecError``.

    Args:
        bytes: the most temporary memory the compiled call may need, in bytes.

    Example:
        >>> Budget(bytes=2**20)
        Budget(bytes=1048576)
    """

    bytes: int


@dataclass(frozen=True)
class SplitKey:
    """A layout for a PRNG key parameter: one key in, one key per example out.

    ``batched(f, "batch", layouts={"key": SplitKey()})`` takes ONE key for ``key`` (a typed
    ``jax.random.key`` or a raw ``uint32[2]`` ``jax.random.PRNGKey``, with the parameter's
    per-example shape) and gives each example its own: before mapping, the key is replaced by
    ``jax.random.split(key, batch_shape)``, where ``batch_shape`` is the size of every batch name of
    the call, outermost first, and mapped like an argument with those batch names leading. So the
    call equals the hand-written ``jax.vmap(f)(x, jax.random.split(key, n))`` (two batch names:
    ``jax.vmap(jax.vmap(f))(x, jax.random.split(key, (n, m)))``), whatever the chunk or the mesh.
    The parameter must be annotated as one key (``Key[Array, ""]``, ``PRNGKeyArray`` or
    ``UInt32[Array, "2"]``).

    Example:
        >>> import jax
        >>> from jaxtyping import Array, Float, Key
        >>> from shapedmap import SplitKey, batched
        >>> def noisy(x: Float[Array, "n"], key: Key[Array, ""]) -> Float[Array, "n"]:
        ...     return x + jax.random.normal(key, x.shape)
        >>> fn = batched(noisy, "batch", layouts={"key": SplitKey()})
        >>> xs, key = jax.numpy.zeros((8, 3)), jax.random.key(0)
        >>> bool((fn(xs, key) == jax.vmap(noisy)(xs, jax.random.split(key, 8))).all())
        True
    """


def variadic_key(name: str, index: int) -> str:
    """The level key of the ``index``-th dim (outermost first) of a ``*name`` batch dim."""
    return f"{name}[{index}]"


@dataclass(frozen=True)
class Level:
    """One ``jax.vmap``: over ``axis_name``, with one axis per array argument and per result.

    ``batch_name`` is the batch dim it maps; for the dims of a ``*batch`` dim, ``index`` says
    which (0 is the outermost; those levels have no axis name). ``size`` is the ``axis_size`` to
    give ``vmap`` when no argument is mapped at this level (a batch dim only the results have).
    ``spmd_axis_name`` holds the mesh axes the level is split over (``shard=``).

    ``chunk`` (``chunk=``) makes the level a ``jax.lax.map`` over slices of that many examples,
    each slice one ``vmap`` (``_chunks.in_slices``); a ``Budget`` is settled per call
    (``_budget.settled``). A chunked level binds no axis name: a collective inside one slice could
    not see the whole batch.
    ``devices`` is how many devices its mesh axes hold (``shard=``): each maps its own shard.
    """

    batch_name: str
    axis_name: str | None
    in_axes: tuple[int | AxesTree | None, ...]
    out_axes: tuple[int | AxesTree | None, ...]
    size: int | None = None
    index: int | None = None
    spmd_axis_name: str | tuple[str, ...] | None = None
    chunk: int | Budget | None = None
    devices: int = 1

    @property
    def key(self) -> str:
        """``graph``, or ``batch[0]`` for the outermost dim of ``*batch``: what names the level."""
        return self.batch_name if self.index is None else variadic_key(self.batch_name, self.index)


@dataclass(frozen=True)
class CallShape:
    """What of a call's shapes its levels depend on: the broadcast number of ``*batch`` dims,
    how many of them each array argument has (right-aligned), and the level keys at which each
    argument has a size-1 dim that broadcasts (squeezed, not mapped)."""

    variadic_length: int
    argument_lengths: tuple[int, ...]
    squeezed: tuple[frozenset[str], ...]


@dataclass(frozen=True)
class VmapNest:
    """The nest of ``jax.vmap`` one call runs: its levels (outermost first), and the size-1 axes
    to squeeze from each array argument first (broadcast dims shared, not mapped)."""

    levels: tuple[Level, ...]
    squeeze: tuple[tuple[int, ...], ...]

    def __hash__(self) -> int:  # a key of the built vmaps on every call: hashed once
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.levels, self.squeeze))

    @functools.cached_property
    def chunked(self) -> bool:
        """Some level runs in slices (``chunk=``): its call is checked by ``_chunks.check_call``."""
        return any(level.chunk is not None for level in self.levels)


def level_axes(levels: tuple[Level, ...], position: int, rank: int, entries: Any = None) -> tuple[int | None, ...]:
    """Per level (outermost first), the axis it maps of a leaf of ``rank`` axes of the array argument at
    ``position``, counted in the whole leaf (None where the level does not map it): each level's
    ``vmap`` removes its axis for the levels inside. ``entries``: the leaf's axis at each level, where
    a layout tree gives its leaves different ones (``leaf_entries``)."""
    remaining = list(range(rank))
    axes: list[int | None] = []
    for depth, level in enumerate(levels):
        axis = level.in_axes[position] if entries is None else entries[depth]
        axes.append(remaining.pop(axis) if axis is not None and -len(remaining) <= axis < len(remaining) else None)
    return tuple(axes)


def leaf_entries(levels: tuple[Level, ...], position: int, value: Any) -> list[Any] | None:
    """Per leaf of the array argument at ``position``, its axis at each level; None when every leaf has
    the level's one axis (no layout tree)."""
    column = [level.in_axes[position] for level in levels]
    if not any(isinstance(axis, AxesTree) for axis in column):
        return None
    per_level = []
    for axes in column:
        if not isinstance(axes, AxesTree):
            per_level.append([axes] * len(jax.tree_util.tree_leaves(value)))
            continue
        subtrees = axes.treedef.flatten_up_to(value)
        per_level.append(
            [
                axis
                for axis, subtree in zip(axes.axes, subtrees, strict=True)
                for _ in jax.tree_util.tree_leaves(subtree)
            ]
        )
    return [list(leaf) for leaf in zip(*per_level, strict=True)]


def level_sizes(levels: tuple[Level, ...], mapped: list[Any]) -> list[Any]:
    """The size of each level (outermost first): its ``size``, else read off the first array argument
    (``mapped``: the array arguments) it maps; None where nothing tells."""
    sizes = [level.size for level in levels]
    for position, value in enumerate(mapped):
        leaves = jax.tree_util.tree_leaves(value)
        entries = leaf_entries(levels, position, value) if leaves else None
        for number, leaf in enumerate(leaves if entries is not None else leaves[:1]):
            shape = getattr(leaf, "shape", None)
            if shape is None:
                continue
            axes = level_axes(levels, position, len(shape), None if entries is None else entries[number])
            for depth, axis in enumerate(axes):
                if axis is not None and sizes[depth] is None:
                    sizes[depth] = shape[axis]
    return sizes


def derive_levels(
    arguments: tuple[Placement, ...],
    results: tuple[Placement, ...],
    order: tuple[str, ...],
    fixed_sizes: Mapping[str, int],
    shape: CallShape,
    chunks: Mapping[str, int | Budget] | None = None,
) -> VmapNest:
    """The levels of a plan for one shape of call.

    ``arguments`` and ``results`` are the placements of the array arguments and of the results,
    ``order`` the batch names outermost first, ``fixed_sizes`` the sizes layouts give them,
    ``chunks`` the batch names mapped in slices (``chunk=``) and their chunks.
    """
    variadic = next((p.variadic_batch for p in (*arguments, *results) if p.variadic_batch is not None), None)
    argument_slots: list[Any] = []
    squeeze = []
    for placement, length, dropped in zip(arguments, shape.argument_lengths, shape.squeezed, strict=True):
        if placement.treedef is not None:  # a layout tree: the slots of each subtree (no '*batch', no '#name')
            argument_slots.append((placement.treedef, [leaf.slots() for leaf in placement.leaves]))
            squeeze.append(())
            continue
        slots = placement.slots(length)
        if placement.variadic_batch is not None:
            # Right-align this argument's batch dims with the broadcast ones.
            shift = shape.variadic_length - length
            slots = tuple(_shift_key(slot, placement.variadic_batch, shift) for slot in slots)
        squeeze.append(tuple(_axis_in(slots, position) for position, slot in enumerate(slots) if slot in dropped))
        argument_slots.append(tuple(slot for slot in slots if slot not in dropped))
    result_slots = [
        (placement.treedef, [leaf.slots() for leaf in placement.leaves])
        if placement.treedef is not None
        else placement.slots(shape.variadic_length)
        for placement in results
    ]
    expanded = _expand_order(order, variadic, shape.variadic_length)
    return VmapNest(_levels(expanded, fixed_sizes, chunks or {}, argument_slots, result_slots), tuple(squeeze))


def _shift_key(slot: str, name: str, shift: int) -> str:
    prefix = f"{name}["
    if slot.startswith(prefix) and slot.endswith("]"):
        return variadic_key(name, int(slot[len(prefix) : -1]) + shift)
    return slot


def _expand_order(order: tuple[str, ...], variadic: str | None, length: int) -> tuple[tuple[str, str, int | None], ...]:
    """``(level key, batch name, index)`` per level, outermost first; ``*batch`` spans ``length`` levels."""
    expanded: list[tuple[str, str, int | None]] = []
    for name in order:
        if name == variadic:
            expanded.extend((variadic_key(name, j), name, j) for j in range(length))
        else:
            expanded.append((name, name, None))
    return tuple(expanded)


def _axis_in(slots: tuple[str, ...], position: int) -> int:
    """The axis of ``slots[position]``: negative when a core variadic comes before it."""
    if _CORE_VARIADIC in slots[:position]:
        return position - len(slots)
    return position


def _axes_at_level(slots: Any, key: str, outer: set[str]) -> Any:
    """The axis of one value at a level; for a layout tree, one per subtree, as ``jax.vmap`` takes them."""
    if isinstance(slots, tuple) and len(slots) == 2 and isinstance(slots[1], list):
        treedef, leaves = slots
        return collapsed(treedef, [_axis_at_level(leaf, key, outer) for leaf in leaves])
    return _axis_at_level(slots, key, outer)


@dataclass(frozen=True)
class AxesTree:
    """The axes of a value whose layout tree gives its subtrees different ones: ``tree`` is what
    ``jax.vmap`` takes (``{'b': 0, 'w': None}``); kept as its structure and axes, so levels hash."""

    treedef: Any
    axes: tuple[int | None, ...]

    @property
    def tree(self) -> Any:
        """The ``in_axes``/``out_axes`` entry ``jax.vmap`` takes."""
        return self.treedef.unflatten(self.axes)

    def __repr__(self) -> str:
        return repr(self.tree)


def collapsed(treedef: Any, axes: list[int | None]) -> int | AxesTree | None:
    """One axis for the whole value where every leaf of a layout tree has it, else an ``AxesTree``."""
    if all(axis == axes[0] for axis in axes):
        return axes[0] if axes else None
    return AxesTree(treedef, tuple(axes))


def vmap_axes(axes: Any) -> Any:
    """``in_axes``/``out_axes`` as ``jax.vmap`` takes them: each ``AxesTree`` as its tree."""
    if isinstance(axes, AxesTree):
        return axes.tree
    if isinstance(axes, tuple) and any(isinstance(axis, AxesTree) for axis in axes):
        return tuple(vmap_axes(axis) for axis in axes)
    return axes


def _axis_at_level(slots: tuple[str, ...], key: str, outer: set[str]) -> int | None:
    remaining = tuple(slot for slot in slots if slot not in outer)
    if key not in remaining:
        return None
    return _axis_in(remaining, remaining.index(key))


def _levels(
    order: tuple[tuple[str, str, int | None], ...],
    fixed_sizes: Mapping[str, int],
    chunks: Mapping[str, int | Budget],
    argument_slots: list[Any],
    result_slots: list[Any],
) -> tuple[Level, ...]:
    levels = []
    keys = [key for key, _, _ in order]
    for depth, (key, batch_name, index) in enumerate(order):
        outer = set(keys[:depth])
        chunk = chunks.get(key)
        levels.append(
            Level(
                # The dims of '*batch' are unnamed; a chunked name is unbound (a slice is not the batch).
                axis_name=batch_name if index is None and chunk is None else None,
                in_axes=tuple(_axes_at_level(slots, key, outer) for slots in argument_slots),
                out_axes=tuple(_axes_at_level(slots, key, outer) for slots in result_slots),
                size=fixed_sizes.get(key),
                batch_name=batch_name,
                index=index,
                chunk=chunk,
            )
        )
    return tuple(levels)
