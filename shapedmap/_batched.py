"""``Batched``: everything one batched function is — the per-example function and its options.

What follows from them (the plan, the sharding, the per-example bodies checked on a first call)
is derived once, on first use, and cached on the instance. ``_pipeline`` runs a call over a
``Batched``; ``_decorator`` makes the function users hold around one.

Example:
    >>> def norm(x: Float[Array, "n"]) -> Float[Array, ""]:
    ...     return jnp.sqrt(x @ x)
    >>> described = Batched(norm, Options("b", None, None, None, None), True, __name__)
    >>> described.plan.signature_text()
    'b n -> b'
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

from jax.sharding import Mesh

from ._annotations import read_function
from ._binding import Bindings
from ._checks import bind_fixed_values, check_results_per_example
from ._errors import ShapeError, SpecError
from ._plan import Plan
from ._planner import make_plan
from ._sharding import Sharding, make_sharding
from ._signatures import checked_per_example
from ._wrappers import UnresolvedAnnotation, bound_to_mutable_object, function_name, resolved_hints, unwrap_partial

__all__ = ["Batched", "Options"]


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``batched`` was given besides the function."""

    spec: str | None
    layouts: dict[str, Any] | None
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

    def _make_plan(self, overridden: frozenset[str] = frozenset()) -> Plan:
        options = self.options
        types = read_function(self.fn, self.hints)
        plan = make_plan(types, options.spec, options.layouts, options.out, options.chunk, overridden)
        if hasattr(unwrap_partial(self.fn), "__shapedmap__"):
            # Batched again: name the layer, or every layer's errors would read 'vv: ...'.
            plan = dataclasses.replace(plan, function=f"{plan.function} [{plan.signature_text()}]")
        if bound_to_mutable_object(self.fn):
            # Its object's state can change the results between calls with the same shapes: checked
            # on every call, as a method decorated in its class checks them (``self`` is static there).
            plan.__dict__["has_statics"] = True
        if not overridden:
            check_fixed_values(plan)
        return plan

    def plan_for(self, overridden: frozenset[str]) -> Plan:
        """The plan of a call that passes again keywords a partial binds (``overridden``, a subset of
        ``plan.bound_keywords``): in it they follow their layouts. Built once per subset."""
        variants = self.__dict__.get("_variants")
        plan = None if variants is None else variants.get(overridden)
        if plan is None:
            with self._building:
                variants = self.__dict__.setdefault("_variants", {})
                plan = variants.get(overridden)
                if plan is None:
                    plan = variants[overridden] = self._make_plan(overridden)
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


def check_fixed_values(plan: Plan) -> None:
    """At decoration: the values a partial fixes against their annotations, a ``SpecError`` if refused."""
    if not plan.fixed:
        return
    try:
        bind_fixed_values(plan, Bindings(plan.function))
    except ShapeError as error:
        raise SpecError(
            f"{error}\n  The partial binds this value when it is made, so no call can change it: bind a "
            "value its annotation admits, or fix the annotation"
        ) from None


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
