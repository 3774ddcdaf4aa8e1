"""PRNG keys in a plan: which annotations are one key, and ``SplitKey`` checked and placed.

A parameter annotated as one key (``Key[Array, ""]``, ``UInt32[Array, "2"]`` or ``"4"``, or
jaxtyping's ``PRNGKeyArray``, their union) may take ``layouts={name: SplitKey()}``: the caller
passes one key and each call splits it into one key per example (``_key_checks.split_keys``).
Here, at decoration, ``checked_split_keys`` refuses a ``SplitKey`` on any other parameter, and
``with_split_keys`` gives a split key its batched layout once the batch names are known: every
batch name of the plan, outermost first, leading its per-example layout.

Example:
    >>> from jaxtyping import Array, Float, Key, PRNGKeyArray
    >>> from shapedmap._annotations import read_function
    >>> def f(x: Float[Array, "n"], key: Key[Array, ""], keys: PRNGKeyArray) -> Float[Array, "n"]:
    ...     return x
    >>> [is_one_key_type(p.value.array) for p in read_function(f).parameters]
    [False, True, True]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._grammar import FixedDim, Layout, NamedDim, VariadicDim
from ._levels import Placement, SplitKey
from ._plan import Argument
from ._value_types import ArrayType, FunctionTypes, hint_text

__all__ = [
    "checked_split_keys",
    "is_one_key",
    "is_one_key_type",
    "is_raw_key_dtype",
    "one_key_shape",
    "with_split_keys",
]

_RAW_KEY_SIZES = (2, 4)  # a raw key: uint32[2] (threefry), uint32[4] (rbg)
_ANNOTATE = (
    "annotate it Key[Array, ''] (a jax.random.key), UInt32[Array, '2'] (a jax.random.PRNGKey) "
    "or jaxtyping's PRNGKeyArray (either)"
)


def one_key_shape(array: ArrayType) -> tuple[int, ...] | None:
    """The shape of one key of this (non-union) annotation: ``()`` typed, ``(2,)`` raw; else None."""
    if array.alternatives or array.dtypes is None:
        return None
    sizes = tuple(dim.size if isinstance(dim, FixedDim) else None for dim in array.layout.dims)
    if array.dtypes == ("prng_key",) and sizes == ():
        return ()
    if array.dtypes == ("uint32",) and len(sizes) == 1 and sizes[0] in _RAW_KEY_SIZES:
        return sizes
    return None


def is_one_key_type(array: ArrayType | None) -> bool:
    """Is every member of the annotation one PRNG key (typed, or a raw ``uint32[2]``/``[4]``)?"""
    if array is None:
        return False
    members = array.alternatives or (array,)
    return all(one_key_shape(member) is not None for member in members)


def is_one_key(array: ArrayType | None, value: Any) -> bool:
    """Is ``value`` exactly one key that ``array`` (a one-key annotation) admits, dtype and shape?"""
    if not is_one_key_type(array):
        return False
    try:
        shape, dtype = value.shape, value.dtype
    except Exception:
        return False
    if not isinstance(shape, tuple):
        return False
    members = array.alternatives or (array,)  # type: ignore[union-attr]
    return any(member.admits_dtype(dtype) and shape == one_key_shape(member) for member in members)


def is_raw_key_dtype(dtype: Any) -> bool:
    """``uint32``: the dtype of a raw key (``jax.random.PRNGKey``)."""
    try:
        return np.dtype(dtype) == np.uint32
    except TypeError:
        return False


def checked_split_keys(layouts: dict[str, Any], types: FunctionTypes, fail: Any) -> None:
    """Each ``SplitKey`` in ``layouts=`` is on a parameter annotated as one key, else a ``SpecError``."""
    known = {p.name: p for p in types.parameters}
    for name, layout in layouts.items():
        if layout is SplitKey:
            raise fail(f"layouts={{{name!r}: SplitKey}} gives the class: write SplitKey(), an instance")
        if not isinstance(layout, SplitKey) or name not in known:
            continue  # a name that is no parameter is refused with the others
        parameter = known[name]
        where = f"layouts={{{name!r}: SplitKey()}} splits one PRNG key into one key per example, but parameter '{name}'"
        if parameter.kind in (parameter.kind.VAR_POSITIONAL, parameter.kind.VAR_KEYWORD):
            raise fail(f"{where} is *{name} or **{name}: split keys of named parameters only")
        value = parameter.value
        if value.hint is None:
            raise fail(f"{where} is not annotated, so not as one key: {_ANNOTATE}")
        if value.kind == "tree" or not is_one_key_type(value.array):
            raise fail(f"{where} is annotated {hint_text(value.hint)}, not as one key: {_ANNOTATE}")


def with_split_keys(
    arguments: list[Argument], names: set[str], order: tuple[str, ...], variadic: str | None, fail: Any
) -> list[Argument]:
    """``arguments`` with each split key (in ``names``) placed over every batch name, outermost first.

    A ``*batch`` name leads as ``*batch``: the key is split into the broadcast batch shape.
    """
    batch = tuple(VariadicDim(name) if name == variadic else NamedDim(name) for name in order)
    placed = []
    for argument in arguments:
        if argument.name in names and argument.placement is not None:
            per_example = argument.placement.per_example
            if variadic is not None and any(isinstance(dim, VariadicDim) for dim in per_example.dims):
                raise fail(
                    f"layouts={{{argument.name!r}: SplitKey()}} splits one key into the '*{variadic}' batch shape, "
                    f"but parameter '{argument.name}' is annotated {str(per_example)!r} (any shape, as "
                    "PRNGKeyArray is): with a '*name' spec, annotate it Key[Array, ''] or UInt32[Array, '2']"
                )
            batched = Layout((*batch, *per_example.dims))
            placement = Placement(batched, per_example, tuple(enumerate(order)))
            argument = dataclasses.replace(argument, placement=placement, split=True)
        placed.append(argument)
    return placed
