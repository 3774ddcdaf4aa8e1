"""The edges of batching a JAX transform's result (checkpoint, allow_int, cloudpickle), against hand-written ``jax.vmap``.

* ``jax.checkpoint``/``jax.remat`` (and other wrappers that copy the annotations) around ``jax.grad``
  return the gradient, not the loss: they are seen through to the transform.
* ``jax.grad(..., allow_int=True)`` gives an integer parameter a ``float0`` gradient, as ``jax.vmap`` does.
* A batched gradient round-trips through cloudpickle and computes and checks as the original
  (docs/architecture.md, Guarantees: pickling): cloudpickle rebuilds JAX's closures by value.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Int

from shapedmap import ShapeError, batched, describe

W = jnp.array([0.5, -1.0, 2.0])
XS = jnp.arange(15.0).reshape(5, 3) / 7
YS = jnp.linspace(-1.0, 1.0, 5)
SHARED_W = (None, 0, 0)


def linear_loss(w: Float[Array, "feat"], x: Float[Array, "feat"], y: Float[Array, ""]) -> Float[Array, ""]:
    return (x @ w - y) ** 2


def assert_trees_equal(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        if a.dtype != jax.dtypes.float0:
            np.testing.assert_allclose(a, b, rtol=1e-6)


# -- checkpoint/remat of a gradient -----------------------------------------------------------------


def logged(fn):
    """A user decorator that keeps the result (functools.wraps copies the annotations)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


WRAPPED_GRADIENTS = {
    "checkpoint(grad)": lambda: jax.checkpoint(jax.grad(linear_loss)),
    "remat(value_and_grad)": lambda: jax.remat(jax.value_and_grad(linear_loss)),
    "checkpoint(grad argnums=(0, 1))": lambda: jax.checkpoint(jax.grad(linear_loss, argnums=(0, 1))),
    "named_call(checkpoint(grad))": lambda: jax.named_call(jax.checkpoint(jax.grad(linear_loss))),
    "jit(checkpoint(grad))": lambda: jax.jit(jax.checkpoint(jax.grad(linear_loss))),
    "decorator(grad)": lambda: logged(jax.grad(linear_loss)),
    "grad(checkpoint)": lambda: jax.grad(jax.checkpoint(linear_loss)),
}


@pytest.mark.parametrize("make", WRAPPED_GRADIENTS.values(), ids=WRAPPED_GRADIENTS.keys())
def test_a_wrapped_gradient_equals_vmap(make):
    expected = jax.vmap(make(), in_axes=SHARED_W)(W, XS, YS)
    per_example = batched(make(), "b", layouts={"w": None})
    assert_trees_equal(per_example(W, XS, YS), expected)
    assert_trees_equal(jax.jit(per_example)(W, XS, YS), expected)


def test_a_checkpointed_gradient_is_described_and_checked_as_the_gradient():
    per_example = batched(jax.checkpoint(jax.grad(linear_loss)), "b", layouts={"w": None})
    assert describe(per_example).signature == "feat, b feat, b -> b feat"
    with pytest.raises(ShapeError) as caught:
        per_example(jnp.ones(4), XS, YS)
    assert str(caught.value).startswith("jax.grad(linear_loss): dimension 'feat' has size 4 in argument 'w'")


# -- allow_int ----------------------------------------------------------------------------------------


def scaled_loss(w: Float[Array, "feat"], n: Int[Array, ""], x: Float[Array, "feat"]) -> Float[Array, ""]:
    return (x @ w) * n


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("transform", [jax.grad, jax.value_and_grad], ids=["grad", "value_and_grad"])
def test_the_float0_gradient_of_an_integer_parameter_is_returned_as_vmap_does(transform, jit):
    differentiated = transform(scaled_loss, argnums=(0, 1), allow_int=True)
    expected = jax.vmap(differentiated, in_axes=(None, None, 0))(W, jnp.array(2), XS)
    per_example = batched(differentiated, "b", layouts={"w": None, "n": None})
    got = (jax.jit(per_example) if jit else per_example)(W, jnp.array(2), XS)
    assert_trees_equal(got, expected)
    gradient_of_n = got[1] if transform is jax.grad else got[1][1]
    assert gradient_of_n.dtype == jax.dtypes.float0 and gradient_of_n.shape == (5,)


def test_an_integer_gradient_still_refuses_a_float_argument_by_name():
    differentiated = jax.grad(scaled_loss, argnums=(0, 1), allow_int=True)
    with pytest.raises(ShapeError) as caught:
        batched(differentiated, "b", layouts={"w": None, "n": None})(W, jnp.array(2.0), XS)
    message = str(caught.value)
    assert message.startswith("jax.grad(scaled_loss): argument 'n' has dtype float32"), message
    assert "admits only Int dtypes" in message


# -- cloudpickle --------------------------------------------------------------------------------------


def make_loss(offset):
    def loss(w: Float[Array, "feat"], x: Float[Array, "feat"], y: Float[Array, ""]) -> Float[Array, ""]:
        return (x @ w - y + offset) ** 2

    return loss


PICKLED = {
    "grad": jax.grad,
    "value_and_grad": jax.value_and_grad,
    "jit(grad)": lambda loss: jax.jit(jax.grad(loss)),
    "grad argnums=(0, 2)": lambda loss: jax.grad(loss, argnums=(0, 2)),
}


@pytest.mark.parametrize("transform", PICKLED.values(), ids=PICKLED.keys())
def test_a_batched_gradient_roundtrips_through_cloudpickle(transform):
    cloudpickle = pytest.importorskip("cloudpickle")
    loss = make_loss(np.float32(0.5))
    expected = jax.vmap(transform(loss), in_axes=SHARED_W)(W, XS, YS)
    # The standard: jax.vmap of the same transform round-trips.
    assert_trees_equal(
        cloudpickle.loads(cloudpickle.dumps(jax.vmap(transform(loss), in_axes=SHARED_W)))(W, XS, YS), expected
    )

    original = batched(transform(loss), "b", layouts={"w": None})
    loaded = cloudpickle.loads(cloudpickle.dumps(original))
    assert_trees_equal(loaded(W, XS, YS), expected)
    assert_trees_equal(jax.jit(loaded)(W, XS, YS), expected)
    assert_trees_equal(loaded(W, XS, YS), original(W, XS, YS))
    assert describe(loaded).signature == describe(original).signature
    # Still checked, with the same message.
    with pytest.raises(ShapeError) as caught_loaded:
        loaded(jnp.ones(4), XS, YS)
    with pytest.raises(ShapeError) as caught:
        original(jnp.ones(4), XS, YS)
    assert str(caught.value).startswith("jax.grad(loss): dimension 'feat' has size 4") or str(caught.value).startswith(
        "jax.value_and_grad(loss): dimension 'feat' has size 4"
    )
    assert str(caught_loaded.value) == str(caught.value)
