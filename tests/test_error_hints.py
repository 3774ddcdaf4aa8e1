"""The first hour's errors lead with the fix (docs/architecture.md, Guarantees: messages): a shared
scalar passed per example, an argument passed transposed, two arguments passed in each other's
places, a tuple annotation, a ``'...'`` annotation, a key given the layout ``''``, and the
Jacobian a transform returns. Each is checked by its text, eagerly and (for call-time errors)
under ``jax.jit``; what the hint says to write is then run and compared with ``jax.vmap``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, PRNGKeyArray

from shapedmap import ShapeError, SpecError, batched

MODES = pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])


def area(x: Float[Array, "n"], side: Float[Array, ""]) -> Float[Array, "n"]:
    return x * side


@MODES
def test_a_shared_scalar_passed_per_example_has_the_hint_and_one_dim(transform):
    scaled = batched(area, "b", layouts={"side": ""})
    with pytest.raises(ShapeError) as caught:
        transform(scaled)(jnp.ones((7, 3)), jnp.ones(7))
    assert str(caught.value) == (
        "area: argument 'side' has 1 dim (f32[7]) but its layout '' needs 0. Its layout has no 'b', so one "
        "value of it is shared across the batch: pass one, or map it too with layouts={'side': 'b'}."
    )
    fixed = batched(area, "b", layouts={"side": "b"})  # the hint's second fix
    np.testing.assert_array_equal(
        fixed(jnp.ones((7, 3)), jnp.arange(7.0)), jax.vmap(area)(jnp.ones((7, 3)), jnp.arange(7.0))
    )


def linear(x: Float[Array, "n"], w: Float[Array, "n m"]) -> Float[Array, "m"]:
    return x @ w


@MODES
def test_a_transposed_matrix_is_named(transform):
    shared = batched(linear, "b", layouts={"w": None})
    x, w = jnp.ones((7, 3)), jnp.arange(12.0).reshape(4, 3)
    with pytest.raises(ShapeError, match=r"dimension 'n' has size 3 in argument 'x'") as caught:
        transform(shared)(x, w)
    assert str(caught.value).endswith(
        "\n  argument 'w' looks transposed: f32[4,3] with axes 0 and 1 swapped fits its layout 'n m' (pass w.T)"
    )
    np.testing.assert_array_equal(shared(x, w.T), jax.vmap(linear, (0, None))(x, w.T))


def product(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return x @ y


@MODES
def test_a_transposed_batched_argument_names_its_axes(transform):
    x, y = jnp.ones((7, 3, 5)), jnp.ones((7, 2, 5))
    with pytest.raises(ShapeError) as caught:
        transform(batched(product, "b"))(x, y)
    assert str(caught.value).endswith(
        "argument 'y' looks transposed: f32[7,2,5] with axes 1 and 2 swapped fits its layout 'b m k' "
        "(pass jnp.swapaxes(y, 1, 2))"
    )


def project(x: Float[Array, "n"], y: Float[Array, "n m"]) -> Float[Array, "m"]:
    return x @ y


@MODES
def test_swapped_arguments_are_named(transform):
    x, y = jnp.ones((7, 3)), jnp.ones((7, 3, 4))
    with pytest.raises(ShapeError) as caught:
        transform(batched(project, "b"))(y, x)
    assert str(caught.value) == (
        "project: argument 'x' has 3 dims (f32[7,3,4]) but its layout 'b n' needs 2\n"
        "  arguments 'x' (f32[7,3,4]) and 'y' (f32[7,3]) look swapped: each fits the other's layout "
        "('b n m' and 'b n'); pass them the other way round"
    )


def test_no_note_when_no_move_fits():
    with pytest.raises(ShapeError) as caught:
        batched(product, "b")(jnp.ones((7, 3, 5)), jnp.ones((7, 2, 6)))
    assert "looks" not in str(caught.value) and "look swapped" not in str(caught.value)


def pair(x: tuple[Float[Array, "2"], Float[Array, "3"]]) -> Float[Array, "2"]:
    return x[0]


@MODES
def test_a_tuple_annotation_is_worded_as_a_tuple(transform):
    with pytest.raises(ShapeError) as caught:
        transform(batched(pair, "b"))((jnp.ones((7, 4)), jnp.ones((7, 3))))
    assert str(caught.value) == (
        "pair: argument 'x' at [0] is f32[7,4], so each example is float32[4], but its annotation is the "
        "tuple tuple[Float[Array, '2'], Float[Array, '3']], whose item 0 is Float[Array, '2'] per example"
    )
    assert "admits one of" not in str(caught.value)


def anything(x: Float[Array, "..."]) -> Float[Array, "..."]:
    return 2 * x


def test_an_ellipsis_annotation_asks_for_the_ellipsis():
    with pytest.raises(SpecError) as caught:
        batched(anything, "n -> n")
    assert str(caught.value) == (
        "anything: the layout 'n' of parameter 'x' lacks the '...' of the annotation '...', which stands for "
        "the per-example dims: write 'n ...' (the batch dims, then '...'), or annotate the per-example dims by name"
    )
    fixed = batched(anything, "n ... -> n ...")
    x = jnp.arange(24.0).reshape(4, 3, 2)
    np.testing.assert_array_equal(fixed(x), jax.vmap(anything)(x))


def test_an_ellipsis_annotation_under_a_star_spec_says_why_not():
    with pytest.raises(SpecError, match=r"'\.\.\.' and a '\*name' batch dim each stand for any number of dims"):
        batched(anything, "*b -> *b")


def noisy(key: PRNGKeyArray, x: Float[Array, "n"]) -> Float[Array, "n"]:
    return x + jax.random.normal(key, x.shape)


@MODES
def test_a_key_with_the_empty_layout_is_shared_as_with_none(transform):
    key, x = jax.random.key(0), jnp.ones((5, 3))
    empty = transform(batched(noisy, "b", layouts={"key": ""}))(key, x)
    expected = jax.vmap(noisy, (None, 0))(key, x)
    np.testing.assert_array_equal(empty, expected)
    np.testing.assert_array_equal(batched(noisy, "b", layouts={"key": None})(key, x), expected)
    with pytest.raises(ShapeError, match=r"noisy: argument 'key'"):
        batched(noisy, "b", layouts={"key": ""})(jax.random.split(key, 5), x)  # per example: not shared


def energy(x: Float[Array, "n"]) -> Float[Array, ""]:
    return (x**2).sum()


def field(x: Float[Array, "n"]) -> Float[Array, "m"]:
    return x[:2] * x[1:]


@pytest.mark.parametrize(
    ("transform", "function", "result"),
    [
        (jax.jacrev, energy, "Float[Array, 'n']"),
        (jax.jacfwd, field, "Float[Array, 'm n']"),
        (jax.hessian, energy, "Float[Array, 'n n']"),
    ],
    ids=["jacrev-scalar", "jacfwd-vector", "hessian"],
)
def test_a_jacobian_hint_has_the_jacobians_dims(transform, function, result):
    with pytest.raises(SpecError) as caught:
        batched(transform(function), "b")
    name = {jax.jacrev: "jax.jacrev", jax.jacfwd: "jax.jacfwd", jax.hessian: "jax.hessian"}[transform]
    assert str(caught.value).endswith(
        f"Annotate a function that calls it, e.g. def f(x: Float[Array, 'n']) -> {result}: "
        f"return {name}({function.__name__})(x)"
    )
    # The suggested function, written out, batches and equals jax.vmap of the transform.
    namespace = {"Float": Float, "Array": Array, "jax": jax, function.__name__: function}
    exec(str(caught.value).split("e.g. ")[1], namespace)
    x = jnp.arange(6.0).reshape(2, 3) + 1
    np.testing.assert_allclose(batched(namespace["f"], "b")(x), jax.vmap(transform(function))(x))


def test_a_transform_of_unannotated_shape_spells_the_rule():
    def anyshape(x: Float[Array, "..."]) -> Float[Array, ""]:
        return x.sum()

    with pytest.raises(
        SpecError, match=r"Float\[Array, 'm n'\]: return jax\.jacrev\(anyshape\)\(x\) for a function of 'n'"
    ):
        batched(jax.jacrev(anyshape), "b")
