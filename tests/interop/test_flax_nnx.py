"""flax.nnx modules run per example through ``batched``, against the hand-written versions.

nnx users batch a module over examples in two ways: ``nnx.vmap(f, in_axes=(None, 0))(module, xs)``
(the module shared), or functionally: ``graphdef, state = nnx.split(module)`` and
``jax.vmap(lambda state, x: nnx.merge(graphdef, state)(x), in_axes=(None, 0))(state, xs)``. Both are
the reference here, for nnx's own layers batched with ``batched(layer, "batch")`` and for a module
whose ``__call__`` is decorated with ``@batched`` (``self`` held static). Such a module stays a
normal nnx module: its state, ``nnx.split``/``nnx.merge``, ``nnx.jit``, ``nnx.grad`` and an
``nnx.Optimizer`` step work on it as on the undecorated module, and a call after the step sees the
new weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

from interop import assert_trees_close
from shapedmap import ShapeError, batched

nnx = pytest.importorskip("flax.nnx")
optax = pytest.importorskip("optax")

XS = jax.random.normal(jax.random.key(1), (5, 3))  # 5 examples of 3 features
YS = jax.random.normal(jax.random.key(2), (5, 2))


def shared_module_vmap(one_example, module, xs):
    """``nnx.vmap`` with the module shared and the inputs mapped."""
    return nnx.vmap(one_example, in_axes=(None, 0))(module, xs)


def split_vmap(one_example, module, xs):
    """The functional form: the module's state shared, merged back inside ``jax.vmap``."""
    graphdef, state = nnx.split(module)
    return jax.vmap(lambda state, x: one_example(nnx.merge(graphdef, state), x), in_axes=(None, 0))(state, xs)


def call(module, x):
    return module(x)


# -- nnx's layers, batched --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "xs"),
    [
        (lambda rngs: nnx.Linear(3, 2, rngs=rngs), XS),
        (lambda rngs: nnx.Conv(3, 2, kernel_size=(3,), rngs=rngs), jax.random.normal(jax.random.key(3), (5, 7, 3))),
        (lambda rngs: nnx.Embed(10, 4, rngs=rngs), jnp.arange(10).reshape(5, 2)),
    ],
    ids=["Linear", "Conv", "Embed"],
)
def test_layer_per_example(make, xs):
    layer = make(nnx.Rngs(0))
    expected = split_vmap(call, layer, xs)
    assert_trees_close(shared_module_vmap(call, layer, xs), expected, exact=True)
    np.testing.assert_allclose(expected[3], layer(xs[3]), rtol=1e-6)  # the reference is the loop
    per_example = batched(layer, "batch")
    for _ in range(2):  # the second call, with the shapes seen, runs the layer itself as the body
        assert_trees_close(per_example(xs), expected, exact=True)


# -- a module whose __call__ is batched --------------------------------------------------------


def classify(model, x):
    """One example through the classifier's layers: the body, and the references' per-example function."""
    return model.output(jax.nn.relu(model.hidden(x)))


class Classifier(nnx.Module):
    def __init__(self, features: int, classes: int, *, rngs: nnx.Rngs):
        self.features = features
        self.hidden = nnx.Linear(features, 8, rngs=rngs)
        self.output = nnx.Linear(8, classes, rngs=rngs)

    @batched("batch")
    def __call__(self, x: Float[Array, "{self.features}"]) -> Float[Array, " classes"]:
        return classify(self, x)


def make_classifier():
    return Classifier(3, 2, rngs=nnx.Rngs(0))


def test_decorated_call_equals_nnx_vmap_and_split_vmap():
    model = make_classifier()
    expected = split_vmap(classify, model, XS)
    assert_trees_close(shared_module_vmap(classify, model, XS), expected, exact=True)
    assert_trees_close(model(XS), expected, exact=True)
    assert model(XS[:2]).shape == (2, 2)


def test_decorated_call_names_the_width_from_self():
    with pytest.raises(
        ShapeError,
        match=r"(?s)Classifier\.__call__: dimension '\{self\.features\}'.* should be 3,.*argument 'x' .* has 4",
    ):
        make_classifier()(jnp.ones((5, 4)))


def test_decorated_module_splits_and_merges():
    model = make_classifier()
    graphdef, state = nnx.split(model)
    assert set(nnx.to_pure_dict(state)) == {"hidden", "output"}  # the decorator adds no state
    merged = nnx.merge(graphdef, state)
    assert type(merged) is Classifier
    assert_trees_close(merged(XS), model(XS), exact=True)
    model(XS)
    assert_trees_close(nnx.state(model), state, exact=True)  # a call leaves the state as it was


def test_decorated_module_under_nnx_jit():
    model = make_classifier()
    expected = split_vmap(classify, model, XS)
    assert_trees_close(nnx.jit(call)(model, XS), expected)
    assert_trees_close(nnx.jit(Classifier.__call__)(model, XS), expected)


def mean_squared_error(predictions, ys):
    return jnp.mean((predictions - ys) ** 2)


def test_decorated_module_gradient_and_optimizer_step():
    model = make_classifier()
    grads = nnx.grad(lambda m: mean_squared_error(m(XS), YS))(model)
    expected = nnx.grad(lambda m: mean_squared_error(shared_module_vmap(classify, m, XS), YS))(model)
    assert_trees_close(grads, expected)

    optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
    before = model(XS)
    optimizer.update(model, grads)
    after = model(XS)  # the same shapes as before: the call sees the new weights, not a remembered result
    assert not np.allclose(after, before)
    assert_trees_close(after, split_vmap(classify, model, XS), exact=True)
