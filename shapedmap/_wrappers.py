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
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any

import jax

from ._compat import loaded_jit_function
from ._errors import SpecError

__all__ = [
    "MAX_WRAPPERS",
    "PartialParts",
    "UnresolvedAnnotation",
    "bound_to_mutable_object",
    "contract_function",
    "function_name",
    "inner_function",
    "partial_kind",
    "partial_parts",
    "resolved_hints",
    "unwrap_partial",
    "wrappers_text",
]


class UnresolvedAnnotation(NameError):
    """An annotation names something not defined (yet): maybe a forward reference."""


def bound_to_mutable_object(fn: Any) -> bool:
    """``fn`` reads the state of an object that can change between calls: a Python bound method, or
    a callable instance of a class with a Python ``__call__``, seen through the wrappers that keep
    the contract (``contract_function``: partials, ``jax.jit``…), unless the object is an Equinox
    module (immutable). A function is not.

    Example:
        >>> class Model:
        ...     def apply(self, x):
        ...         return x
        >>> bound_to_mutable_object(Model().apply), bound_to_mutable_object(Model.apply)
        (True, False)
    """
    fn = contract_function(fn)
    kind = type(fn)  # by type, not isinstance: that asks an Equinox module's __getattribute__
    if kind is types.MethodType:
        owner = fn.__self__
    elif kind is not types.FunctionType and type(inspect.getattr_static(kind, "__call__", None)) is types.FunctionType:
        owner = fn
    else:
        return False
    # By the class's module names: Equinox modules are immutable; no import of Equinox needed.
    return not any(base.__module__.split(".")[0] == "equinox" for base in type(owner).__mro__)


def unwrap_partial(fn: Any) -> Any:
    """The function a partial (of a partial…) fixes arguments of; ``fn`` otherwise."""
    while partial_kind(fn) is not None:
        fn = fn.func
    return fn


def partial_kind(fn: Any) -> str | None:
    """How messages name the kind of partial ``fn`` is (``functools.partial``…), or None for no partial.

    ``jax.tree_util.Partial`` is a ``functools.partial`` subclass; ``equinox.Partial`` an Equinox
    module with the same ``func``/``args``/``keywords`` (recognised without importing Equinox).
    """
    if isinstance(fn, functools.partial):
        return "jax.tree_util.Partial" if isinstance(fn, jax.tree_util.Partial) else "functools.partial"
    equinox = sys.modules.get("equinox")
    if equinox is not None and isinstance(fn, getattr(equinox, "Partial", ())):
        return "equinox.Partial"
    return None


@dataclass(frozen=True)
class PartialParts:
    """What the partials around a function bind, flattened as one partial of ``func``.

    ``positionals`` and ``keywords`` hold ``(value, kind)`` with ``kind`` the partial that bound
    it (``"functools.partial"``, ``"jax.tree_util.Partial"``, ``"equinox.Partial"``). A keyword
    ``equinox.Partial`` binds is ``fixed``: it passes it after the call's own, so passing it again
    is a ``TypeError``; a ``functools.partial``'s keyword is overridden by the call's.
    """

    func: Any
    positionals: tuple[tuple[Any, str], ...]
    keywords: dict[str, tuple[Any, str]]
    fixed: frozenset[str]

    def signature(self) -> inspect.Signature:
        """The signature the partials leave, as ``inspect.signature`` shows a ``functools.partial``,
        without the keywords ``equinox.Partial`` fixes."""
        args = [value for value, _ in self.positionals]
        keywords = {name: value for name, (value, _) in self.keywords.items()}
        signature = inspect.signature(functools.partial(self.func, *args, **keywords))
        return signature.replace(parameters=[p for p in signature.parameters.values() if p.name not in self.fixed])

    def positional_names(self) -> dict[str, Any]:
        """The bound positionals by the name of the parameter each fills (a ``*args`` one: a tuple)."""
        arguments = inspect.signature(self.func).bind_partial(*(value for value, _ in self.positionals)).arguments
        return dict(arguments)


def partial_parts(fn: Any) -> PartialParts | None:
    """The partials around ``fn`` (nested, of any kind, and behind wrappers that keep the contract,
    such as ``jax.jit(partial(f, m))``) as one partial of the function below them; None if none.

    Example:
        >>> def f(a: int, b: int, *, c: int = 0) -> int: ...
        >>> parts = partial_parts(functools.partial(functools.partial(f, 1), c=2))
        >>> parts.func is f, parts.positional_names(), list(parts.signature().parameters)
        (True, {'a': 1}, ['b', 'c'])
    """
    layers: list[tuple[Any, str]] = []
    seen = {id(fn)}
    below = None
    current = fn
    while len(seen) < MAX_WRAPPERS:
        kind = partial_kind(current)
        if kind is not None:
            layers.append((current, kind))
            below = current.func
        inner = inner_function(current)
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        current = inner
    if not layers:
        return None
    positionals: list[tuple[Any, str]] = []
    keywords: dict[str, tuple[Any, str]] = {}
    fixed: set[str] = set()
    for layer, kind in reversed(layers):  # the innermost partial's arguments come first
        positionals += [(value, kind) for value in layer.args]
        for name, value in layer.keywords.items():
            keywords[name] = (value, kind)
            (fixed.add if kind == "equinox.Partial" else fixed.discard)(name)
    return PartialParts(below, tuple(positionals), keywords, frozenset(fixed))


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
    if partial_kind(fn) is not None:
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
        names.append(partial_kind(fn) or _WRAPPER_NAMES.get(type(fn).__name__, type(fn).__qualname__))
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
