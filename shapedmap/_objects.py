"""What the objects in a PyTree say of themselves: their class, and the shape they state.

JAX flattens an object into its arrays and rebuilds it after ``jax.vmap``; what it does not look
at, nothing else checks either:

* **The class.** A dict and a ``Params`` NamedTuple flatten into the same arrays, so an argument
  annotated ``PyTree[Params]`` that is a dict would reach the body (``params.w`` fails there),
  and a tuple returned for ``-> Params`` would come back a tuple. ``check_class`` refuses both,
  reading ``PyTree[Params]`` as jaxtyping does (instances of the class are its leaves).
* **The shape an object states.** An object that states its own shape (``batch_shape`` and
  ``event_shape``, the protocol of distrax, TFP and numpyro distributions, or ``shape``) and
  keeps it as static data comes back from ``jax.vmap`` stating one example's shape while its
  arrays gained the batch dims: every method that reads the shape (``.sample()``,
  ``.entropy()``) is then silently wrong. ``check_stated_shapes`` reads, for each such object of
  a result, the shape it states after batching and the shape it states for one example (both
  read on abstract arrays under ``jax.eval_shape``, so nothing is added to a traced program), and
  refuses it unless the first is the second with the result's batch dims where its layout puts them.

``_checks`` runs these beside its own checks; ``_messages`` words the errors.

Example:
    >>> from typing import NamedTuple
    >>> from jaxtyping import PyTree
    >>> class Params(NamedTuple):
    ...     w: Float[Array, "n"]
    >>> made_of({"w": jnp.ones(3)}, Params, tree=True), made_of([Params(jnp.ones(3))], Params, tree=True)
    (False, True)
    >>> from shapedmap._value_types import ValueType
    >>> check_class("apply", "argument 'params'", ValueType("tree", hint=PyTree[Params]), {"w": jnp.ones((4, 3))}, "params")
    Traceback (most recent call last):
    ...
    shapedmap._errors.ShapeError: apply: argument 'params' should be a Params (or a PyTree of them: it is annotated PyTree[Params]), got dict {'w': f32[4,3]}. JAX flattens both into the same arrays, but the function reads a Params (its fields, its methods): pass one, e.g. Params(**params)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from . import _messages as messages
from ._errors import ShapeError
from ._expressions import same_size
from ._grammar import VariadicDim
from ._places import leaf_place

if TYPE_CHECKING:
    from ._levels import Placement
    from ._value_types import ValueType

__all__ = ["check_class", "check_stated_shapes", "made_of"]

Shape = tuple[Any, ...]


def made_of(value: Any, cls: type, *, tree: bool) -> bool:
    """Is ``value`` a ``cls`` (``tree``: a PyTree whose every leaf is one, as jaxtyping reads ``PyTree[cls]``)?

    A class ``isinstance`` cannot check (a protocol that is not runtime-checkable) admits anything.
    """
    if not tree:
        return _is_instance(value, cls)
    leaves = jax.tree_util.tree_leaves(value, is_leaf=lambda node: _is_instance(node, cls))
    return all(_is_instance(leaf, cls) for leaf in leaves)


def check_class(function: str, place: str, value_type: ValueType, value: Any, parameter: str | None = None) -> None:
    """A ``ShapeError`` if ``value_type`` asks for a class (``Params``, ``PyTree[Params]``) ``value`` is not made of.

    ``parameter``: the parameter's name, for an argument (None for a result).
    """
    expected = value_type.instances
    if expected is not None and not made_of(value, expected[0], tree=expected[1]):
        raise ShapeError(messages.not_of_class(function, place, *expected, value, parameter))


def _is_instance(value: Any, cls: type) -> bool:
    try:
        return isinstance(value, cls)
    except TypeError:
        return True


def check_stated_shapes(function: str, bindings: Any, placement: Placement, value: Any, place: str) -> None:
    """A ``ShapeError`` for an object in a batched result whose stated shape lacks the batch dims.

    Each outermost object of ``value`` that states its shape must state, after batching, the
    shape it states for one example with the result's batch dims (sized by ``bindings``) where
    ``placement`` puts them. One whose shape reads for one example but raises once batched (a
    ``distrax.Normal`` whose scalar scale became a vector) is refused too. An object whose shape
    cannot be read on abstract arrays at all (its code needs values) cannot be judged, and passes.
    """
    batch_sizes = _batch_sizes(placement, bindings)
    if batch_sizes is None:
        return
    objects = []  # (path, node, attributes, its leaves' shapes and dtypes, its treedef)
    found = jax.tree_util.tree_flatten_with_path(value, is_leaf=lambda node: _attributes(node) is not None)[0]
    for path, node in found:
        attributes = _attributes(node)
        leaves, treedef = jax.tree_util.tree_flatten(node)
        if attributes is not None and leaves and all(hasattr(leaf, "shape") for leaf in leaves):
            objects.append((path, node, attributes, [(tuple(leaf.shape), leaf.dtype) for leaf in leaves], treedef))
    if not objects:
        return
    # Read all at once: one abstract trace, not two per object (an nnx.State holds one per Variable).
    reads = _read([(treedef, leaves, attributes) for _, _, attributes, leaves, treedef in objects])
    examples = _read(
        [
            (treedef, [(placement.per_example_shape(shape), dtype) for shape, dtype in leaves], attributes)
            for _, _, attributes, leaves, treedef in objects
        ]
    )
    for (path, node, attributes, _, _), batched, example in zip(objects, reads, examples, strict=True):
        if not isinstance(example, tuple) or batched is None:
            continue
        expected = _with_batch_dims(placement, example, batch_sizes)
        if isinstance(batched, tuple) and len(batched) == len(expected) and all(map(same_size, batched, expected)):
            continue
        where = leaf_place(place, path)
        raise ShapeError(
            messages.stated_shape_without_batch(function, where, node, attributes, batched, expected, batch_sizes)
        )


def _batch_sizes(placement: Placement, bindings: Any) -> dict[str, Shape] | None:
    """The sizes of the layout's batch dims, by name (a ``*batch`` name: its sizes), or None if one is unbound."""
    sizes: dict[str, Shape] = {}
    for index, name in placement.batch:
        if isinstance(placement.batched.dims[index], VariadicDim):
            seen = bindings.variadics.get(name)
            size = None if seen is None else seen[0]
        else:
            size = bindings.size_of(name)
            size = None if size is None else (size,)
        if size is None:
            return None
        sizes[name] = size
    return sizes


