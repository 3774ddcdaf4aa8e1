"""flax.linen modules run per example through ``batched``, against the hand-written ``jax.vmap`` version.

The ways flax users combine linen with ``jax.vmap``:

* functional: ``jax.vmap(model.apply, in_axes=(None, 0))(variables, xs)`` (shared parameters, one
  example at a time), ``jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))`` (per-example gradients),
  ``jax.vmap(model.init, in_axes=(0, None))(keys, x)`` (an ensemble: one model per key);
* inside a ``@nn.compact`` method: a per-example body applying ``nn.Dense`` layers, mapped with
  ``jax.vmap`` over the batch, so that the layers (and, at ``init``, their parameters) are created
  inside the mapped body. Flax 0.12 does not reject a JAX transform there (its trace-level check,
  ``flax.core.tracers.check_trace_level``, is a no-op): the parameters are not batched, and the tree
  equals the one of the same layers initialised on one example, which the tests check too.

In the second form the body's side effects are visible: every run of it inside ``Module.init``
creates its layers again (``Dense_2``, ``Dense_3``, ...), so ``batched`` must run it exactly as
``jax.vmap`` does: once per call, and once per trace under ``jax.jit``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Key, PyTree

from shapedmap import batched

nn = pytest.importorskip("flax.linen")

KEY = jax.random.key(0)
XS = jax.random.normal(jax.random.key(1), (5, 4))  # 5 examples of 4 features
YS = jax.random.normal(jax.random.key(2), (5, 3))


class MLP(nn.Module):
    hidden: int = 8
    out: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out)(nn.relu(nn.Dense(self.hidden)(x)))


MODEL = MLP()
VARIABLES = MODEL.init(KEY, XS[0])


def assert_trees_equal(got, expected):
    """Same structure (the same keys: no extra layer), same shapes and dtypes, the same values."""
    assert jax.tree.structure(got) == jax.tree.structure(expected), (
        jax.tree.map(jnp.shape, got),
        jax.tree.map(jnp.shape, expected),
    )
    assert jax.tree.map(jnp.shape, got) == jax.tree.map(jnp.shape, expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


# -- functional: init and apply called inside the per-example body ---------------------------


def apply(variables: PyTree[Float[Array, "..."]], x: Float[Array, "feat"]) -> Float[Array, "out"]:
    return MODEL.apply(variables, x)


@pytest.mark.parametrize(
    "per_example",
    [batched(apply, "b", layouts={"variables": "..."}), batched(apply, "..., b feat -> b out")],
    ids=["layouts", "signature"],
)
def test_apply_per_example_with_shared_params(per_example):
    expected = jax.vmap(MODEL.apply, in_axes=(None, 0))(VARIABLES, XS)
    np.testing.assert_allclose(expected, jnp.stack([MODEL.apply(VARIABLES, x) for x in XS]), rtol=1e-6, atol=1e-6)
    assert per_example.in_axes == {"b": (None, 0)}
    np.testing.assert_array_equal(per_example(VARIABLES, XS), expected)
    np.testing.assert_allclose(jax.jit(per_example)(VARIABLES, XS), expected, rtol=1e-6, atol=1e-6)


def loss(variables, x, y):
    return jnp.sum((MODEL.apply(variables, x) - y) ** 2)


def per_example_grads(
    variables: PyTree[Float[Array, "..."]], x: Float[Array, "feat"], y: Float[Array, "out"]
) -> PyTree[Float[Array, "..."]]:
    return jax.grad(loss)(variables, x, y)


def test_per_example_gradients():
    grads = batched(per_example_grads, "..., b feat, b out -> b ...")
    expected = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(VARIABLES, XS, YS)
    got = grads(VARIABLES, XS, YS)
    assert jax.tree.map(jnp.shape, got)["params"]["Dense_1"]["kernel"] == (5, 4, 8)
    assert_trees_equal(got, expected)
    jitted = jax.jit(grads)(VARIABLES, XS, YS)
    assert jax.tree.structure(jitted) == jax.tree.structure(expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), jitted, expected)


def init_one(key: Key[Array, ""], x: Float[Array, "feat"]) -> PyTree[Float[Array, "..."]]:
    return MODEL.init(key, x)


def test_ensemble_init_one_model_per_key():
    keys = jax.random.split(jax.random.key(3), 4)
    ensemble = batched(init_one, "e, feat -> e ...")
    expected = jax.vmap(MODEL.init, in_axes=(0, None))(keys, XS[0])
    for index in (0, 3):  # the reference is the loop: model ``index`` is the one its key gives
        assert_trees_equal(jax.tree.map(lambda leaf, i=index: leaf[i], expected), MODEL.init(keys[index], XS[0]))
    assert_trees_equal(ensemble(keys, XS[0]), expected)
    assert_trees_equal(jax.jit(ensemble)(keys, XS[0]), expected)


# -- inside a compact method: the layers are created in the per-example body -------------------


def layers(x):
    """The per-example body: two Dense layers, created where it runs (inside a compact method)."""
    return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))


class Reference(nn.Module):
    """The hand-written version: ``jax.vmap`` over the body inside the compact method."""

    @nn.compact
    def __call__(self, xs):
        return jax.vmap(layers)(xs)


class OneExample(nn.Module):
    """The same layers on one example: what the reference's parameters and outputs must match."""

    @nn.compact
    def __call__(self, x):
        return layers(x)


