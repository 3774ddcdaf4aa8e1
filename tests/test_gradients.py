"""Per-example gradients: ``batched(jax.grad(loss), "batch")`` against ``jax.vmap(jax.grad(loss), in_axes=...)``.

The gradient of a parameter has that parameter's annotation, per example; an unannotated
(static) parameter — a PyTree of weights — is shared, and its gradient is a PyTree of arrays with
the batch dim in front. ``argnums`` and ``has_aux`` decide the result as they do in JAX.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float, PyTree, Shaped

from shapedmap import ShapeError, SpecError, batched, describe, explain

PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.25)}
XS = jnp.arange(15.0).reshape(5, 3) / 7
YS = jnp.linspace(-1.0, 1.0, 5)
SHARED_PARAMS = (None, 0, 0)


def loss(params, x: Float[Array, "feat"], y: Float[Array, ""]) -> Float[Array, ""]:
    return (x @ params["w"] + params["b"] - y) ** 2


def loss_with_aux(params, x: Float[Array, "feat"], y: Float[Array, ""]) -> tuple[Float[Array, ""], Float[Array, ""]]:
    prediction = x @ params["w"] + params["b"]
    return (prediction - y) ** 2, prediction


def assert_trees_equal(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-6)


TRANSFORMS = {
    "grad": lambda f: jax.grad(f),
    "grad argnums=1": lambda f: jax.grad(f, argnums=1),
    "grad argnums=(0, 1)": lambda f: jax.grad(f, argnums=(0, 1)),
    "grad argnums=-1": lambda f: jax.grad(f, argnums=-1),
    "value_and_grad": lambda f: jax.value_and_grad(f),
    "value_and_grad argnums=(0, 2)": lambda f: jax.value_and_grad(f, argnums=(0, 2)),
}


@pytest.mark.parametrize("transform", TRANSFORMS.values(), ids=TRANSFORMS.keys())
def test_per_example_gradients_equal_vmap(transform):
    expected = jax.vmap(transform(loss), in_axes=SHARED_PARAMS)(PARAMS, XS, YS)
    assert_trees_equal(batched(transform(loss), "batch")(PARAMS, XS, YS), expected)


@pytest.mark.parametrize("transform", [jax.grad, jax.value_and_grad], ids=["grad", "value_and_grad"])
def test_has_aux_equals_vmap(transform):
    differentiated = transform(loss_with_aux, has_aux=True)
    expected = jax.vmap(differentiated, in_axes=SHARED_PARAMS)(PARAMS, XS, YS)
    assert_trees_equal(batched(differentiated, "batch")(PARAMS, XS, YS), expected)


def test_under_jit_and_jit_inside():
    expected = jax.jit(jax.vmap(jax.grad(loss), in_axes=SHARED_PARAMS))(PARAMS, XS, YS)
    assert_trees_equal(jax.jit(batched(jax.grad(loss), "batch"))(PARAMS, XS, YS), expected)
    assert_trees_equal(batched(jax.jit(jax.grad(loss)), "batch")(PARAMS, XS, YS), expected)


def linear_loss(w: Float[Array, "feat"], x: Float[Array, "feat"], y: Float[Array, ""]) -> Float[Array, ""]:
    return (x @ w - y) ** 2


def test_an_annotated_shared_parameter_gives_its_own_annotation_to_the_gradient():
    per_example = batched(jax.grad(linear_loss), "batch", layouts={"w": None})
    expected = jax.vmap(jax.grad(linear_loss), in_axes=SHARED_PARAMS)(PARAMS["w"], XS, YS)
    assert_trees_equal(per_example(PARAMS["w"], XS, YS), expected)
    assert inspect.signature(per_example).return_annotation.__name__ == "Float[Array, 'batch feat']"
    assert describe(per_example).signature == "feat, batch feat, batch -> batch feat"


def test_the_gradient_of_a_pytree_parameter_keeps_its_structure():
    def tree_loss(params: PyTree[Float[Array, "..."]], x: Float[Array, "feat"]) -> Float[Array, ""]:
        return (x @ params["w"] + params["b"]) ** 2

    per_example = batched(jax.grad(tree_loss), "batch", layouts={"params": None})
    assert_trees_equal(per_example(PARAMS, XS), jax.vmap(jax.grad(tree_loss), in_axes=(None, 0))(PARAMS, XS))


def test_an_ensemble_maps_the_parameters_too():
    """Parameters with the batch name: one model per example (an ensemble), as vmap's in_axes=0."""
    ws = jnp.stack([PARAMS["w"] * k for k in range(5)])
    per_example = batched(jax.grad(linear_loss), "batch")
    assert_trees_equal(per_example(ws, XS, YS), jax.vmap(jax.grad(linear_loss))(ws, XS, YS))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 6), feat=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_per_example_gradients_equal_the_loop(n, feat, seed):
    keys = jax.random.split(jax.random.key(seed), 3)
    w = jax.random.normal(keys[0], (feat,))
    xs = jax.random.normal(keys[1], (n, feat))
    ys = jax.random.normal(keys[2], (n,))
    got = batched(jax.grad(linear_loss), "batch", layouts={"w": None})(w, xs, ys)
    assert got.shape == (n, feat)
    for i in range(n):
        np.testing.assert_allclose(got[i], jax.grad(linear_loss)(w, xs[i], ys[i]), rtol=1e-5, atol=1e-6)