def _with_batch_dims(placement: Placement, example: Shape, batch_sizes: dict[str, Shape]) -> Shape:
    """One example's stated shape with the batch dims put where the result's layout puts them.

    A shape the per-example layout does not fit gets them in front, where ``jax.vmap`` puts them.
    """
    batch_at = dict(placement.batch)
    if not placement.per_example.admits_rank(len(example)):
        return tuple(size for name in batch_at.values() for size in batch_sizes[name]) + example
    pieces = iter(placement.per_example.split(example))
    shape: list[Any] = []
    for index in range(len(placement.batched.dims)):
        piece = batch_sizes[batch_at[index]] if index in batch_at else next(pieces)
        shape.extend(piece if isinstance(piece, tuple) else (piece,))
    return tuple(shape)


def _attributes(node: Any) -> str | None:
    """Which shape an object states: ``batch_shape + event_shape``, ``shape``, or None.

    Arrays and plain containers state none. Only the presence of the attributes is looked at here
    (a property is not run on the batched arrays: ``_read`` runs it on abstract ones).
    """
    if type(node) in (dict, list, tuple) or node is None or isinstance(node, jax.Array | np.ndarray | np.generic):
        return None
    if _has(node, "batch_shape") and _has(node, "event_shape"):
        return "batch_shape + event_shape"
    return "shape" if _has(node, "shape") else None


def _has(node: Any, name: str) -> bool:
    try:
        return hasattr(type(node), name) or name in getattr(node, "__dict__", {})
    except Exception:
        return False


def _read(objects: list[tuple[Any, list[tuple[Shape, Any]], str]]) -> list[Shape | Exception | None]:
    """The shape each object states, made by its treedef of abstract leaves of these shapes and dtypes.

    For each: the shape, the error reading it raised, or None if what it states is not a shape
    (or nothing could be read).
    """
    found: list[Shape | Exception | None] = [None] * len(objects)

    def read(arrays: list[list[Any]]) -> None:
        for index, ((treedef, _, attributes), leaves) in enumerate(zip(objects, arrays, strict=True)):
            try:
                node = jax.tree_util.tree_unflatten(treedef, leaves)
                parts = (node.batch_shape, node.event_shape) if attributes != "shape" else (node.shape,)
                found[index] = _as_shape(parts)
            except Exception as error:
                found[index] = error

    try:
        jax.eval_shape(read, [[jax.ShapeDtypeStruct(*leaf) for leaf in leaves] for _, leaves, _ in objects])
    except Exception:
        return [None] * len(objects)
    return found


def _as_shape(parts: tuple[Any, ...]) -> Shape | None:
    """The concatenated sizes of ``parts`` (tuples, ``TensorShape``s…), or None if one is no size."""
    shape: list[Any] = []
    try:
        for part in parts:
            for size in part:
                if isinstance(size, int | np.integer) and not isinstance(size, bool):
                    shape.append(int(size))
                elif jax.export.is_symbolic_dim(size):
                    shape.append(size)
                else:
                    return None
    except TypeError:  # not iterable
        return None
    return tuple(shape)
