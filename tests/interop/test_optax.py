"""Training with optax through ``batched``, against the hand-written ``jax.vmap`` version.

* per-example gradients: ``batched(jax.grad(loss), "batch", layouts={"params": "..."})`` (the
  parameters shared, the data mapped) is ``jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))``; the
  result has the layout of the differentiated parameters, a batch of them; the same for
  ``jax.value_and_grad`` and for ``argnums`` other than the parameters;
* a DP-SGD step: each example's gradient clipped by its global norm, averaged, noised with a fixed
  key, then ``optax.sgd``/``optax.adam`` — the same parameters, step after step, as the ``jax.vmap``
  step, and the same as optax's own ``differentially_private_aggregate`` fed ``jax.vmap``'s gradients;
* an ordinary step whose loss calls a batched model: the gradient flows through ``batched``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, PyTree

from interop import assert_trees_close
from shapedmap import batched

optax = pytest.importorskip("optax")

XS = jax.random.normal(jax.random.key(1), (6, 3))  # 6 examples of 3 features
YS = jax.random.normal(jax.random.key(2), (6, 2))
PARAMS = {
    "w": jax.random.normal(jax.random.key(3), (3, 2)),
    "b": jnp.array([0.5, -0.5]),
}


def loss(params: PyTree[Float[Array, "..."]], x: Float[Array, " feat"], y: Float[Array, " out"]) -> Float[Array, ""]:
    """One example's squared error."""
    return jnp.sum((x @ params["w"] + params["b"] - y) ** 2)


# -- per-example gradients ---------------------------------------------------------------------


def test_per_example_gradients():
    per_example_grads = batched(jax.grad(loss), "batch", layouts={"params": "..."})
    expected = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(PARAMS, XS, YS)
    one = jax.grad(loss)(PARAMS, XS[4], YS[4])  # the reference is the loop: example 4's gradient
    assert_trees_close(jax.tree.map(lambda leaf: leaf[4], expected), one)
    assert per_example_grads.in_axes == {"batch": (None, 0, 0)}
    got = per_example_grads(PARAMS, XS, YS)
    assert jax.tree.map(jnp.shape, got) == {"w": (6, 3, 2), "b": (6, 2)}
    assert_trees_close(got, expected, exact=True)
    assert_trees_close(jax.jit(per_example_grads)(PARAMS, XS, YS), expected)


def test_per_example_value_and_grad():
    per_example = batched(jax.value_and_grad(loss), "batch", layouts={"params": "..."})
    expected = jax.vmap(jax.value_and_grad(loss), in_axes=(None, 0, 0))(PARAMS, XS, YS)
    got = per_example(PARAMS, XS, YS)
    assert jax.tree.map(jnp.shape, got) == ((6,), {"w": (6, 3, 2), "b": (6, 2)})
    assert_trees_close(got, expected, exact=True)


@pytest.mark.parametrize("argnums", [1, (0, 2)])
def test_per_example_gradients_of_other_arguments(argnums):
    """The result is a batch of what ``argnums`` differentiates: the inputs ``x``, or a tuple."""
    per_example = batched(jax.grad(loss, argnums=argnums), "batch", layouts={"params": "..."})
    expected = jax.vmap(jax.grad(loss, argnums=argnums), in_axes=(None, 0, 0))(PARAMS, XS, YS)
    assert_trees_close(per_example(PARAMS, XS, YS), expected, exact=True)


# -- DP-SGD ------------------------------------------------------------------------------------

L2_NORM_CLIP = 1.0
NOISE_MULTIPLIER = 0.5
NOISE_KEY = jax.random.key(7)


def clip(grads: PyTree[Float[Array, "..."]]) -> PyTree[Float[Array, "..."]]:
    """One example's gradient scaled down to a global norm of at most ``L2_NORM_CLIP``."""
    return jax.tree.map(lambda g: g * jnp.minimum(1.0, L2_NORM_CLIP / optax.tree.norm(grads)), grads)


