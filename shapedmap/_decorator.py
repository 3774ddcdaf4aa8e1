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

import dataclasses
import functools
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from jax.sharding import Mesh

from ._annotations import (
    UnresolvedAnnotation,
    contract_function,
    function_name,
    read_function,
    resolved_hints,
    unwrap_partial,
)
from ._checks import check_results_per_example
from ._errors import SpecError, describe_value
from ._face import describe_wrapper
from ._levels import Budget
from ._pipeline import call, partition_specs
from ._plan import Plan
from ._planner import make_plan
from ._sharding import Sharding, make_sharding
from ._signatures import checked_per_example

__all__ = ["Batched", "Chunks", "Layouts", "Options", "Shards", "batched"]


# Type checkers see the decorated function's own parameters and result (``Callable[_P, _R]``):
# the runtime signature is the batched one, but its annotations are the same jaxtyping types.
# The options are Mappings: a ``dict[str, int]`` of chunks is not a ``dict[str, int | Budget]``
# to mypy (dict is invariant in its values), but it is a ``Mapping[str, int | Budget]``.
Layouts = Mapping[str, str | None]
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
    if fn is None or isinstance(fn, str):
        if fn is not None and spec is not None:
            raise SpecError(f"batched got two specs, {fn!r} and {spec!r}")
        spec = fn if fn is not None else spec

        def decorate(function: Callable[..., Any]) -> Any:
            return batched(function, spec, layouts=layouts, out=out, check=check, shard=shard, mesh=mesh, chunk=chunk)

        return decorate
    if isinstance(fn, classmethod | staticmethod):
        return type(fn)(
            batched(fn.__func__, spec, layouts=layouts, out=out, check=check, shard=shard, mesh=mesh, chunk=chunk)
        )
    if not callable(fn):
        raise SpecError(f"batched expects a function, got {describe_value(fn)}")
    if not isinstance(check, bool):
        raise SpecError(f"check= must be True or False, got {describe_value(check)}")
    # Copies: a dict the caller changes later must not change this function (nor its pickle).
    layouts = dict(layouts) if isinstance(layouts, Mapping) else layouts
    shard = dict(shard) if isinstance(shard, Mapping) else shard
    chunk = dict(chunk) if isinstance(chunk, Mapping) else chunk
    described = Batched(fn, Options(spec, layouts, out, shard, mesh, chunk), check, _caller_module())
    wrapper = _wrapper(described)
    try:
        described.plan  # noqa: B018  (build it now: a spec that can never work fails at decoration)
    except UnresolvedAnnotation:
        pass  # a forward reference: the plan is built at the first call
    else:
        describe_wrapper(wrapper, described.plan, described.sharding)
    return wrapper


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``batched`` was given besides the function."""

    spec: str | None
    layouts: dict[str, str] | None
    out: str | tuple[str | None, ...] | None
    shard: dict[str, Any] | None
    mesh: Mesh | None
    chunk: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Batched:
    """Everything one batched function is: the per-example function and its options.

    What follows from them (the plan, the sharding, the checked per-example function) is
    derived once, on first use, and cached on the instance. If an annotation names something
    not defined yet (a forward reference, such as a method annotated with its own class), the
    plan is built at the first call, and a name still undefined then is a ``SpecError``.
    Pickled, it is rebuilt from the function, the options and the annotations as resolved here
    (``hints``): a function pickled by value (cloudpickle) keeps only the globals its body uses,
    so string annotations (``from __future__ import annotations``) could not be resolved again.
    """

    fn: Callable[..., Any]
    options: Options
    check: bool
    defined_in: str | None  # the module whose code called batched (documented and tested there)
    hints: dict[str, Any] | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Reentrant: reading the annotations can import a module that calls this function.
        object.__setattr__(self, "_building", threading.RLock())

    def __reduce__(self) -> tuple[Any, ...]:
        try:
            hints = self.hints or resolved_hints(self.fn, function_name(self.fn))
        except (NameError, SpecError):
            hints = None  # a forward reference not defined yet: resolved again after loading
        return (Batched, (self.fn, self.options, self.check, self.defined_in, hints))

    @property
    def plan(self) -> Plan:
        """The plan; ``UnresolvedAnnotation`` (a ``NameError``) while a forward reference is undefined.

        Built once, also when the first calls come from several threads at once.
        """
        plan = self.__dict__.get("_plan")
        if plan is None:
            with self._building:
                plan = self.__dict__.get("_plan")
                if plan is None:
                    plan = self._make_plan()
                    object.__setattr__(self, "_plan", plan)
        return plan

    def _make_plan(self) -> Plan:
        options = self.options
        plan = make_plan(read_function(self.fn, self.hints), options.spec, options.layouts, options.out, options.chunk)
        if hasattr(unwrap_partial(self.fn), "__shapedmap__"):
            # Batched again: name the layer, or every layer's errors would read 'vv: ...'.
            plan = dataclasses.replace(plan, function=f"{plan.function} [{plan.signature_text()}]")
        return plan

    @functools.cached_property
    def sharding(self) -> Sharding | None:
        """Which batch names go onto which mesh axes (``shard=``), or None."""
        return make_sharding(self.plan, self.options.shard, self.options.mesh)

    @functools.cached_property
    def first_body(self) -> Callable[..., Any]:
        """The per-example function for the first call of an abstract signature: its parameters
        checked by ``jaxtyped(typechecker=beartype)``, its results' ranks by shapedmap."""
        plan = self.plan
        checked = self.fn if _already_checked(self.fn) else checked_per_example(self.fn, plan)
        first = _checking_results(checked, plan)
        first.checks_parameters = True  # type: ignore[attr-defined]  # its TypeCheckErrors are shapedmap's check
        return first

    @functools.cached_property
    def results_body(self) -> Callable[..., Any]:
        """The per-example function with its results' ranks checked (static values can change them)."""
        return _checking_results(self.fn, self.plan)

    def resolved_plan(self) -> Plan:
        """The plan, or the ``SpecError`` of a forward reference still undefined."""
        try:
            return self.plan
        except UnresolvedAnnotation as error:
            raise SpecError(str(error)) from None


