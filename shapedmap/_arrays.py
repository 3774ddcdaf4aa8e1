"""What counts as an array, and how a value becomes one: NumPy arrays, Python numbers and other
array types are converted to JAX arrays; lists, strings and other objects are refused by name.

Example:
    >>> import numpy as np
    >>> is_array_like(np.ones(3)), is_array_like([1.0])
    (True, False)
    >>> as_array(2.0, "f", "argument 'x'", "a number").dtype
    dtype('float32')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _messages as messages
from ._errors import ShapeError
from ._layout_trees import map_placed
from ._plan import Plan

__all__ = ["as_array", "check_python_scalar", "is_array_like", "is_result_leaf", "per_example_arguments"]


def is_array_like(value: Any) -> bool:
    """Arrays, tracers and NumPy arrays/scalars: anything with a tuple shape and a dtype.

    An object whose ``shape`` or ``dtype`` raises is not array-like (never an error of ours).
    """
    try:
        return isinstance(getattr(value, "shape", None), tuple) and hasattr(value, "dtype")
    except Exception:
        return False


_SCALARS = (bool, int, float, complex)


def as_array(value: Any, function: str, place: str, expected: str | Callable[[], str], *, abstract: bool = True) -> Any:
    """``value`` as a JAX array (NumPy arrays and scalars are converted), else a ``ShapeError``.

    Lists, strings, dicts and other objects are refused: a list may be meant as a PyTree,
    so guessing would hide bugs. Other array types (anything with a shape and a dtype) are
    converted with ``jnp.asarray``; a ``jax.ShapeDtypeStruct`` (a shape without data) is kept
    when ``abstract`` (``explain``, ``partition_specs``), refused otherwise (a real call).
    """
    if isinstance(value, jax.Array):
        return value
    if callable(expected):  # the message text, built only when a message may be written
        expected = expected()
    if isinstance(value, np.ma.MaskedArray):  # JAX refuses it (its mask would be dropped)
        raise ShapeError(messages.masked_array(function, place, expected, value))
    if isinstance(value, np.ndarray | np.generic) and _jax_numeric(value.dtype):
        return jnp.asarray(value)
    if isinstance(value, _SCALARS):
        try:
            return jnp.asarray(value)
        except OverflowError as error:  # a Python int beyond every JAX integer dtype
            raise ShapeError(messages.int_beyond_dtypes(function, place, expected, value, error)) from None
    if isinstance(value, jax.ShapeDtypeStruct):
        if abstract:
            return value
        raise ShapeError(messages.abstract_array_in_call(function, place, expected, value))
    if is_array_like(value) and not isinstance(value, np.ndarray | np.generic):
        try:
            return jnp.asarray(value)  # another array type, with __jax_array__ or __array__
        except Exception as error:
            raise ShapeError(messages.unconvertible_array(function, place, expected, value, error)) from None
    raise ShapeError(messages.not_an_array(function, place, expected, value))


def _jax_numeric(dtype: np.dtype[Any]) -> bool:
    """A NumPy dtype ``jnp.asarray`` takes as a number: NumPy's own, and ml_dtypes' (``bfloat16``,
    ``float8_e4m3fn``, ``int4``: kind ``'V'`` to NumPy, numbers to JAX)."""
    if dtype.kind in "biufc":
        return True
    try:
        return bool(jnp.issubdtype(dtype, jnp.number))
    except Exception:
        return False


def is_result_leaf(value: Any) -> bool:
    """What JAX takes as a result: a JAX array or tracer, or a NumPy array or scalar of a numeric dtype
    or of float0 (the gradient of an integer input, which ``jax.vmap`` returns eagerly as a NumPy array)."""
    if isinstance(value, jax.Array):
        return True
    if isinstance(value, np.ndarray | np.generic):
        dtype = value.dtype
        return bool(dtype == jax.dtypes.float0 or jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_))
    return False


def check_python_scalar(function: str, where: str, value: bool | int | float | complex) -> None:
    """A Python int must fit the integer dtype JAX gives it (int32 unless x64 is on)."""
    if isinstance(value, int) and not isinstance(value, bool):
        limits = jnp.iinfo(jax.dtypes.canonicalize_dtype(np.int64))
        if not limits.min <= value <= limits.max:
            raise ShapeError(messages.int_result_beyond_dtype(function, where, value, limits.dtype))


def per_example_arguments(plan: Plan, values: list[Any], *, passed: bool = False) -> dict[str, Any]:
    """The arguments one example's call sees, by name: array leaves as per-example
    ``jax.ShapeDtypeStruct``s (what ``{x.shape[0]}`` dims read), other values as they are.

    ``passed``: ``values`` are as the caller passed them (a ``SplitKey``'s one key, not yet split)."""
    arguments = {}
    for argument, value in zip(plan.arguments, values, strict=True):
        if argument.placement is not None and value is not None:
            value = map_placed(
                lambda placement, leaf: jax.ShapeDtypeStruct(
                    placement.per_example_shape(tuple(leaf.shape)),
                    leaf.dtype,
                    weak_type=getattr(getattr(leaf, "aval", None), "weak_type", False),
                ),
                argument.passed if passed else argument.placement,
                value,
            )
        arguments[argument.name] = value
    return arguments