def private_gradient(per_example_grads, clip_each, params, xs, ys, key):
    """DP-SGD's gradient: per-example gradients clipped, averaged, and noised with ``key``."""
    clipped = clip_each(per_example_grads(params, xs, ys))
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), clipped)
    leaves, tree = jax.tree.flatten(mean)
    noise_keys = jax.random.split(key, len(leaves))
    noise_std = L2_NORM_CLIP * NOISE_MULTIPLIER / len(xs)
    noised = [leaf + noise_std * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, noise_keys, strict=True)]
    return jax.tree.unflatten(tree, noised)


BATCHED = (batched(jax.grad(loss), "batch", layouts={"params": "..."}), batched(clip, "batch"))
HAND_WRITTEN = (jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)), jax.vmap(clip))


def test_clipping_equals_optax_per_example_clip():
    grads = HAND_WRITTEN[0](PARAMS, XS, YS)
    clipped = BATCHED[1](grads)
    assert_trees_close(clipped, HAND_WRITTEN[1](grads), exact=True)
    norms = jax.vmap(optax.tree.norm)(clipped)
    assert jnp.all(norms <= L2_NORM_CLIP * (1 + 1e-6)) and jnp.any(jax.vmap(optax.tree.norm)(grads) > L2_NORM_CLIP)
    summed, _ = optax.per_example_global_norm_clip(jax.tree.leaves(grads), L2_NORM_CLIP)
    assert_trees_close(jax.tree.leaves(jax.tree.map(lambda g: g.sum(axis=0), clipped)), summed)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.1), optax.adam(0.05)], ids=["sgd", "adam"])
def test_dp_sgd_training_equals_the_jax_vmap_version(optimizer):
    def train(transforms):
        params, state, key = PARAMS, optimizer.init(PARAMS), NOISE_KEY
        for _ in range(3):
            key, step_key = jax.random.split(key)
            grads = private_gradient(*transforms, params, XS, YS, step_key)
            updates, state = optimizer.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params

    expected = train(HAND_WRITTEN)
    assert not np.allclose(expected["w"], PARAMS["w"])  # the steps moved the parameters
    assert_trees_close(train(BATCHED), expected, exact=True)


def test_dp_sgd_gradient_equals_optax_differentially_private_aggregate():
    """optax's DP aggregation of the batched per-example gradients is the one of ``jax.vmap``'s."""
    aggregate = optax.contrib.differentially_private_aggregate(L2_NORM_CLIP, NOISE_MULTIPLIER, key=NOISE_KEY)
    state = aggregate.init(PARAMS)
    expected, _ = aggregate.update(HAND_WRITTEN[0](PARAMS, XS, YS), state)
    got, _ = aggregate.update(BATCHED[0](PARAMS, XS, YS), state)
    assert_trees_close(got, expected, exact=True)
    without_noise = optax.contrib.differentially_private_aggregate(L2_NORM_CLIP, 0.0, key=NOISE_KEY)
    mean, _ = without_noise.update(BATCHED[0](PARAMS, XS, YS), without_noise.init(PARAMS))
    clipped_mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), BATCHED[1](BATCHED[0](PARAMS, XS, YS)))
    assert_trees_close(mean, clipped_mean)


# -- a loss that calls a batched model ---------------------------------------------------------


def predict(params: PyTree[Float[Array, "..."]], x: Float[Array, " feat"]) -> Float[Array, " out"]:
    return jnp.tanh(x @ params["w"] + params["b"])


def test_training_through_a_batched_model():
    predict_each = batched(predict, "batch", layouts={"params": "..."})
    optimizer = optax.adam(0.05)

    def train(predictions):
        @jax.jit
        def step(params, state):
            grads = jax.grad(lambda p: jnp.mean((predictions(p, XS) - YS) ** 2))(params)
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        params, state = PARAMS, optimizer.init(PARAMS)
        for _ in range(3):
            params, state = step(params, state)
        return params

    expected = train(jax.vmap(predict, in_axes=(None, 0)))
    assert not np.allclose(expected["w"], PARAMS["w"])
    assert_trees_close(train(predict_each), expected)
