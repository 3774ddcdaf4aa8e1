"""What decorating the same function with the same options again reuses: the plan and the wrapper's face.

``batched(self.mlp, "batch")`` written inside ``__call__`` decorates on every call: a new bound method
(or an Equinox ``BoundMethod``) each time, a new module object under each ``jax.jit`` trace. Reading
the annotations, placing every layout and writing the "Shapes" section again costs 0.2–1 ms; what
they give depends only on the function's code and annotations and on the options, so it is
remembered here, keyed on both (``build_key``): per function, held weakly so that its entries go
when it does, a small LRU of the sets of options it was decorated with; both bounded.

"The same function" is, by identity held weakly:

* a plain function (a batched function included): itself;
* a bound method, Python's or Equinox's (an ``eqx.Module`` method read on an instance): its
  function, and the kind of method; never the object it is bound to, which is neither kept alive
  nor compared (its state reaches the body, not the plan);
* a callable object that shapedmap reads through its class's ``__call__`` (an ``eqx.Module``): its
  class.

Wrappers whose plan depends on what they wrap (``functools.partial``, ``jax.jit``, transforms) are
not remembered: each is read again. A hit gives the new description a copy of the plan with a
memo of its own, so no call-time state (built ``vmap`` nests around one object's body, argument
checks of one object's calls) passes from one object to another, and nothing held here keeps a
user's object alive.

Example:
    >>> def norm(x: Float[Array, "n"]) -> Float[Array, ""]:
    ...     return jnp.sqrt(x @ x)
    >>> options = ("b", None, None, None, None, None, True, __name__)
    >>> build_key(norm, options) == build_key(norm, options)
    True
    >>> class Scaler:
    ...     def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
    ...         return 2 * x
    >>> build_key(Scaler().apply, options) == build_key(Scaler().apply, options)  # two objects, one method
    True
    >>> build_key(functools.partial(norm), options) is None  # a wrapper: read again each time
    True
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import types
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ._cache import BoundedCache
from ._compat import derivative_of

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["Face", "build_key", "fresh_plan", "remember", "remembered"]

# The attributes ``describe_wrapper`` gives the function users hold, as it gave them.
Face = tuple[tuple[str, Any], ...]
Built = tuple["Plan", Face, bool]

MAX_FUNCTIONS = 256  # functions (methods' functions, classes) remembered at once
MAX_OPTIONS = 8  # sets of options remembered per function


class _Memo:
    """Per function (held weakly: its entries go with it), a small LRU of what each set of options built.

    Bounded twice: at most ``MAX_FUNCTIONS`` functions, the oldest dropped first, and
    ``MAX_OPTIONS`` sets of options for each.
    """

    def __init__(self) -> None:
        self._functions: weakref.WeakKeyDictionary[Any, BoundedCache[Built]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, Hashable]) -> Built | None:
        owner, options = key
        per_function = self._functions.get(owner)
        return None if per_function is None else per_function.get(options)

    def add(self, key: tuple[Any, Hashable], built: Built) -> None:
        owner, options = key
        with self._lock:
            per_function = self._functions.get(owner)
            if per_function is None:
                while len(self._functions.data) >= MAX_FUNCTIONS:  # the function remembered first goes first
                    del self._functions.data[next(iter(self._functions.data))]
                per_function = self._functions[owner] = BoundedCache(maxsize=MAX_OPTIONS)
        per_function.add(options, built)

    def __len__(self) -> int:
        return len(self._functions)


_BUILT = _Memo()


def _is_bound_method(kind: type) -> bool:
    """A Python bound method, or Equinox's ``BoundMethod`` (a module's method read on an instance)."""
    return kind is types.MethodType or (kind.__name__ == "BoundMethod" and kind.__module__.startswith("equinox."))


def _identity(fn: Any) -> tuple[Any, Hashable] | None:
    """What makes two callables "the same function" for decoration: the object the memo holds weakly
    (a function, or a class) and what kind of callable reads it; None: read it again.

    Read by the callable's type, never ``isinstance(fn, ...)``: that asks an object that is not of
    the class for its ``__class__``, through ``__getattribute__`` (an Equinox module's, ~1 µs).
    """
    kind = type(fn)
    if issubclass(kind, types.FunctionType):
        return fn, "function"
    if _is_bound_method(kind):
        function = fn.__func__
        return (function, kind) if type(function) is types.FunctionType else None
    call = getattr(kind, "__call__", None)  # noqa: B004 (its class's __call__, not whether it is callable)
    if issubclass(kind, functools.partial) or type(call) is not types.FunctionType:
        return None  # a partial, or an object whose calls its class's __call__ does not describe
    try:  # the instance's own attributes, read past __getattribute__ hooks
        state = object.__getattribute__(fn, "__dict__")
    except AttributeError:
        state = {}
    if "__wrapped__" in state or "__signature__" in state or getattr(kind, "__wrapped__", None) is not None:
        return None  # a wrapper, or a signature of its own: its plan is its own
    if kind.__module__.startswith("equinox") and derivative_of(fn) is not None:
        return None  # a transform (Equinox's filter_grad): its result depends on what it wraps
    return kind, "object"


def _frozen(value: Any) -> Hashable:
    """An option as a hashable value that equals another only for the same option: with its types
    (``2`` and ``2.0``, ``1`` and ``True`` are equal in Python, but not the same chunk), dicts by
    their items, dataclasses (``Budget``) by their fields."""
    kind = type(value)
    if value is None or kind is str:  # most options: read first
        return (kind, value)
    if isinstance(value, dict):
        return (kind, tuple(sorted(((type(key), key), _frozen(item)) for key, item in value.items())))
    if isinstance(value, list | tuple):
        return (kind, tuple(_frozen(item) for item in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (kind, tuple(_frozen(getattr(value, field.name)) for field in dataclasses.fields(value)))
    return (kind, value)


def build_key(fn: Any, options: tuple[Any, ...]) -> tuple[Any, Hashable] | None:
    """The memo key of decorating ``fn`` with ``options``, or None when it is not remembered.

    ``options``: everything ``batched`` was given besides the function, and the module that called it.
    """
    identity = _identity(fn)
    if identity is None:
        return None
    owner, kind = identity
    try:
        weakref.ref(owner)  # a TypeError for what cannot be held weakly
        options_key = (kind, tuple(_frozen(option) for option in options))
        hash(options_key)
    except (TypeError, AttributeError):  # an option that cannot be keyed (a tree of layouts, an odd mesh)
        return None
    return owner, options_key


def remembered(key: tuple[Any, Hashable]) -> Built | None:
    """The plan, face and ``through_wrapped`` remembered under ``key``, or None."""
    return _BUILT.get(key)


# The plan's cached properties a call reads (each a pure function of the plan).
_DERIVED = (
    "array_arguments",
    "static_nest",
    "positional_and_mapped",
    "has_statics",
    "has_fstring_dims",
    "annotated_statics",
    "variadic_batch",
    "broadcastable_batch",
    "unsized_levels",
)


def remember(key: tuple[Any, Hashable], plan: Plan, face: Face, through_wrapped: bool) -> None:
    """Remember what decorating under ``key`` built: a copy of the plan whose copies share one cache of
    checked argument shapes, the wrapper's attributes (``face``), and whether the contract function is
    the function's ``__wrapped__`` (an Equinox bound method's)."""
    for derived in _DERIVED:  # computed once here, so that every copy shares them
        getattr(plan, derived)
    stored = fresh_plan(plan)
    stored.__dict__["_shared_checks"] = BoundedCache(maxsize=512)
    _BUILT.add(key, (stored, face, through_wrapped))


def fresh_plan(plan: Plan, *, carries_state: bool = False) -> Plan:
    """``plan`` with an empty memo of its own (its derived, immutable parts shared, and the cache of
    checked argument shapes, if it has one).

    ``carries_state``: the function is bound to an object (a method, a module) whose state the body
    reads. A copy shares its argument checks with other objects' builds, so its results are checked
    on every call, as those of a function with static parameters are: another object can change them.
    """
    copy = object.__new__(type(plan))
    state = dict(plan.__dict__)
    state.pop("_memo", None)
    state.pop("_last_runner", None)  # the last runner built holds its body (a bound method holds self)
    if carries_state:
        state["has_statics"] = True
    copy.__dict__.update(state)
    return copy
