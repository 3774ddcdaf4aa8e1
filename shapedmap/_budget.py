"""A ``Budget`` settled: the chunk a call's compiled temporary memory allows, found by compiling it.

``settled`` replaces the nest's ``Budget`` by a number of examples: the whole batch if its
compiled call needs at most the budget's bytes of temporary memory (XLA's
``memory_analysis().temp_size_in_bytes``), else the largest power of two below the batch size
that does. XLA's temporary memory does not always grow with the chunk (a chunk of 2 can need
more than one of 4), so no power is skipped: they are compiled from the largest down, and the
first that fits is the answer: 1 + ceil(log2(n / k)) compilations for a batch of n that settles
on k. A batch of one example is measured like any other; an empty batch runs nothing and is not
measured.

The choice is remembered per ``signature``: what the compiled call depends on. A call whose
values cannot be keyed (an unhashable object among its static values) is settled again, and so
is one with an object made afresh for each call (keyed by a weak reference to it, so never kept).

Example:
    >>> from shapedmap import batched
    >>> from shapedmap._plan import plan_of
    >>> def scaled(x: Float[Array, "n"], config: dict) -> Float[Array, "n"]:
    ...     return x * config["scale"]
    >>> plan = plan_of(batched(scaled, "b"))
    >>> signature(plan, [jnp.ones((4, 3)), {"scale": 2}])[1]
    (PyTreeDef({'scale': *}), (<class 'int'>, 2))
    >>> signature(plan, [jnp.ones((4, 3)), {"scale": 2}]) == signature(plan, [jnp.ones((4, 3)), {"scale": 3}])
    False
"""

from __future__ import annotations

import dataclasses
import functools
import types
import weakref
from collections.abc import Callable, Hashable
from typing import Any, cast

import jax
import numpy as np

from . import _map_messages as messages
from ._errors import SpecError
from ._levels import Budget, VmapNest, level_sizes
from ._plan import Plan

__all__ = ["settled", "signature"]

# Static values kept by value in a key: small, immutable, and equal only when they are the same value.
_PLAIN = (bool, int, float, complex, str, bytes, type(None), np.generic)
_SMALL = 64  # arrays of at most this many elements are keyed by their values


def settled(plan: Plan, nest: VmapNest, values: list[Any], trace: Callable[[VmapNest], Any]) -> VmapNest:
    """``nest`` with its ``Budget`` settled for ``values`` (one per parameter); ``trace(candidate)``
    traces the call with a candidate nest under ``jax.jit`` (the body's own errors are the call's)."""
    depth = next((depth for depth, level in enumerate(nest.levels) if isinstance(level.chunk, Budget)), None)
    if depth is None:
        return nest
    key = signature(plan, values)
    if key is None:
        return _search(plan, nest, values, depth, trace)
    return plan.memo(("chunk", nest, key), lambda: _search(plan, nest, values, depth, trace))


def signature(plan: Plan, values: list[Any]) -> Hashable | None:
    """What the compiled call depends on, or None when some value cannot be keyed.

    Arrays by their abstract types and structure; every other value as a PyTree: its structure,
    plain leaves (numbers, strings) by type and value, small arrays (up to 64 elements: a value
    read as a size) by their values and larger ones (weights) by shape and dtype, a bound method by its object
    and function, a partial by its function and arguments, and any other object by a weak
    reference (equal while both are alive and equal; never kept alive).
    Never a type or a hash alone: two values that compile to different programs never share a key.
    """
    parts: list[Any] = []
    try:
        for index, value in enumerate(values):
            leaves, treedef = jax.tree_util.tree_flatten(value)
            if index in plan.array_arguments:
                parts.append((treedef, *(jax.typeof(leaf) for leaf in leaves)))
            else:
                parts.append((treedef, *(_static_leaf(leaf) for leaf in leaves)))
        key = tuple(parts)
        hash(key)
    except TypeError:  # an unhashable structure or object, or one that cannot be weakly referenced
        return None
    return key


def _static_leaf(leaf: Any) -> Any:
    """One leaf of a static value, as a key: what of it can change the compiled call."""
    if isinstance(leaf, jax.core.Tracer):  # under a transform around the call: only its type is known
        return jax.typeof(leaf)
    if isinstance(leaf, jax.Array | np.ndarray):
        if leaf.size > _SMALL:  # weights: the program depends on their shape, not on their values
            return (type(leaf), jax.typeof(leaf))
        # A small array may be read as a size (``int(config["copies"])``): keyed by its values.
        return (type(leaf), jax.typeof(leaf), np.asarray(leaf).tobytes())
    if isinstance(leaf, _PLAIN) or (type(leaf) is frozenset and all(isinstance(item, _PLAIN) for item in leaf)):
        return (type(leaf), leaf)
    if isinstance(leaf, types.MethodType):  # made afresh at each attribute access: its object and function
        return (types.MethodType, _static_leaf(leaf.__self__), _static_leaf(leaf.__func__))
    if isinstance(leaf, functools.partial):
        keywords = tuple((name, _static_leaf(value)) for name, value in sorted(leaf.keywords.items()))
        return (type(leaf), _static_leaf(leaf.func), tuple(map(_static_leaf, leaf.args)), keywords)
    # An object made afresh for each call never meets its dead reference again: settled again.
    return weakref.ref(leaf)


def _search(plan: Plan, nest: VmapNest, values: list[Any], depth: int, trace: Callable[[VmapNest], Any]) -> VmapNest:
    level = nest.levels[depth]
    budget = cast(Budget, level.chunk).bytes
    mapped = [values[i] for i in plan.array_arguments]
    symbolic = _symbolic_shape(mapped)
    if symbolic is not None:
        raise SpecError(messages.budget_on_symbolic_shapes(plan, level, symbolic))
    size = level_sizes(nest.levels, mapped)[depth]

    def with_chunk(chunk: int) -> VmapNest:
        levels = list(nest.levels)
        levels[depth] = dataclasses.replace(level, chunk=chunk)
        return dataclasses.replace(nest, levels=tuple(levels))

    if not size:  # an empty batch runs nothing: no memory to measure
        return with_chunk(1)
    needed = 0
    for chunk in (size, *_powers_of_two_below(size)):  # the whole batch first, then from the largest down
        traced = trace(with_chunk(chunk))
        try:
            needed = traced.lower().compile().memory_analysis().temp_size_in_bytes
        except Exception as error:
            raise SpecError(messages.budget_unmeasurable(plan, level, chunk, error)) from error
        if needed <= budget:
            return with_chunk(chunk)
    raise SpecError(messages.budget_unmet(plan, level, budget, size, needed))


def _powers_of_two_below(size: int) -> list[int]:
    """``[2**k, ..., 2, 1]`` for the largest ``2**k < size``."""
    return [2**k for k in reversed(range((size - 1).bit_length()))]


def _symbolic_shape(mapped: list[Any]) -> tuple[Any, ...] | None:
    """The first shape among the arrays that ``jax.export`` left symbolic (None: all known)."""
    for leaf in jax.tree.leaves(mapped):
        shape = tuple(getattr(leaf, "shape", ()))
        if not all(isinstance(size, int) for size in shape):
            return shape
    return None
