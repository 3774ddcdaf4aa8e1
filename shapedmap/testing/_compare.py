"""How far a batched output is from the loop's, as the text of a ``BatchedCheckError``.

Exact dtypes must be equal; inexact ones close within tolerances by dtype width (1e-2 for
16-bit, 1e-5 for 32-bit, 1e-10 for 64-bit; complex by its parts' width), compared in 64 bits
with NaN equal to NaN (NaN on one side only is counted, not measured). PRNG keys compare by their key data.

Example:
    >>> import numpy as np
    >>> leaf_difference(np.float32([1.0, 2.0]), np.float32([1.0, 2.0]), None, None) is None
    True
    >>> print(leaf_difference(np.int32([1, 2]), np.int32([1, 3]), None, None))
        batched: [1, 2]
        loop:    [1, 3]
        first different element: (1,)
    >>> print(leaf_difference(np.float32([np.nan, 2.0]), np.float32([1.0, 2.0]), None, None))
        batched: [nan,  2.]
        loop:    [1., 2.]
        1 element NaN on one side only; first at element (0,)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._places import leaf_place

__all__ = ["host", "leaf_difference", "tree_difference"]


def host(value: Any) -> np.ndarray:
    """A NumPy copy of an output leaf (PRNG keys as their key data)."""
    if hasattr(value, "dtype") and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    return np.asarray(value)


def tree_difference(batched: Any, loop: Any, place: str, rtol: float | None, atol: float | None) -> str | None:
    """None when the batched call's value at one batch index equals the loop's (the same PyTree
    structure, every leaf within tolerance), else where and how it differs."""
    batched_leaves, batched_tree = jax.tree_util.tree_flatten_with_path(batched)
    loop_leaves, loop_tree = jax.tree_util.tree_flatten_with_path(loop)
    if batched_tree != loop_tree:
        return f"{place} there: the batched tree structure {batched_tree} differs from the loop's {loop_tree}"
    for (path, got), (_, want) in zip(batched_leaves, loop_leaves, strict=True):
        problem = leaf_difference(host(got), host(want), rtol, atol)
        if problem is not None:
            return f"{leaf_place(place, path)} there:\n{problem}"
    return None


def leaf_difference(got: np.ndarray, want: np.ndarray, rtol: float | None, atol: float | None) -> str | None:
    """None when ``got`` (batched) equals ``want`` (loop), else both and where they differ."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"    batched: {_short(got)}\n    loop:    {_short(want)}\n    (shape or dtype differ)"
    inexact = jnp.issubdtype(want.dtype, jnp.inexact)
    if inexact:
        r, a = _tolerances(want.dtype, rtol, atol)
        wide = np.complex128 if jnp.issubdtype(want.dtype, jnp.complexfloating) else np.float64
        got_wide, want_wide = got.astype(wide), want.astype(wide)
        close = np.isclose(got_wide, want_wide, rtol=r, atol=a, equal_nan=True)
    else:
        close = got == want
    if close.all():
        return None
    position = tuple(int(i) for i in np.argwhere(~close)[0])
    text = f"    batched: {_values(got)}\n    loop:    {_values(want)}\n"
    if inexact:
        # NaN on both sides is equal; NaN on one side has no distance to report, only a count.
        one_side_nan = np.isnan(got_wide) != np.isnan(want_wide)
        apart = ~close & ~one_side_nan
        found = []
        if apart.any():
            worst = float(np.max(np.abs(got_wide - want_wide)[apart]))
            found.append(f"max |batched - loop| = {worst:.6g} (rtol={r:g}, atol={a:g})")
        if one_side_nan.any():
            count = int(one_side_nan.sum())
            found.append(f"{count} element{'s' if count > 1 else ''} NaN on one side only")
        text += f"    {'; '.join(found)}; first at element {position}"
    else:
        text += f"    first different element: {position}"
    return text


def _tolerances(dtype: np.dtype[Any], rtol: float | None, atol: float | None) -> tuple[float, float]:
    bits = dtype.itemsize * 8 // (2 if np.issubdtype(dtype, np.complexfloating) else 1)
    default = 1e-2 if bits <= 16 else 1e-5 if bits <= 32 else 1e-10
    return (default if rtol is None else rtol), (default if atol is None else atol)


def _short(array: np.ndarray) -> str:
    return f"{array.dtype}{list(array.shape)} {_values(array)}"


def _values(array: np.ndarray) -> str:
    text = np.array2string(array, threshold=24, precision=6, separator=", ")
    return text.replace("\n", "\n" + " " * 13)
