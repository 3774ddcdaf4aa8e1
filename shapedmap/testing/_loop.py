"""``check_batched``: the batched call equals the naive Python loop over its batch.

For one drawn example, ``_Checker`` calls the batched function (eagerly, then under
``jax.jit``), checks every output against its batched annotation with the core's own checks,
runs the per-example function ``fn.fn`` once per batch index (every combination of every
batch name, outermost first) on the arguments indexed there, and compares each loop output
with the batched output at that index. Indexing is by name, through each layout's
``Placement``: an argument without a batch name is passed whole, a size-1 broadcast dim is
read at 0. The first failure is a ``BatchedCheckError`` that says which and where.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import hypothesis
import hypothesis.strategies as st
import jax

from .._checks import check_arguments, check_results
from .._errors import ShapeError, describe_value
from .._key_checks import split_keys
from .._layout_trees import map_placed
from .._places import result_place
from .._plan import Plan, plan_of
from ._compare import tree_difference
from ._indexing import index_space, take
from ._strategies import inputs
from ._trees import is_bare_tree

__all__ = ["BatchedCheckError", "check_batched"]


class BatchedCheckError(AssertionError):
    """The batched function does not equal its naive loop, or contradicts its annotations.

    Attributes:
        function: the batched function's name.
        reason: ``"raised"``, ``"annotation"``, ``"loop raised"`` or ``"mismatch"``.
        mode: ``"eager"`` or ``"jit"`` (None for the loop).
        batch_index: the first batch index (``{"graph": 1}``) where batched and loop differ,
            or where the loop raised; None otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        function: str,
        reason: str,
        mode: str | None = None,
        batch_index: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.function = function
        self.reason = reason
        self.mode = mode
        self.batch_index = batch_index


