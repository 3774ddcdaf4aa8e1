"""``batched()``: an immutable description of a batched function, and the function users hold.

Decoration reads the annotations and builds the ``Plan`` (so a spec that can never work
fails right there) and returns a plain function holding a ``Batched``: the per-example
function and the options, nothing else. A call is the pipeline of pure steps in ``_pipeline``.

Example:
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
    >>> message_passing.in_axes
    {'graph': (0, 0)}
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from jax.sharding import Mesh

from ._batched import Batched, Options
from ._config import config
from ._errors import SpecError, describe_value, without_internal_frames
from ._face import FACE, describe_wrapper
from ._levels import Budget, SplitKey
from ._pipeline import call, partition_specs
from ._rebuilt import Face, build_key, fresh_plan, remember, remembered
from ._wrappers import UnresolvedAnnotation, contract_function, function_name

__all__ = ["Chunks", "Layouts", "Shards", "batched"]


# Type checkers see the decorated function's own parameters and result (``Callable[_P, _R]``):
# the runtime signature is the batched one, but its annotations are the same jaxtyping types.
# The options are Mappings: a ``dict[str, int]`` of chunks is not a ``dict[str, int | Budget]``
# to mypy (dict is invariant in its values), but it is a ``Mapping[str, int | Budget]``.
Layouts = Mapping[str, str | SplitKey | None]
Shards = Mapping[str, str | tuple[str, ...]]
Chunks = Mapping[str, int | Budget]
_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


@overload
def batched(
    fn: str | None = None,
    /,
    spec: str | None = None,
    *,
    layouts: Layouts | None = None,
    out: str | tuple[str | None, ...] | None = None,
    check: bool = True,
    shard: Shards | None = None,
    mesh: Mesh | None = None,
    chunk: Chunks | None = None,
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]: ...
@overload
def batched(
    fn: classmethod[_T, _P, _R],
    /,
    spec: str | None = None,
    *,
    layouts: Layouts | None = None,
    out: str | tuple[str | None, ...] | None = None,
    check: bool = True,
    shard: Shards | None = None,
    mesh: Mesh | None = None,
    chunk: Chunks | None = None,
) -> classmethod[_T, _P, _R]: ...
@overload
def batched(
    fn: staticmethod[_P, _R],
    /,
    spec: str | None = None,
    *,
    layouts: Layouts | None = None,
    out: str | tuple[str | None, ...] | None = None,
    check: bool = True,
    shard: Shards | None = None,
    mesh: Mesh | None = None,
    chunk: Chunks | None = None,
) -> staticmethod[_P, _R]: ...
@overload
def batched(
    fn: Callable[_P, _R],
    /,
    spec: str | None = None,
    *,
    layouts: Layouts | None = None,
    out: str | tuple[str | None, ...] | None = None,
    check: bool = True,
    shard: Shards | None = None,
    mesh: Mesh | None = None,
    chunk: Chunks | None = None,
) -> Callable[_P, _R]: ...
def batched(
    fn: Callable[..., Any] | classmethod[Any, Any, Any] | str | None = None,
    /,
    spec: str | None = None,
    *,
    layouts: Layouts | None = None,
    out: str | tuple[str | None, ...] | None = None,
    check: bool = True,
    shard: Shards | None = None,
    mesh: Mesh | None = None,
    chunk: Chunks | None = None,
) -> Any:
    """Batch a per-example function over named dims, deriving every ``vmap`` axis.

    Args:
        fn: the per-example function, annotated with jaxtyping (``Float[Array, "n"]``).
        spec: ``"graph"`` / ``"graph time"`` (batch dims leading on every array parameter
            and result), ``"*batch"`` (any number of broadcast leading dims), or a full
            signature ``"b a, a c -> b c"`` (one layout per array parameter, then per result).
        layouts: ``{"param": "layout"}`` overriding the spec for those parameters; a
            layout without a batch name, or ``None`` (the per-example layout itself), leaves
            that argument unmapped: shared by every example, like ``in_axes=None``.
            ``SplitKey()`` on a key parameter takes one key and gives each example its own
            (``jax.random.split`` over the batch shape).
        out: the result layout, or a tuple of them for a tuple result; ``None`` in the tuple is
            that result's per-example layout, mapped by no batch dim (``out_axes=None``).
        check: ``False`` turns the shape checks off for this function.
        shard: ``{"graph": "data"}`` splits batch dims over mesh axes (a name or a tuple of
            names); see the "Scaling out" page of the docs.
        mesh: the ``jax.sharding.Mesh`` for ``shard``; default: the one set with
            ``jax.set_mesh`` at call time.
        chunk: ``{"graph": 1024}`` maps that batch dim in slices of 1024 examples
            (``jax.lax.map`` over ``vmap``s of one slice), so memory is bounded by the slice;
            ``{"graph": Budget(bytes=2**30)}`` picks the largest chunk that fits the budget.
            See the "Chunks" page of the docs.

    Returns:
        A function with the batched signature and annotations; ``.fn``, ``.signature``,
        ``.in_axes`` and ``.out_axes`` show what was derived, ``.partition_specs(*args)`` the
        shardings of a call.

    Raises:
        SpecError: when the spec can never work (at decoration, not at call time).

    Example:
        >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
        ...     return x @ y
        >>> mv = batched(vv, "b a, a -> b")
        >>> mv.in_axes, mv.out_axes
        ({'b': (0, None)}, {'b': 0})
    """
    # By type: isinstance asks an object of another class for its __class__ (an Equinox module's
    # __getattribute__, ~1 µs), and a module decorated inside __call__ comes here on every call.
    kind = type(fn)
    if fn is None or issubclass(kind, str):
        if fn is not None and spec is not None:
            raise SpecError(f"batched got two specs, {fn!r} and {spec!r}")
        spec = fn if fn is not None else spec

        def decorate(function: Callable[..., Any]) -> Any:
            return batched(function, spec, layouts=layouts, out=out, check=check, shard=shard, mesh=mesh, chunk=chunk)

        return decorate
    if issubclass(kind, classmethod | staticmethod):
        return type(fn)(
            batched(fn.__func__, spec, layouts=layouts, out=out, check=check, shard=shard, mesh=mesh, chunk=chunk)
        )
    if not callable(fn):
        raise SpecError(f"batched expects a function, got {describe_value(fn)}")
    if not isinstance(check, bool):
        raise SpecError(f"check= must be True or False, got {describe_value(check)}")
    # Copies: a dict the caller changes later must not change this function (nor its pickle).
    layouts = dict(layouts) if layouts is not None and isinstance(layouts, Mapping) else layouts
    shard = dict(shard) if shard is not None and isinstance(shard, Mapping) else shard
    chunk = dict(chunk) if chunk is not None and isinstance(chunk, Mapping) else chunk
    module = _caller_module()
    described = Batched(fn, Options(spec, layouts, out, shard, mesh, chunk), check, module)
    key = build_key(fn, (spec, layouts, out, shard, mesh, chunk, check, module))
    built = None if key is None else remembered(key)
    if built is not None:  # the same function and options again (a method batched inside __call__)
        plan, face, through_wrapped = built
        object.__setattr__(described, "_plan", fresh_plan(plan, carries_state=not issubclass(kind, types.FunctionType)))
        return _wrapper(described, fn.__wrapped__ if through_wrapped else fn, face)
    contract = contract_function(fn)
    wrapper = _wrapper(described, contract)
    try:
        described.plan  # noqa: B018  (build it now: a spec that can never work fails at decoration)
    except UnresolvedAnnotation:
        pass  # a forward reference: the plan is built at the first call
    else:
        describe_wrapper(wrapper, described.plan, described.sharding)
        # Remembered when the contract is fn, or what its __wrapped__ gives (an Equinox bound method's
        # Python method, a new one each time): that is how the contract is found again on a hit.
        if key is not None and (contract is fn or contract == getattr(fn, "__wrapped__", None)):
            face = tuple((name, getattr(wrapper, name)) for name in (*_COPIED, *FACE) if hasattr(wrapper, name))
            remember(key, described.plan, face, contract is not fn)
    return wrapper


def _caller_module() -> str | None:
    """The module that called ``batched`` (``functools.wraps`` gives the wrapper ``fn``'s)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return None if frame is None else frame.f_globals.get("__name__")


# What functools.wraps copies besides the face (describe_wrapper's attributes, which it overwrites).
_COPIED = ("__module__", "__name__", "__qualname__", "__type_params__")


def _wrapper(described: Batched, contract: Any, face: Face | None = None) -> Any:
    """The plain function users hold (a function, so it binds as a method and pickles by name).

    ``contract``: the function whose annotations are the contract (``contract_function``), whose
    name and docstring the wrapper takes; ``face``: the attributes a wrapper of the same function
    and options was given, set instead of reading them again.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if wrapper.signature is None:  # a forward reference, resolved now: describe the wrapper
                describe_wrapper(wrapper, described.resolved_plan(), described.sharding)
            return call(described, args, kwargs)
        except Exception as error:
            # The traceback ends at the caller's line (and the body's own frames), not inside shapedmap.
            if not config.full_tracebacks:
                error.with_traceback(without_internal_frames(error.__traceback__))
            raise

    if face is None:
        functools.update_wrapper(wrapper, contract)
        if not isinstance(getattr(contract, "__name__", None), str):  # a callable object: its user-given name
            wrapper.__qualname__ = _object_name(described.fn)
            wrapper.__name__ = wrapper.__qualname__.rsplit(".", 1)[-1]
    else:  # what update_wrapper does, but the names, set with the face below
        wrapper.__dict__.update(getattr(contract, "__dict__", {}))
        wrapper.__wrapped__ = contract
    wrapper.__shapedmap__ = described
    wrapper.fn = described.fn
    wrapper.partition_specs = functools.partial(partition_specs, described)
    # Filled in by describe_wrapper once the plan exists (at once, or at the first call for forward refs).
    wrapper.signature = wrapper.in_axes = wrapper.out_axes = None
    for name, value in face or ():
        setattr(wrapper, name, value)
    return wrapper


def _object_name(fn: Any) -> str:
    """What help() and describe() call a batched callable object: its class (``MultiheadAttention``),
    or, for a partial object (Equinox's ``Partial``), the function it fixes arguments of."""
    for _ in range(8):
        inner = getattr(fn, "func", None)
        if not callable(inner) or inner is fn:
            break
        fn = inner
    return function_name(fn)
