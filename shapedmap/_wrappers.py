"""The wrappers seen through to a per-example function's contract, and where its annotations come from.

``batched(jax.jit(f), "b")`` calls the ``jax.jit`` object but reads ``f``'s annotations: wrappers that
keep the contract (``functools.partial``, ``jax.jit``, ``jax.custom_jvp``/``custom_vjp``,
``equinox.filter_jit``, Equinox bound methods, any object with a ``__wrapped__``) are looked through
to the function whose annotations are the contract (``contract_function``), which also names the
function in messages (``function_name``) and gives the resolved hints (``resolved_hints``).

Example:
    >>> def rotate(x: Float[Array, "n"]) -> Float[Array, "n"]: ...
    >>> contract_function(jax.jit(rotate)) is rotate, function_name(jax.jit(rotate))
    (True, 'rotate')
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

import jax

from ._compat import loaded_jit_function
from ._errors import SpecError

__all__ = [
    "MAX_WRAPPERS",
    "UnresolvedAnnotation",
    "contract_function",
    "function_name",
    "inner_function",
    "resolved_hints",
    "unwrap_partial",
    "wrappers_text",
]


class UnresolvedAnnotation(NameError):
    """An annotation names something not defined (yet): maybe a forward reference."""


def unwrap_partial(fn: Any) -> Any:
    """The function a ``functools.partial`` (of a partial…) fixes arguments of; ``fn`` otherwise."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


MAX_WRAPPERS = 64  # an object whose __wrapped__ makes a new wrapper each time stops here

# How messages name the wrapper objects that contract_function sees through.
_WRAPPER_NAMES = {
    "PjitFunction": "jax.jit",
    "custom_jvp": "jax.custom_jvp",
    "custom_vjp": "jax.custom_vjp",
    "_JitWrapper": "equinox.filter_jit",
    "BoundMethod": "an Equinox bound method",
    "partial": "functools.partial",
}


def inner_function(fn: Any) -> Any:
    """The callable a wrapper object wraps, or None: ``functools.partial``'s ``func``; the
    ``__wrapped__`` that ``jax.jit`` (``jax._src.util.wraps``), ``jax.custom_jvp`` and
    ``jax.custom_vjp`` (``functools.update_wrapper``), ``equinox.filter_jit`` and Equinox's
    bound methods set; a ``custom_jvp``/``custom_vjp``'s ``fun``; a ``jax.jit`` loaded by
    cloudpickle (which drops its ``__wrapped__``): the function it compiles."""
    if isinstance(fn, functools.partial):
        return fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        # A function carries its own annotations: a functools.wraps decorator copies them, and a
        # batched function's are its batched ones, which its wrapped function's are not.
        return None
    try:
        inner = getattr(fn, "__wrapped__", None)
        if inner is None and isinstance(fn, jax.custom_jvp | jax.custom_vjp):
            inner = fn.fun
        if inner is None:
            inner = loaded_jit_function(fn)
    except Exception:  # an object whose attribute lookup raises: read it as it is
        return None
    return inner if callable(inner) else None


def contract_function(fn: Any) -> Any:
    """The function whose annotations are ``fn``'s per-example contract.

    Wrappers that keep the contract are seen through: ``functools.partial``, ``jax.jit``,
    ``jax.custom_jvp``, ``jax.custom_vjp``, ``equinox.filter_jit``, Equinox bound methods,
    and any stack of them (any callable object with a ``__wrapped__``, the attribute
    ``inspect.signature`` follows too). Plain functions and methods (``jax.checkpoint`` and
    ``functools.wraps`` decorators make functions whose annotations are the wrapped one's),
    batched functions and callable objects without ``__wrapped__`` are returned as they are.
    Only the annotations come from the result: the batched function still calls ``fn``.
    """
    seen = {id(fn)}
    while (inner := inner_function(fn)) is not None and id(inner) not in seen and len(seen) < MAX_WRAPPERS:
        seen.add(id(inner))
        fn = inner
    return fn


def _wrapper_chain(fn: Any) -> list[str]:
    """How messages name the wrappers between ``fn`` and its contract function, outermost first."""
    names = []
    seen = {id(fn)}
    while (inner := inner_function(fn)) is not None and id(inner) not in seen and len(seen) < MAX_WRAPPERS:
        seen.add(id(inner))
        names.append(_WRAPPER_NAMES.get(type(fn).__name__, type(fn).__qualname__))
        fn = inner
    if inspect.isfunction(fn) and hasattr(fn, "__wrapped__") and not hasattr(fn, "__shapedmap__"):
        names.append("a decorator (functools.wraps)")
    return names


def function_name(fn: Any) -> str:
    """The name errors use for ``fn``: ``rotate``, or ``Scaler.apply`` for a method.

    Read through the wrappers ``contract_function`` sees through (``jax.jit(rotate)`` is
    ``rotate``). Enclosing functions (``test_x.<locals>.rotate``) are dropped: they are noise
    in a message.
    """
    fn = contract_function(fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    if not isinstance(name, str):
        name = type(fn).__name__
    return name.rsplit("<locals>.", 1)[-1]


def wrappers_text(fn: Any) -> str:
    """How messages name the wrappers between ``fn`` and its contract function (``"jax.custom_jvp
    inside jax.jit"``), or ``""`` for a plain function."""
    return " inside ".join(reversed(_wrapper_chain(fn)))


def resolved_hints(fn: Any, name: str) -> dict[str, Any]:
    """``fn``'s annotations, resolved (``typing.get_type_hints``).

    Read from ``contract_function(fn)``: through partials, ``jax.jit``, ``custom_jvp``/``custom_vjp``
    and other ``__wrapped__`` wrappers; a callable object's from its class's ``__call__``; a
    function that wraps a partial with none of its own (``jax.grad(partial(loss, w))``) the
    partial's function's.

    Raises:
        UnresolvedAnnotation: for a name not defined (yet): maybe a forward reference.
        SpecError: for annotations that cannot be resolved otherwise.
    """
    target = contract_function(fn)
    wrapped = getattr(target, "__wrapped__", None) if inspect.isfunction(target) else None
    if isinstance(wrapped, functools.partial) and not target.__annotations__:
        # functools.wraps (and jax.grad's) copies no annotations from a partial, which has none
        target = contract_function(wrapped)
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        target = type(target).__call__  # a callable object: its __call__ carries the hints
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError as error:
        raise UnresolvedAnnotation(
            f"{name}: cannot resolve its annotations (NameError: {error}). Annotations that name "
            "something local to a function cannot be resolved under 'from __future__ import "
            "annotations'; move the alias to module level."
        ) from None
    except Exception as error:  # TypeError, SyntaxError from user annotations
        raise SpecError(f"{name}: cannot resolve its annotations ({type(error).__name__}: {error})") from None