def test_errors_name_the_transform_and_the_function():
    per_example = batched(jax.grad(linear_loss), "batch", layouts={"w": None})
    with pytest.raises(ShapeError, match=r"^jax\.grad\(linear_loss\): dimension 'feat' has size 4 in argument 'w'"):
        per_example(jnp.ones(4), XS, YS)


@pytest.mark.parametrize("transform", [jax.jacrev, jax.jacfwd, jax.hessian, jax.vmap])
def test_a_transform_whose_result_cannot_be_derived_is_a_spec_error(transform):
    name = f"{transform.__module__.split('.')[0]}.{transform.__name__}"
    with pytest.raises(SpecError) as error:
        batched(transform(linear_loss), "batch")
    message = str(error.value)
    assert message.startswith(f"{name}(linear_loss): shapedmap cannot tell what {name} returns")
    assert "Annotate a function that calls it" in message


def test_argnums_beyond_the_parameters_is_a_spec_error():
    with pytest.raises(SpecError, match=r"argnums=5 names positional argument 5, but the function has 3 positional"):
        batched(jax.grad(linear_loss, argnums=5), "batch")


def test_a_dict_result_annotation():
    def stats(x: Float[Array, "n"]) -> dict[str, Float[Array, ""]]:
        return {"mean": x.mean(), "max": x.max()}

    assert_trees_equal(batched(stats, "b")(XS), jax.vmap(stats)(XS))


def test_the_gradient_of_a_partial_reads_the_partial_functions_annotations():
    """jax.grad copies the annotations of what it differentiates; a functools.partial has none."""
    per_example = batched(jax.grad(functools.partial(linear_loss, PARAMS["w"])), "batch")
    expected = jax.vmap(jax.grad(functools.partial(linear_loss, PARAMS["w"])))(XS, YS)
    assert_trees_equal(per_example(XS, YS), expected)
    assert describe(per_example).signature == "batch feat, batch -> batch feat"


def total_loss(w: Float[Array, "feat"], *xs: Float[Array, "2"]) -> Float[Array, ""]:
    return sum((x.sum() * w.sum()) ** 2 for x in xs)


@pytest.mark.parametrize("argnums", [1, 2, -1, (0, -2)])
def test_argnums_into_star_args_equal_vmap(argnums):
    """argnums past the named parameters are *args entries; a negative one counts from the call's last argument."""
    w, pairs = PARAMS["w"], jnp.arange(10.0).reshape(5, 2)
    per_example = batched(jax.grad(total_loss, argnums=argnums), "batch", layouts={"w": None})
    expected = jax.vmap(jax.grad(total_loss, argnums=argnums), in_axes=(None, 0, 0))(w, pairs, -pairs)
    assert_trees_equal(per_example(w, pairs, -pairs), expected)


