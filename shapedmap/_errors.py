"""The two errors shapedmap raises, and the small helpers that write their text.

``SpecError`` is raised when the decorator is applied and the spec can never work.
``ShapeError`` is raised when a call's arguments (or the function's results) do not
fit the layouts. Both messages start with the function's name and name the parameter
and the dimension involved.
"""

from __future__ import annotations

import os
import types
from typing import Any

__all__ = ["ShapeError", "SpecError", "count", "describe_array", "describe_value", "without_internal_frames"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class SpecError(ValueError):
    """A spec, layout or annotation that can never work (raised at decoration).

    Example:
        >>> def mp(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
        ...     return a @ f
        >>> batched(mp, "graph graph")
        Traceback (most recent call last):
            ...
        shapedmap._errors.SpecError: mp: the batch name 'graph' appears twice in the layout
        'graph graph node node' of parameter 'a'
    """


class ShapeError(TypeError):
    """An argument or result whose shape or dtype contradicts its layout.

    Raised at call time (at trace time under ``jax.jit``). It subclasses ``TypeError``,
    as jaxtyping's ``TypeCheckError`` does, so code that catches type errors keeps working.

    Example:
        >>> from shapedmap.examples import message_passing  # batched over "graph"
        >>> message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
        Traceback (most recent call last):
            ...
        shapedmap._errors.ShapeError: message_passing: dimension 'graph' has size 5
        in argument 'a' (axis 0 of f32[5,7,7])
        but size 4 in argument 'f' (axis 0 of f32[4,7,11])
        ...
    """


def count(number: int, noun: str) -> str:
    """``1 dim``, ``2 dims``, ``0 dims``.

    Example:
        >>> count(1, "dim"), count(0, "dim"), count(3, "dim")
        ('1 dim', '0 dims', '3 dims')
    """
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


_DTYPE_ABBREVIATIONS = (("complex", "c"), ("float", "f"), ("uint", "u"), ("int", "i"))


def short_dtype(dtype: Any) -> str:
    """``float32`` -> ``f32``, the way JAX prints avals."""
    name = getattr(dtype, "name", None) or str(dtype)
    for long, short in _DTYPE_ABBREVIATIONS:
        if name.startswith(long) and name[len(long) :].isdigit():
            return short + name[len(long) :]
    return name


def describe_array(shape: tuple[int, ...], dtype: Any) -> str:
    """``f32[5,7,7]``: an array's dtype and shape, the way JAX prints avals."""
    return f"{short_dtype(dtype)}[{','.join(str(size) for size in shape)}]"


def describe_value(value: Any) -> str:
    """A short description of a value for error messages: ``f32[5,7,7]``, ``tuple (f32[], f32[3])``, ``None``.

    It never raises: an object whose ``shape``, ``dtype`` or ``repr`` fails is described by its type.
    """
    try:
        return _describe(value)
    except Exception:
        return f"{type(value).__name__} object"


def _is_sequence(value: Any) -> bool:
    return isinstance(value, tuple | list)


def _contents(value: tuple[Any, ...] | list[Any]) -> str:
    """``(f32[], (f32[3], None))``: arrays by shape, nested tuples and lists likewise."""
    items = []
    for item in value[:4]:
        if _is_sequence(item):
            items.append(_contents(item))
        else:
            text = describe_value(item)
            items.append(text if hasattr(item, "shape") or item is None else text.split(" ", 1)[-1])
    more = ", ..." if len(value) > 4 else ""
    comma = "," if isinstance(value, tuple) and len(value) == 1 else ""
    brackets = "()" if isinstance(value, tuple) else "[]"
    return f"{brackets[0]}{', '.join(items)}{more}{comma}{brackets[1]}"


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return describe_array(shape, dtype)
    if value is None:
        return "None"
    if isinstance(value, tuple | list) and any(hasattr(item, "shape") or _is_sequence(item) for item in value):
        return f"{type(value).__name__} {_contents(value)}"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _internal(frame: types.FrameType) -> bool:
    """A frame of shapedmap's private modules (``_pipeline.py``, ``testing/_loop.py``), not of the
    user's code nor of the public modules whose functions users call (``examples.py``)."""
    filename = frame.f_code.co_filename
    return filename.startswith(_PACKAGE) and os.path.basename(filename).startswith("_")


def without_internal_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without shapedmap's own frames: an error raised by a check ends at the line that called
    the batched function; one the body raised keeps the body's frames (and JAX's, which JAX hides
    under its own transforms). ``config.full_tracebacks`` keeps every frame.

    Example:
        >>> def fails():
        ...     raise ValueError("here")
        >>> try:
        ...     fails()
        ... except ValueError as error:
        ...     tb = error.__traceback__
        >>> without_internal_frames(tb) is not None  # these frames are the user's: all kept
        True
    """
    kept = []
    while tb is not None:
        if not _internal(tb.tb_frame):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for entry in reversed(kept):
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt
