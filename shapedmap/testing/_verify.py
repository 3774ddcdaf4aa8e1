"""``verify``: a batched function's shape contract proved for every size, in symbolic traces.

Each trace calls the batched function under ``jax.eval_shape`` on arguments whose sizes are
``jax.export`` symbols, one per dim name (``_symbolic``): every primitive's shape rule runs once
for all sizes at once, nothing is compiled. The arguments are checked and the results compared
with their layouts by the checks every call runs (``check_arguments``, ``check_results``): a size
agrees only where JAX proves it equal, so two distinct dim names are two sizes unless a
constraint says otherwise. One trace is the plain one (every dim its own size); the others vary
what one symbol cannot stand for: ``*name`` dims at other ranks, each ``#`` dim at 1, a
``*batch`` argument with size-1 or missing leading dims, each further dtype family an
annotation admits, optional arrays left out.

A trace that fails is classified by tracing again, never by reading JAX's error text:

* the body raised and the trace holds with two dims unified (or a dim equal to a fixed size, or
  one dim at least another as a constraint): **holds only if** ``n == m``, at the user's line;
* a result contradicts its annotation: **wrong**, or **undecided** where a constraint JAX reads
  (``n >= 3`` for ``x[3:]`` annotated ``n-3``) makes it hold;
* a size compared in Python (``if n > 3``) or a shape read off values: **undecided**.

Example:
    >>> from shapedmap.examples import message_passing
    >>> print(verify(message_passing))  # doctest: +ELLIPSIS
    message_passing (...examples.py:...): holds for every size >= 1 (1 trace: every dim its own size)
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax

from .._call import run
from .._checks import check_arguments, check_results, check_results_per_example, check_static_values
from .._errors import ShapeError
from .._expressions import _INCONCLUSIVE, _min_max_arguments
from .._grammar import FixedDim, VariadicDim
from .._layout_trees import TreePlacement
from .._levels import Budget, VmapNest
from .._nest import nest_for
from .._plan import Plan
from ._report import (
    HOLDS,
    HOLDS_ONLY_IF,
    SEVERITY,
    UNDECIDED,
    WRONG,
    Finding,
    VerifyError,
    VerifyReport,
    first_line,
    returned_text,
    source_of,
    user_line,
)
from ._symbolic import Case, NeedsValue, arguments, dtype_choices

__all__ = ["Finding", "NeedsValue", "VerifyError", "VerifyReport", "verify"]

_DATA_DEPENDENT = tuple(
    getattr(jax.errors, name)
    for name in ("ConcretizationTypeError", "NonConcreteBooleanIndexError", "TracerArrayConversionError")
    if hasattr(jax.errors, name)
)
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


def verify(
    fn: Callable[..., Any],
    /,
    *,
    given: Mapping[str, Any] | None = None,
    constraints: tuple[str, ...] | list[str] = (),
    ranks: tuple[int, ...] = (0, 1, 2),
) -> VerifyReport:
    """Prove that a batched function's results have their annotated shapes and dtypes for every size.

    ``fn`` is traced with ``jax.eval_shape`` (nothing is compiled or run) on arguments whose sizes
    are ``jax.export`` symbols, one per dim name, batch names included; fixed dims are ints and
    expressions (``2*f``, ``n+1``) symbolic arithmetic on them. ``*name`` dims are traced at each
    of ``ranks``, each ``#`` dim also at 1, each dtype family an annotation admits once (a PRNG key
    where it admits keys). Static parameters take their defaults; a bound method its instance.

    Args:
        fn: a function made by ``shapedmap.batched`` (or a bound batched method).
        given: values by parameter name: for static parameters without default (or other values
            than their defaults: a static value can change the shapes), an instance as ``self``;
            for an array parameter, its PyTree structure (where the annotation leaves it open:
            ``PyTree``, ``dict``): each leaf (an array, a ``jax.ShapeDtypeStruct``, a number) is
            traced as a symbolic array of the parameter's layout, with the leaf's dtype.
        constraints: ``jax.export`` constraints on the dim names the body needs (``"t >= k"``);
            the report shows them: the contract is proved under them only.
        ranks: the ranks of ``*name`` dims traced.

    Returns:
        The report, when the contract holds for every size >= 1 (within what a trace covers:
        ``VerifyReport.not_covered``).

    Raises:
        VerifyError: (a ``ShapeError``) when it holds only if some dims are equal (or ordered),
            when a result is wrong, or when JAX cannot decide it; ``error.report`` has each finding.
        NeedsValue: (a ``ValueError``) for a parameter verify cannot make a value for, naming it
            and ``given=``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> @batched("b")
        ... def add(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n"]:
        ...     return x + y
        >>> verify(add)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shapedmap.testing._report.VerifyError: add (...): holds only if n == m
          [holds only if; trace: every dim its own size] `return x + y` at ...:3 needs n == m (TypeError: ...)
    """
    described = getattr(fn, "__shapedmap__", None)
    if described is None:
        raise TypeError(f"verify: {fn!r} is not a function made by shapedmap.batched")
    plan = described.resolved_plan()
    values = dict(given or {})
    if inspect.ismethod(fn) and plan.arguments:
        values.setdefault(plan.arguments[0].name, fn.__self__)
    unknown = values.keys() - {argument.name for argument in plan.arguments}
    if unknown:
        raise ValueError(f"verify({plan.function}): given= names {', '.join(sorted(unknown))}, not parameters")
    _check_traceable(plan, values)
    verifier = _Verifier(plan, described.fn, values, tuple(constraints))
    cases = _cases(plan, values, tuple(ranks))
    findings: list[Finding] = []
    try:
        for case in cases:
            finding = verifier.check(case)
            if finding is not None and finding not in findings:
                findings.append(finding)
    finally:
        verifier.done()
    file, line = source_of(described.fn)
    outcome = max((finding.outcome for finding in findings), key=SEVERITY.__getitem__, default=HOLDS)
    report = VerifyReport(
        plan.function, file, line, outcome, tuple(findings), tuple(case.label for case in cases), tuple(constraints)
    )
    if outcome != HOLDS:
        raise VerifyError(report)
    return report


def _check_traceable(plan: Plan, given: Mapping[str, Any]) -> None:
    """What verify has no symbolic value for is a ``NeedsValue`` naming the parameter: a layout tree (a
    layout per subtree), and an unannotated value whose layout leaves its per-example shape open."""
    for argument in plan.arguments:
        placement = argument.placement
        if placement is None:
            continue
        if isinstance(placement, TreePlacement):
            raise NeedsValue(
                f"verify({plan.function}): parameter '{argument.name}' has the layout tree {placement.batched}, "
                "which verify does not trace (one layout per value only); check it at drawn sizes with "
                "shapedmap.testing.check_batched"
            )
        open_shape = VariadicDim(None) in placement.per_example.dims
        if argument.value.takes_layout and open_shape and argument.name not in given:
            raise NeedsValue(
                f"verify({plan.function}): parameter '{argument.name}' is not annotated and its layout "
                f"{str(placement.batched)!r} leaves its per-example shape open ('...'), so verify has no structure "
                f"to trace: give a value for it, given={{{argument.name!r}: ...}} (its leaves are traced symbolically)"
            )


def _cases(plan: Plan, given: dict[str, Any], ranks: tuple[int, ...]) -> list[Case]:
    """The traces: the plain one, then one per thing a single symbol cannot stand for."""
    cases = [Case("every dim its own size")]
    traced = [plan.arguments[i] for i in plan.array_arguments if plan.arguments[i].name not in given]
    variadic = any(isinstance(dim, VariadicDim) for a in traced for dim in a.placement.batched.dims)
    if variadic:
        cases += [Case(f"'*' dims of rank {rank}", rank=rank) for rank in ranks if rank != 1]
    for argument in traced:
        for index, dim in enumerate(argument.placement.batched.dims):
            if getattr(dim, "broadcastable", False):
                token = dim.name if not isinstance(dim, FixedDim) else dim.size
                cases.append(Case(f"'#{token}' of '{argument.name}' is 1", ones=frozenset({(argument.name, index)})))
    batch = plan.variadic_batch
    carriers = [a.name for a in traced if batch is not None and a.placement.variadic_batch == batch]
    if len(carriers) > 1:  # two traces whatever the number of arguments: each role taken in turn
        for start in range(2):
            ones, shorter = carriers[start % len(carriers)], carriers[(start + 1) % len(carriers)]
            label = f"'*{batch}' of '{ones}' is (1, 1), of '{shorter}' one dim shorter"
            cases.append(Case(label, rank=2, batch_shapes=((ones, "ones"), (shorter, "shorter"))))
    for argument in traced:
        for dtype in dtype_choices(argument)[1:]:
            cases.append(Case(f"'{argument.name}' of dtype {dtype}", dtypes=((argument.name, dtype),)))
    optional = frozenset(argument.name for argument in traced if argument.value.optional)
    if optional:
        cases.append(Case(f"{', '.join(repr(name) for name in sorted(optional))} None", absent=optional))
    return cases


@dataclass
class _Trace:
    """How one trace ended: ``phase`` is where (arguments, body, results), ``error`` what was raised."""

    phase: str = "arguments"
    error: BaseException | None = None
    output: Any = None
    symbols: dict[str, Any] = dataclasses.field(default_factory=dict)
    chosen: tuple[str, ...] = ()  # PyTree parameters whose structure verify chose
    names: tuple[str, ...] = ()  # the user's dim names in this trace


class _Verifier:
    """Traces one batched function: each case, and the retries that classify a failure."""

    def __init__(self, plan: Plan, fn: Callable[..., Any], given: dict[str, Any], constraints: tuple[str, ...]):
        self.plan, self.fn, self.given, self.constraints = plan, fn, given, constraints
        # One body for every trace of this verify (the plan's memo of built vmaps is keyed on it and
        # keeps it): it holds the trace in progress only while verify runs (``done``), never the
        # given values, so a static object given is not kept alive by the function's memo.
        self.current: list[_Trace | None] = [None]
        current = self.current

        def body(*args: Any, **kwargs: Any) -> Any:
            output = fn(*args, **kwargs)
            if current[0] is not None:
                current[0].phase = "results"
            check_results_per_example(plan, output)
            return output

        self.body = body

    def done(self) -> None:
        """Drop the last trace (its tracers and symbols) from what the body holds."""
        self.current[0] = None

    def trace(self, case: Case) -> _Trace:
        """One symbolic trace of the call; its end (``error`` None: it holds)."""
        plan = self.plan
        state = self.current[0] = _Trace()
        try:
            built = arguments(plan, case, self.given, self.constraints)
        except NeedsValue:
            raise
        except Exception as error:  # a size JAX refuses to make (an expression it cannot take as a dim)
            state.error = error
            return state
        state.symbols, state.chosen, state.names = built.symbols, built.chosen_trees, built.names
        values = built.values
        statics_given = [a.name for a in plan.arguments if a.placement is None and a.name not in self.given]

        def traced(*mapped: Any) -> Any:
            call_values = plan.with_mapped(values, mapped)
            check_static_values(plan, call_values, statics_given)
            bindings, call_values = check_arguments(plan, call_values, abstract=False)
            nest = _without_budget(nest_for(plan, call_values, bindings))
            state.phase = "body"
            output = run(plan, nest, self.body, call_values)
            state.phase = "results"
            state.output = output
            check_results(plan, bindings, output)
            return output

        try:
            jax.eval_shape(traced, *(values[i] for i in plan.array_arguments))
        except Exception as error:
            state.error = error
        return state

    def check(self, case: Case) -> Finding | None:
        """The finding of ``case``: None where it holds."""
        state = self.trace(case)
        error = state.error
        if error is None:
            return None
        if state.phase == "arguments":
            if isinstance(error, ShapeError) and self.given:
                raise ValueError(f"verify({self.plan.function}): the given values do not fit: {error}") from error
            return Finding(UNDECIDED, case.label, f"verify cannot make these arguments: {first_line(error)}")
        if state.phase == "results":
            return self._wrong_result(case, state)
        return self._body_failed(case, state)

    # -- classifying a failure by tracing again ---------------------------------------------

    def _holds_with(self, case: Case, candidate: tuple[str, Any]) -> bool:
        kind, value = candidate
        if kind == "unify":
            retried = dataclasses.replace(case, unified=(*case.unified, value))
        else:
            retried = dataclasses.replace(case, constraints=(*case.constraints, value))
        return self.trace(retried).error is None

    def _equalities(self, case: Case, state: _Trace) -> list[tuple[str, Any]]:
        names = [name for name in state.names if name not in dict(case.unified)]
        fixed = sorted(
            {
                dim.size
                for a in self.plan.arguments
                if a.placement
                for dim in a.placement.batched.dims
                if isinstance(dim, FixedDim) and dim.size > 1
            }
        )
        pairs = [("unify", (second, first)) for first, second in itertools.combinations(names, 2)]
        return pairs + [("unify", (name, size)) for name in names for size in fixed]

    def _inequalities(self, case: Case, state: _Trace, output: Any) -> list[tuple[str, Any]]:
        names = [name for name in state.names if name not in dict(case.unified)]
        found: dict[str, None] = {}
        for leaf in jax.tree.leaves(output):
            for size in getattr(leaf, "shape", ()):
                for left, right in _min_max_arguments((str(size),)):
                    found.update(dict.fromkeys((f"{left} >= {right}", f"{left} <= {right}")))
        for first, second in itertools.permutations(names, 2):
            found.setdefault(f"{first} >= {second}")
        return [("constraint", text) for text in found]

    def _body_failed(self, case: Case, state: _Trace) -> Finding:
        error = state.error
        where, code = user_line(error)
        at = f"`{code}` at {where}" if code else f"the body (at {where})" if where else "the body"
        said = f"{type(error).__name__}: {first_line(error)}"
        if isinstance(error, _DATA_DEPENDENT):
            return Finding(UNDECIDED, case.label, f"{at} makes a shape depend on values ({said})", where)
        # An order (t >= k) before an equality, which implies it: the weakest condition is named.
        for candidate in [*self._inequalities(case, state, None), *self._equalities(case, state)]:
            if self._holds_with(case, candidate):
                needs = _needs_text(candidate)
                return Finding(HOLDS_ONLY_IF, case.label, f"{at} needs {needs} ({said})", where, needs)
        if isinstance(error, _INCONCLUSIVE):
            message = (
                f"{at} compares sizes in a way JAX cannot decide for every size (a Python branch on a size?) ({said})"
            )
            return Finding(UNDECIDED, case.label, message, where)
        concrete = self._concrete(case, state)
        if concrete is not None:
            sizes, holds = concrete
            if holds:
                message = (
                    f"{at} cannot be traced with symbolic sizes ({said}); at the distinct sizes {sizes} it "
                    "holds, but verify cannot prove it for every size"
                )
                return Finding(UNDECIDED, case.label, message, where)
        if state.chosen:
            names = ", ".join(repr(name) for name in state.chosen)
            raise NeedsValue(
                f"verify({self.plan.function}): the body cannot run on the structure verify chose for {names} "
                f"({said}, at {where}); give a value: given={{{state.chosen[0]!r}: ...}}"
            )
        return Finding(WRONG, case.label, f"{at} raises at every size tried ({said})", where)

    def _concrete(self, case: Case, state: _Trace) -> tuple[str, bool] | None:
        """The same trace at distinct small sizes (primes, rising then falling): where it holds, if it does."""
        names = [name for name, size in state.symbols.items() if not isinstance(size, int)]
        if not names:
            return None
        primes = _PRIMES[: len(names)]
        text = ""
        for order in (primes, primes[::-1]):
            sizes = dict(zip(names, order, strict=False))
            text = ", ".join(f"{name}={size}" for name, size in sizes.items())
            if self.trace(dataclasses.replace(case, unified=(*case.unified, *sizes.items()))).error is None:
                return text, True
        return text, False

    def _wrong_result(self, case: Case, state: _Trace) -> Finding:
        error, output = state.error, state.output
        returned = returned_text(self.plan, output)
        message = (returned + "\n" if returned else "") + str(error)
        for candidate in self._inequalities(case, state, output)[: len(_min_max_sizes(output)) * 2]:
            if self._holds_with(case, candidate):
                needs = _needs_text(candidate)
                hint = f"holds only under {needs}: give it, verify(..., constraints=({needs!r},)), and export with it"
                return Finding(
                    UNDECIDED, case.label, f"JAX cannot prove it for every size; it {hint}\n{message}", None, needs
                )
        for candidate in self._equalities(case, state):
            if self._holds_with(case, candidate):
                needs = _needs_text(candidate)
                return Finding(WRONG, case.label, f"{message}\n(it would hold only where {needs})", None, needs)
        return Finding(WRONG, case.label, message)


def _min_max_sizes(output: Any) -> list[Any]:
    return [
        size
        for leaf in jax.tree.leaves(output)
        for size in getattr(leaf, "shape", ())
        if "min(" in str(size) or "max(" in str(size)
    ]


def _needs_text(candidate: tuple[str, Any]) -> str:
    kind, value = candidate
    if kind == "unify":
        name, target = value
        return f"{target} == {name}" if isinstance(target, str) else f"{name} == {target}"
    return value


def _without_budget(nest: VmapNest) -> VmapNest:
    """A ``Budget`` is settled by compiling: verify traces the whole batch (chunks change no shape)."""
    if not any(isinstance(level.chunk, Budget) for level in nest.levels):
        return nest
    levels = tuple(
        dataclasses.replace(level, chunk=None) if isinstance(level.chunk, Budget) else level for level in nest.levels
    )
    return VmapNest(levels, nest.squeeze)
