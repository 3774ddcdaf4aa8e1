"""Decorating the same function with the same options again reuses what the first decoration built
(``shapedmap._rebuilt``): ``batched(self.mlp, "batch")`` written inside ``__call__`` reads the
annotations once, not on every call, without keeping ``self`` alive (docs/architecture.md,
Guarantees: memory) and without one object's calls reaching another's.

Each test compares with the hand-written ``jax.vmap`` of the same callable; a hit is seen as the
second plan sharing the first's arguments (the memo gives a copy of the remembered plan, with a
memo of its own), a miss as two plans built apart. Costs are measured in
``benchmarks/rebuild.py``, never asserted here.
"""

import functools
import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

from shapedmap import Budget, ShapeError, SpecError, batched
from shapedmap._plan import plan_of
from shapedmap._rebuilt import _BUILT, MAX_FUNCTIONS

eqx = pytest.importorskip("equinox")


def shared(first, second):
    """Did ``second`` reuse the plan ``first`` built (a hit)?"""
    return plan_of(first).arguments is plan_of(second).arguments


def norm(x: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.sqrt(x @ x)


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return self.factor * x


class Linear(eqx.Module):
    weight: Array

    def project(self, x: Float[Array, "n"]) -> Float[Array, "m"]:
        return self.weight @ x

    def __call__(self, x: Float[Array, "n"]) -> Float[Array, "m"]:
        return jnp.tanh(self.weight @ x)


X = jnp.arange(12.0).reshape(4, 3)


def test_the_same_function_and_options_hit():
    first, second = batched(norm, "b"), batched(norm, "b")
    assert shared(first, second) and first is not second
    np.testing.assert_allclose(second(X), jax.vmap(norm)(X))


def test_each_build_has_its_own_memo():
    first, second = batched(norm, "b"), batched(norm, "b")
    first(X)
    assert plan_of(first)._memo is not plan_of(second)._memo
    assert len(plan_of(second)._memo) == 0  # nothing of first's calls (its vmap nests, its checks)


@pytest.mark.parametrize(
    "options",
    [
        {"spec": "c"},
        {"spec": "b n -> b"},
        {"spec": "b", "check": False},
        {"spec": "b", "layouts": {"x": "n b"}},
        {"spec": "b", "chunk": {"b": 2}},
    ],
    ids=["spec", "signature", "check", "layouts", "chunk"],
)
def test_different_options_miss(options):
    spec = options.pop("spec")
    other = batched(norm, spec, **options)
    assert not shared(batched(norm, "b"), other)
    x = X.T if "layouts" in options else X
    in_axes = 1 if "layouts" in options else 0
    np.testing.assert_allclose(other(x), jax.vmap(norm, in_axes)(x), rtol=1e-6)


def test_a_different_function_misses():
    def other(x: Float[Array, "n"]) -> Float[Array, ""]:
        return x.sum()

    assert not shared(batched(norm, "b"), batched(other, "b"))


def test_a_bound_method_of_another_object_hits_and_computes_with_its_own_object():
    two, three = batched(Scaler(2.0).apply, "b"), batched(Scaler(3.0).apply, "b")
    assert shared(two, three)
    np.testing.assert_array_equal(two(X), jax.vmap(Scaler(2.0).apply)(X))
    np.testing.assert_array_equal(three(X), jax.vmap(Scaler(3.0).apply)(X))


def test_an_equinox_bound_method_hits_each_access():
    model = Linear(jnp.ones((2, 3)))
    assert model.project is not model.project  # a new BoundMethod each access
    first, second = batched(model.project, "b"), batched(model.project, "b")
    assert shared(first, second)
    np.testing.assert_array_equal(second(X), jax.vmap(model.project)(X))
    other = Linear(2 * jnp.ones((2, 3)))
    np.testing.assert_array_equal(batched(other.project, "b")(X), jax.vmap(other.project)(X))


def test_an_equinox_module_rebuilt_under_each_jit_trace_hits():
    plans = []

    @jax.jit
    def step(weight, x):
        model = Linear(weight)  # a new module, of tracers, on every trace
        mapped = batched(model, "b")
        plans.append(plan_of(mapped))
        return mapped(x)

    for rows in (2, 5):  # two shapes: two traces
        weight = jnp.arange(rows * 3.0).reshape(rows, 3)
        np.testing.assert_allclose(step(weight, X), jax.vmap(Linear(weight))(X), rtol=1e-6)
    assert len(plans) == 2 and plans[0].arguments is plans[1].arguments


def test_the_wrapper_shows_the_same_face():
    first, second = batched(Scaler(2.0).apply, "b"), batched(Scaler(5.0).apply, "b")
    for name in ("__name__", "__qualname__", "__module__", "__doc__", "__signature__", "signature", "in_axes"):
        assert getattr(first, name) == getattr(second, name), name
    assert second.fn.__self__.factor == 5.0


def test_self_is_not_kept_alive():
    scaler = Scaler(2.0)
    mapped = batched(scaler.apply, "b")
    mapped(X)
    batched(scaler.apply, "b")(X)  # a hit
    dead = weakref.ref(scaler)
    del scaler, mapped
    gc.collect()
    assert dead() is None


def test_an_equinox_module_is_not_kept_alive():
    model = Linear(jnp.ones((2, 3)))
    batched(model.project, "b")(X)
    batched(model, "b")(X)
    batched(model, "b")(X)
    dead = weakref.ref(model)
    del model
    gc.collect()
    assert dead() is None


def test_a_dropped_function_takes_its_entries_with_it():
    def make():
        def closure(x: Float[Array, "n"]) -> Float[Array, ""]:
            return x.sum()

        return closure

    closure = make()
    batched(closure, "b")
    assert _BUILT._functions.get(closure) is not None
    dead = weakref.ref(closure)
    del closure
    gc.collect()
    assert dead() is None


def test_the_memo_is_bounded():
    def make():
        def closure(x: Float[Array, "n"]) -> Float[Array, ""]:
            return x.sum()

        return closure

    kept = [make() for _ in range(MAX_FUNCTIONS + 20)]  # alive, so only the bound can drop them
    for closure in kept:
        batched(closure, "b")
    assert len(_BUILT) <= MAX_FUNCTIONS


def test_wrappers_whose_plan_depends_on_what_they_wrap_are_read_again():
    def scale(x: Float[Array, "n"], factor: Float[Array, ""]) -> Float[Array, "n"]:
        return factor * x

    first = batched(functools.partial(scale, factor=jnp.float32(2.0)), "b")
    second = batched(functools.partial(scale, factor=jnp.float32(2.0)), "b")
    assert not shared(first, second)
    jitted_first, jitted_second = batched(jax.jit(norm), "b"), batched(jax.jit(norm), "b")
    assert not shared(jitted_first, jitted_second)
    np.testing.assert_allclose(jitted_second(X), jax.vmap(norm)(X))


class Square(eqx.Module):
    weight: Array

    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return self.weight @ x


def test_later_builds_share_the_argument_checks():
    first = batched(norm, "b")
    second, third = batched(norm, "b"), batched(norm, "b")
    second(X)
    shared_checks = plan_of(second)._shared_checks
    assert plan_of(third)._shared_checks is shared_checks and len(shared_checks) == 1
    assert "_shared_checks" not in plan_of(first).__dict__  # the first build's plan is its own
    np.testing.assert_allclose(third(X), jax.vmap(norm)(X))


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_an_objects_results_are_checked_though_the_argument_checks_are_shared(transform):
    """The same argument shapes, another object: its result can break the annotation (G3, G11)."""
    square, wide = Square(jnp.eye(3)), Square(jnp.ones((4, 3)))
    np.testing.assert_array_equal(transform(batched(square.apply, "b"))(X), jax.vmap(square.apply)(X))
    np.testing.assert_array_equal(transform(batched(square.apply, "b"))(X), jax.vmap(square.apply)(X))
    with pytest.raises(ShapeError, match=r"(?s)Square\.apply: .*but size 4 in the return value"):
        transform(batched(wide.apply, "b"))(X)


@pytest.mark.parametrize(
    ("good", "bad"),
    [({"b": 2}, {"b": 2.0}), ({"b": 1}, {"b": True}), ({"b": Budget(bytes=2**20)}, {"b": Budget(bytes=2.0**20)})],
    ids=["float", "bool", "budget"],
)
def test_options_equal_in_python_but_not_the_same_miss(good, bad):
    """``{"b": 2.0} == {"b": 2}``: the second is still refused, not a hit of the first."""
    batched(norm, "b", chunk=good)
    with pytest.raises(SpecError, match="norm: chunk="):
        batched(norm, "b", chunk=bad)