def _checking_results(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    """``fn`` whose results are checked per example, before ``jax.vmap`` reads them."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        output = fn(*args, **kwargs)
        check_results_per_example(plan, output)
        return output

    checked.__wrapped__ = fn  # type: ignore[attr-defined]
    return checked


def _already_checked(fn: Any) -> bool:
    """Is ``fn`` checked per call already (a batched function, or jaxtyped by hand or the import hook)?

    jaxtyped's wrapper is recognised the way jaxtyped itself recognises it on dataclasses: by the
    module its code lives in.
    """
    current = fn
    while current is not None:
        if hasattr(current, "__shapedmap__"):
            return True
        if getattr(current, "__globals__", {}).get("__name__") == "jaxtyping._decorator":
            return True
        current = getattr(current, "__wrapped__", None)
    return False


def _caller_module() -> str | None:
    """The module that called ``batched`` (``functools.wraps`` gives the wrapper ``fn``'s)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return None if frame is None else frame.f_globals.get("__name__")


def _wrapper(described: Batched) -> Any:
    """The plain function users hold (a function, so it binds as a method and pickles by name)."""

    @functools.wraps(contract_function(described.fn))
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if wrapper.signature is None:  # a forward reference, resolved now: describe the wrapper
            describe_wrapper(wrapper, described.resolved_plan(), described.sharding)
        return call(described, args, kwargs)

    wrapper.__shapedmap__ = described
    wrapper.fn = described.fn
    wrapper.partition_specs = functools.partial(partition_specs, described)
    # Filled in by describe_wrapper once the plan exists (at once, or at the first call for forward refs).
    wrapper.signature = wrapper.in_axes = wrapper.out_axes = None
    return wrapper