def check_batched(
    fn: Callable[..., Any],
    /,
    *,
    max_examples: int | None = None,
    jit: bool = True,
    settings: hypothesis.settings | None = None,
    data: st.DataObject | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    given: dict[str, Any] | None = None,
    static: dict[str, Any] | None = None,
    elements: dict[str, st.SearchStrategy[Any]] | None = None,
    sizes: dict[str, Any] | None = None,
    max_size: int = 4,
    allow_empty: bool = False,
    **fixed_sizes: Any,
) -> None:
    """Check that ``fn`` equals the naive loop over its batch, eagerly and under ``jax.jit``.

    For inputs drawn by ``inputs(fn, ...)``: the batched call must not raise, every output
    must match its annotated (batched) shape and dtype, and for every batch index (every
    combination of every batch name) the batched output at that index must equal
    ``fn.fn`` called on the arguments at that index — an argument that lacks a batch name
    is passed whole, a size-1 broadcast dim at index 0.

    How many examples: ``check_batched`` runs its own Hypothesis test under ``settings``
    (default: the current profile, ``hypothesis.settings.default``, with ``deadline=None``),
    with ``max_examples`` if given. Inside a ``@given`` test, pass ``data=`` (from
    ``st.data()``) instead: one example is drawn from it per call, so the outer test's
    ``@settings``, shrinking and database drive everything.

    Args:
        fn: a function made by ``shapedmap.batched``.
        max_examples: the number of examples (overrides ``settings``).
        jit: also compare ``jax.jit(fn)`` with the loop.
        settings: the Hypothesis settings to run under.
        data: a ``st.data()`` object: check one example drawn from it, run no test of our own.
        rtol, atol: tolerances for inexact dtypes (default by dtype: 1e-5 for 32-bit,
            1e-2 for 16-bit, 1e-10 for 64-bit, both).
        given, static, elements, sizes, max_size, allow_empty, **fixed_sizes: as for ``inputs``:
            ``given=`` fixes any parameter's value (a model's parameters, a model, a key, a
            config), or draws it from a strategy; the loop indexes a given value like any other.

    Raises:
        BatchedCheckError: (an ``AssertionError``) on the first failure, after Hypothesis
            shrank it: the inputs' shapes, the first differing batch index, both values
            there and the largest difference.
        TypeError: with ``data=`` and also ``max_examples=`` or ``settings=``; without ``data=``
            inside a ``@given`` test.
        ValueError: for an option ``inputs`` rejects (an unknown dim or parameter name…).

    Example:
        >>> from shapedmap.examples import pairwise
        >>> check_batched(pairwise, max_examples=10, f=3)

        Per-example gradients, the parameters shared (``layouts={"params": None}``) and given:

        >>> import jax, jax.numpy as jnp
        >>> from jaxtyping import Array, Float, PyTree
        >>> from shapedmap import batched
        >>> def loss(params: PyTree[Float[Array, "..."]], x: Float[Array, "3"]) -> Float[Array, ""]:
        ...     return jnp.sum(x * params["w"]) ** 2
        >>> grads = batched(jax.grad(loss), "batch", layouts={"params": None})
        >>> check_batched(grads, max_examples=5, given={"params": {"w": jnp.arange(3.0)}})
    """
    strategy = inputs(
        fn,
        given=given,
        static=static,
        elements=elements,
        sizes=sizes,
        max_size=max_size,
        allow_empty=allow_empty,
        **fixed_sizes,
    )
    checker = _Checker(fn, plan_of(fn), jit, rtol, atol, given=given or {})
    if data is not None:
        if max_examples is not None or settings is not None:
            raise TypeError(
                f"check_batched({checker.function}): with data=, the outer @given test's settings decide how "
                "many examples run; drop max_examples=/settings= or call check_batched outside @given"
            )
        checker.check(data.draw(strategy, label=f"inputs({checker.function})"))
        return
    if hypothesis.currently_in_test_context():
        raise TypeError(
            f"check_batched({checker.function}) was called inside a @given test: that nests one Hypothesis "
            "test in another. Pass data= (from st.data()) to draw one example per outer example, or call it "
            "from a plain test function"
        )
    if settings is None:
        parent = hypothesis.settings.default
        settings = hypothesis.settings(parent, deadline=None, report_multiple_bugs=False)
    if max_examples is not None:
        settings = hypothesis.settings(settings, max_examples=max_examples)

    def test(example: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        checker.check(example)

    test.__name__ = test.__qualname__ = "check_batched_" + re.sub(r"\W", "_", checker.function)
    property_test = hypothesis.settings(settings)(hypothesis.given(strategy)(test))
    # Keep each function's failing examples apart in the example database.
    property_test.hypothesis.inner_test._hypothesis_internal_add_digest = (
        f"shapedmap.check_batched:{getattr(fn, '__module__', '')}.{checker.function}:{getattr(fn, 'signature', '')}"
    ).encode()
    property_test()


class _Checker:
    """One example: call batched (eager, jit), check outputs, loop, compare."""

    def __init__(
        self,
        fn: Callable[..., Any],
        plan: Plan,
        jit: bool,
        rtol: float | None,
        atol: float | None,
        given: dict[str, Any],
    ) -> None:
        self.fn = fn
        self.plan = plan
        # PyTree parameters drawn as generic trees: a body that needs a structure fails on them.
        self.drawn_trees = tuple(
            a.name
            for a in plan.arguments
            if a.value.kind == "tree" and is_bare_tree(a.value.hint) and a.name not in given
        )
        # Static parameters given a value: its arrays, if any, bind no sizes for the drawn ones.
        # Given values that bind no sizes for the drawn ones: static, or of a layout that names no dim.
        self.unsized_given = {
            a.name: "is static (not annotated as an array)"
            if a.placement is None
            else f"has layout '{a.placement.batched}', which names no dim"
            for a in plan.arguments
            if a.name in given and (a.placement is None or not a.placement.batched.names())
        }
        self.function = plan.function
        self.jit = jit
        self.rtol = rtol
        self.atol = atol
        # A bound method (obj.method) is called through its function, with obj first.
        self.call_fn = fn.__func__ if inspect.ismethod(fn) else fn
        self.bound_first = (fn.__self__,) if inspect.ismethod(fn) else ()
        self.signature = inspect.signature(self.call_fn)
        self._jitted: dict[Any, Callable[[dict[str, Any]], Any]] = {}

    def check(self, example: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        args, kwargs = example
        bound = self.signature.bind(*self.bound_first, *args, **kwargs)
        bound.apply_defaults()
        described = self.describe(bound)
        try:
            output = self.fn(*args, **kwargs)
        except Exception as error:
            self.fail(
                "raised",
                f"the batched call raised {type(error).__name__} on inputs drawn from its own annotations",
                described,
                _indent(str(error)) + self.drawing_hints(bound),
                cause=error,
            )
        self.check_annotations(bound, output, described, "eager")
        loop = list(self.loop(self.with_split_keys(bound), described))
        self.compare(output, loop, described, "eager")
        if self.jit:
            # A keyword a partial binds, not passed, is not passed under jit either (it would override it).
            omitted = self.plan.bound_keywords - kwargs.keys()
            dynamic = {
                a.name: bound.arguments[a.name]
                for a in self.plan.arguments
                if a.placement is not None and a.name not in omitted
            }
            try:
                jitted = self.jitted(bound, omitted)(dynamic)
            except Exception as error:
                self.fail(
                    "raised",
                    f"the batched call raised {type(error).__name__} under jax.jit (but not eagerly)",
                    described,
                    _indent(str(error)),
                    mode="jit",
                    cause=error,
                )
            self.check_annotations(bound, jitted, described, "jit")
            self.compare(jitted, loop, described, "jit")

    # -- pieces --------------------------------------------------------------------------

    def jitted(
        self, bound: inspect.BoundArguments, omitted: frozenset[str] = frozenset()
    ) -> Callable[[dict[str, Any]], Any]:
        """``jax.jit`` of the call with the static arguments closed over; one per static values,
        so examples of shapes seen before reuse the compiled program.

        Literal static values are told apart by type and ``repr``, not ``==``: ``0.0`` and
        ``-0.0``, or ``(1, 2)`` and ``(1, 2.0)``, compare equal but compute differently. Any other
        object (a model given with ``given=``) by identity: two models' ``repr`` can be equal
        (equinox prints its arrays' shapes) while their weights differ. The cached program holds
        the object, so its id is not reused while it is cached.
        """
        statics = tuple(
            (a.name, *_static_key(bound.arguments[a.name]))
            for a in self.plan.arguments
            if a.placement is None and a.name not in omitted
        ) + tuple(sorted(omitted))
        try:
            return self._jitted[statics]
        except (KeyError, TypeError):
            pass

        def call(values: dict[str, Any]) -> Any:
            given = {**bound.arguments, **values}
            rebound = inspect.BoundArguments(self.signature, {k: v for k, v in given.items() if k not in omitted})
            return self.call_fn(*rebound.args, **rebound.kwargs)

        compiled = jax.jit(call)
        with contextlib.suppress(TypeError):  # unhashable static values: not cached
            self._jitted[statics] = compiled
        return compiled

    def with_split_keys(self, bound: inspect.BoundArguments) -> inspect.BoundArguments:
        """``bound`` with each ``SplitKey`` parameter's key split into one key per example, as the call
        splits it (``jax.random.split(key, batch_shape)``): what the loop indexes."""
        if not self.plan.split_keys:
            return bound
        values = [bound.arguments[argument.name] for argument in self.plan.arguments]
        bindings, checked = check_arguments(self.plan, values)
        split = split_keys(self.plan, checked, bindings)
        keys = {self.plan.arguments[i].name: split[i] for i in self.plan.split_keys}
        return inspect.BoundArguments(self.signature, {**bound.arguments, **keys})

    def describe(self, bound: inspect.BoundArguments) -> str:
        parts = []
        for argument in self.plan.arguments:
            value = bound.arguments.get(argument.name)
            if argument.placement is None:
                if argument.variadic and not value:
                    continue
                text = " ".join(repr(value).split())  # a model's repr spans lines
                parts.append(f"{argument.name}={text if len(text) <= 60 else text[:57] + '...'}")
            elif argument.value.kind == "array" or value is None:
                parts.append(f"{argument.name}: {describe_value(value)}")
            else:
                shapes = jax.tree_util.tree_map(describe_value, value)
                parts.append(f"{argument.name}: {shapes!r}".replace("'", ""))
        return ", ".join(parts)

    def drawing_hints(self, bound: inspect.BoundArguments) -> str:
        """Where the body raised: what drawing could not know, and how to say it."""
        hint = ""
        if self.drawn_trees:
            names = ", ".join(f"'{name}'" for name in self.drawn_trees)
            example = ", ".join(f"{name!r}: ..." for name in self.drawn_trees)
            verb = "is" if len(self.drawn_trees) == 1 else "are"
            hint += (
                f"\n  if the function needs a particular tree, give it: given={{{example}}}; {names} {verb} "
                "annotated PyTree[...] without a structure, so inputs() drew small tuples and dicts of arrays"
            )
        for name, why in self.unsized_given.items():
            if _has_arrays(bound.arguments.get(name)):
                hint += (
                    f"\n  if the drawn arguments must fit the arrays given for '{name}', fix the sizes they need "
                    f"by name (feat=3, or sizes={{...}}): '{name}' {why}, so its arrays bind no sizes"
                )
        return hint

    def fail(
        self,
        reason: str,
        what: str,
        described: str,
        details: str,
        *,
        mode: str | None = "eager",
        batch_index: dict[str, Any] | None = None,
        cause: BaseException | None = None,
    ) -> NoReturn:
        message = f"check_batched({self.function}): {what}\n  inputs: {described}\n{details}"
        raise BatchedCheckError(
            message, function=self.function, reason=reason, mode=mode, batch_index=batch_index
        ) from cause

    def check_annotations(self, bound: inspect.BoundArguments, output: Any, described: str, mode: str) -> None:
        """Every output leaf against its batched layout and dtype (even with checks off)."""
        values = [bound.arguments[argument.name] for argument in self.plan.arguments]
        try:
            bindings, _ = check_arguments(self.plan, values)
            check_results(self.plan, bindings, output)
        except ShapeError as error:
            where = " under jax.jit" if mode == "jit" else ""
            self.fail(
                "annotation", f"the output contradicts its annotation{where}", described, _indent(str(error)), mode=mode
            )

    def loop(self, bound: inspect.BoundArguments, described: str) -> Iterator[tuple[dict[str, Any], Any]]:
        """``(batch index, fn.fn output)`` for every batch index, outermost name first."""
        space = index_space(self.plan, bound)
        for index in itertools.product(*(values for _, values in space)):
            batch_index = {name: i for (name, _), i in zip(space, index, strict=True)}
            updates = {}
            for argument in self.plan.arguments:
                value = bound.arguments.get(argument.name)
                if argument.placement is not None and value is not None:
                    at = functools.partial(take, batch_index=batch_index, broadcast=True)
                    updates[argument.name] = map_placed(at, argument.placement, value)
            rebound = inspect.BoundArguments(self.signature, {**bound.arguments, **updates})
            try:
                output = self.fn.fn(*rebound.args, **rebound.kwargs)
            except Exception as error:
                hint = ""
                if "unbound axis name" in str(error):
                    hint = (
                        "\n  the per-example function uses a collective over a batch name (jax.lax.psum...), "
                        "which a Python loop cannot evaluate: check_batched does not apply to it"
                    )
                self.fail(
                    "loop raised",
                    f"the per-example function {self.function} raised {type(error).__name__} at batch "
                    f"index {_index_text(batch_index)} of the loop",
                    described,
                    _indent(str(error)) + hint + self.drawing_hints(bound),
                    mode=None,
                    batch_index=batch_index,
                    cause=error,
                )
            yield batch_index, output

    def compare(self, output: Any, loop: list[tuple[dict[str, Any], Any]], described: str, mode: str) -> None:
        results = output if self.plan.returns_tuple else (output,)
        for batch_index, expected in loop:
            per_example = expected if self.plan.returns_tuple else (expected,)
            for position, (result, batched_value, loop_value) in enumerate(
                zip(self.plan.results, results, per_example, strict=True)
            ):
                at = functools.partial(take, batch_index=batch_index)
                got = map_placed(at, result.placement, batched_value)
                problem = self.difference(got, loop_value, result_place(self.plan.returns_tuple, position))
                if problem is not None:
                    how = "under jax.jit" if mode == "jit" else "eagerly"
                    self.fail(
                        "mismatch",
                        f"the batched call ({how}) differs from the loop over the batch",
                        described,
                        f"  first differing batch index: {_index_text(batch_index)}\n  {problem}",
                        mode=mode,
                        batch_index=batch_index,
                    )

    def difference(self, batched: Any, loop: Any, place: str) -> str | None:
        """None when one result at one batch index equals the loop's, else where and how not."""
        return tree_difference(batched, loop, place, self.rtol, self.atol)


def _has_arrays(value: Any) -> bool:
    try:
        return any(hasattr(leaf, "shape") for leaf in jax.tree_util.tree_leaves(value))
    except Exception:  # not a PyTree JAX can flatten: no arrays of ours
        return False


def _static_key(value: Any) -> tuple[Any, ...]:
    """What tells one static value from another for the jit cache: literals by type and ``repr``,
    other objects by identity."""
    if _is_literal(value):
        return type(value), repr(value)
    return object, id(value)


def _is_literal(value: Any) -> bool:
    if isinstance(value, tuple | frozenset):
        return all(_is_literal(item) for item in value)
    return value is None or isinstance(value, bool | int | float | complex | str | bytes)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _index_text(batch_index: dict[str, Any]) -> str:
    return ", ".join(f"{name}={index}" for name, index in batch_index.items()) or "(no batch dims)"
