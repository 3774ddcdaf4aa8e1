"""The one place that reads what JAX and Equinox do not publish: which transform made a function.

``jax.grad(loss)`` and ``jax.value_and_grad(loss)`` return plain functions that copy ``loss``'s
annotations and set ``__wrapped__ = loss``, so by their annotations they return what ``loss``
returns. To batch them, shapedmap must know the transform and its ``argnums`` and ``has_aux``,
which JAX keeps only in the closure of the function it returns. They are read here and nowhere
else: a transform is recognised by the code object of the function JAX returns, compared with
those of transforms made once at import (so no file names, qualnames or docstrings are parsed),
and its options are read from the closure cells of that code. Code objects are compared by value
(``==``), not identity: cloudpickle rebuilds JAX's closures by value, with new but equal code. A
JAX that changes either is
caught by ``tests/test_compat.py``, which CI runs on the lowest and the newest supported JAX;
where the options cannot be read, batching the transform is a ``SpecError`` that says what to
annotate, never a wrong result spec.

Equinox's ``filter_grad`` and ``filter_value_and_grad`` return objects (of classes private to
``equinox``) whose ``__wrapped__`` is the differentiated function: they are recognised by their
class and module names and their ``_has_aux`` is read; they differentiate the first argument,
with None where it holds no floating array.

Example:
    >>> def loss(w: Float[Array, "n"], x: Float[Array, "n"]) -> Float[Array, ""]:
    ...     return (w * x).sum()
    >>> derivative_of(jax.value_and_grad(loss, argnums=1))
    Derivative(transform='jax.value_and_grad', argnums=1, has_aux=False, readable=True, filtered=False)
    >>> derivative_of(loss) is None
    True
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

__all__ = ["Derivative", "derivative_of", "loaded_jit_function"]


@dataclass(frozen=True)
class Derivative:
    """A function made by a JAX transform that changes what it returns.

    ``transform`` is how users write it (``jax.grad``). ``readable``: shapedmap knows its result
    (the gradient of the parameters at ``argnums``, with ``has_aux`` its auxiliary data); when False
    (``jax.jacrev``, ``jax.vmap``, or options JAX no longer keeps where this module reads them),
    ``argnums`` and ``has_aux`` mean nothing. ``filtered``: the gradient is None where the
    argument holds no floating array (Equinox's filter transforms).
    """

    transform: str
    argnums: int | tuple[int, ...] = 0
    has_aux: bool = False
    readable: bool = True
    filtered: bool = False

    @property
    def with_value(self) -> bool:
        """Does it return ``(value, gradient)``, as ``value_and_grad`` does, rather than the gradient?"""
        return self.transform.endswith("value_and_grad")


def _probe(x: Any) -> Any:
    return x


def _cells(fn: Any) -> dict[str, Any]:
    """The closure of a Python function, by free variable name (empty cells left out)."""
    code = getattr(fn, "__code__", None)
    closure = getattr(fn, "__closure__", None) or ()
    cells = {}
    if isinstance(code, types.CodeType):
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                cells[name] = cell.cell_contents
            except ValueError:  # an empty cell
                continue
    return cells


def _boundary_code() -> types.CodeType | None:
    """The code of JAX's traceback-filtering wrapper, if both gradient transforms share one."""
    grad_code = getattr(jax.grad(_probe), "__code__", None)
    if grad_code is not None and grad_code is getattr(jax.value_and_grad(_probe), "__code__", None):
        return grad_code
    return None


_BOUNDARY = _boundary_code()


def _inside_boundary(fn: Any) -> Any:
    """The function JAX's traceback-filtering wrapper calls (its cell ``fun``), else ``fn``."""
    for _ in range(4):
        if _BOUNDARY is None or getattr(fn, "__code__", None) != _BOUNDARY:  # equal, also after cloudpickle
            break
        inner = _cells(fn).get("fun")
        if not callable(inner):
            break
        fn = inner
    return fn


def _code(fn: Any) -> types.CodeType | None:
    code = getattr(_inside_boundary(fn), "__code__", None)
    return code if isinstance(code, types.CodeType) else None


# The transforms shapedmap reads, and those it only names, by the code of what they return.
_READABLE: dict[types.CodeType | None, tuple[str, bool | None]] = {
    _code(jax.grad(_probe)): ("jax.grad", False),
    _code(jax.grad(_probe, has_aux=True)): ("jax.grad", True),
    _code(jax.value_and_grad(_probe)): ("jax.value_and_grad", None),
}
_NAMED: dict[types.CodeType | None, str] = {
    _code(jax.jacrev(_probe)): "jax.jacrev",
    _code(jax.jacfwd(_probe)): "jax.jacfwd",
    _code(jax.vmap(_probe)): "jax.vmap",
}
_READABLE.pop(None, None)
_NAMED.pop(None, None)


def _options(fn: Any) -> dict[str, Any]:
    """``argnums`` and ``has_aux`` from the closures reachable from ``fn`` (a few functions deep)."""
    queue, seen = [fn], set[int]()
    while queue and len(seen) < 16:
        current = _inside_boundary(queue.pop(0))
        if id(current) in seen:
            continue
        seen.add(id(current))
        cells = _cells(current)
        if "argnums" in cells:
            return cells
        queue.extend(value for value in cells.values() if isinstance(value, types.FunctionType))
    return {}


def _argnums(value: Any) -> int | tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


_JIT = type(jax.jit(_probe))


def loaded_jit_function(fn: Any) -> Any:
    """The function a ``jax.jit`` object without ``__wrapped__`` compiles, else None.

    cloudpickle restores a ``jax.jit`` from its pickled state, which keeps the function (``fun``)
    but not the attributes ``functools.wraps`` set (``__wrapped__``, ``__name__``, annotations).
    """
    if not isinstance(fn, _JIT):
        return None
    try:
        state = fn.__getstate__()
    except Exception:  # a JAX that pickles jit differently: read the object as it is
        return None
    inner = state.get("fun") if isinstance(state, dict) else None
    return inner if callable(inner) else None


# Equinox's filter transforms, by the module and name of the class of what they return.
_EQUINOX: dict[tuple[str, str], str] = {
    ("equinox._ad", "_GradWrapper"): "equinox.filter_grad",
    ("equinox._ad", "_ValueAndGradWrapper"): "equinox.filter_value_and_grad",
}


def derivative_of(fn: Callable[..., Any]) -> Derivative | None:
    """The transform that made ``fn`` if it changes what ``fn`` returns, else None.

    ``fn`` is looked at as it is (callers look through ``jax.jit`` and partials themselves).
    """
    transform = _EQUINOX.get((type(fn).__module__, type(fn).__name__))
    if transform is not None:
        has_aux = getattr(fn, "_has_aux", None)
        if not isinstance(has_aux, bool):
            return Derivative(transform, readable=False)
        return Derivative(transform, 0, has_aux, filtered=True)
    if not isinstance(fn, types.FunctionType):
        return None
    code = _code(fn)
    if code in _READABLE:
        transform, has_aux = _READABLE[code]
        options = _options(fn)
        argnums = _argnums(options.get("argnums"))
        has_aux = options.get("has_aux") if has_aux is None else has_aux
        if argnums is None or not isinstance(has_aux, bool):
            return Derivative(transform, readable=False)
        return Derivative(transform, argnums, has_aux)
    if code in _NAMED:
        transform = _NAMED[code]
        inner = _cells(_inside_boundary(fn)).get("fun")
        if transform == "jax.jacfwd" and _NAMED.get(_code(inner)) == "jax.jacrev":
            transform = "jax.hessian"  # jax.hessian(f) is jacfwd(jacrev(f))
        return Derivative(transform, readable=False)
    return None