def batched_module(form):
    """A linen module running ``layers`` per example through ``batched``: a batched function called in
    its compact method, or a batched method of its own (``self`` held static). A fresh class (and a
    fresh batched function) on every call, so that no test sees another's caches."""
    if form == "function":

        @batched("b")
        def per_example(x: Float[Array, "feat"]) -> Float[Array, "out"]:
            return layers(x)

        class Model(nn.Module):
            @nn.compact
            def __call__(self, xs):
                return per_example(xs)

    else:

        class Model(nn.Module):
            hidden: int = 8

            @nn.compact
            def __call__(self, xs):
                return self.per_example(xs)

            @batched("b")
            def per_example(self, x: Float[Array, "feat"]) -> Float[Array, "out"]:
                return nn.Dense(3)(nn.relu(nn.Dense(self.hidden)(x)))

    return Model()


def run(mode, function, *args):
    return jax.jit(function)(*args) if mode == "jit" else function(*args)


def test_reference_creates_each_layer_once_and_matches_one_example():
    variables = Reference().init(KEY, XS)
    assert set(variables["params"]) == {"Dense_0", "Dense_1"}
    assert_trees_equal(variables, OneExample().init(KEY, XS[0]))
    expected = jnp.stack([OneExample().apply(variables, x) for x in XS])
    np.testing.assert_allclose(Reference().apply(variables, XS), expected, rtol=1e-6, atol=1e-6)
    assert_trees_equal(jax.jit(Reference().init)(KEY, XS), variables)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("form", ["function", "method"])
def test_init_inside_compact_method_creates_the_reference_params(form, mode):
    expected = Reference().init(KEY, XS)
    model = batched_module(form)
    variables = run(mode, model.init, KEY, XS)
    assert set(variables["params"]) == {"Dense_0", "Dense_1"}, jax.tree.map(jnp.shape, variables)
    assert_trees_equal(variables, expected)
    np.testing.assert_allclose(
        run(mode, model.apply, variables, XS), Reference().apply(expected, XS), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("form", ["function", "method"])
def test_apply_inside_compact_method_uses_the_reference_params(form, mode):
    """``apply`` first, on a fresh batched function: the body finds the layers ``init`` created."""
    variables = Reference().init(KEY, XS)
    expected = Reference().apply(variables, XS)
    model = batched_module(form)
    for xs in (XS, XS[:2]):
        got = run(mode, model.apply, variables, xs)
        np.testing.assert_allclose(got, Reference().apply(variables, xs), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(run(mode, model.apply, variables, XS), expected, rtol=1e-6, atol=1e-6)