def test_equinox_filter_grad_and_value_and_grad_equal_vmap():
    """Equinox's filter transforms differentiate the first argument; they are read like jax.grad."""
    eqx = pytest.importorskip("equinox")
    w = PARAMS["w"]
    for transform in (eqx.filter_grad, eqx.filter_value_and_grad):
        per_example = batched(transform(linear_loss), "batch", layouts={"w": None})
        assert_trees_equal(per_example(w, XS, YS), jax.vmap(transform(linear_loss), in_axes=SHARED_PARAMS)(w, XS, YS))
        assert describe(per_example).signature.endswith("-> batch feat" if transform is eqx.filter_grad else "feat")
    differentiated = eqx.filter_value_and_grad(loss_with_aux, has_aux=True)
    expected = jax.vmap(differentiated, in_axes=SHARED_PARAMS)(PARAMS, XS, YS)
    assert_trees_equal(batched(differentiated, "batch")(PARAMS, XS, YS), expected)
    jitted = jax.jit(batched(eqx.filter_grad(loss), "batch"))
    assert_trees_equal(jitted(PARAMS, XS, YS), jax.vmap(eqx.filter_grad(loss), in_axes=SHARED_PARAMS)(PARAMS, XS, YS))


def test_equinox_filter_grad_of_a_non_float_argument_is_none():
    eqx = pytest.importorskip("equinox")

    def count_loss(n: Shaped[Array, ""], x: Float[Array, "feat"]) -> Float[Array, ""]:
        return (x * n).sum()

    per_example = batched(eqx.filter_grad(count_loss), "batch", layouts={"n": None})
    assert per_example(jnp.array(2), XS) is None
    assert per_example(jnp.array(2.0), XS).shape == (5,)


def test_errors_name_the_equinox_transform():
    eqx = pytest.importorskip("equinox")
    per_example = batched(eqx.filter_grad(linear_loss), "batch", layouts={"w": None})
    with pytest.raises(ShapeError, match=r"^equinox\.filter_grad\(linear_loss\): dimension 'feat' has size 4"):
        per_example(jnp.ones(4), XS, YS)


def float_loss(w: Float[Array, "feat"], x: Float[Array, "feat"]) -> float:
    return (x @ w) ** 2


@pytest.mark.parametrize("transform", [jax.grad, jax.value_and_grad], ids=["grad", "value_and_grad"])
def test_a_loss_annotated_float_is_differentiated(transform):
    """A loss's own return annotation says what it returns, not what its gradient does."""
    per_example = batched(transform(float_loss), "batch", layouts={"w": None})
    expected = jax.vmap(transform(float_loss), in_axes=(None, 0))(PARAMS["w"], XS)
    assert_trees_equal(per_example(PARAMS["w"], XS), expected)


def test_a_float_result_of_a_plain_function_is_still_refused():
    with pytest.raises(SpecError, match=r"float_loss: the return annotation float is not an array annotation"):
        batched(float_loss, "batch")


@pytest.mark.parametrize("wrap", [lambda g: g, jax.checkpoint], ids=["grad", "checkpoint(grad)"])
def test_describe_and_explain_name_the_gradient_not_the_loss(wrap):
    per_example = batched(wrap(jax.grad(linear_loss)), "batch", layouts={"w": None})
    assert describe(per_example).per_example == "jax.grad(linear_loss)"
    text = explain(per_example, PARAMS["w"], XS, YS)
    assert "`grad_linear_loss` is the per-example function: the function given to batched." in text
    assert "jax.vmap(grad_linear_loss, in_axes=(None, 0, 0)" in text
    namespace = {"grad_linear_loss": per_example.fn}
    exec(text, namespace)  # the written-out code runs, and gives the batched function's values
    np.testing.assert_allclose(
        namespace["batched_grad_linear_loss"](PARAMS["w"], XS, YS), per_example(PARAMS["w"], XS, YS)
    )
