"""Odd inputs: each works like ``jax.vmap`` of the same function, or is a ShapeError/SpecError
that names the function and the parameter (docs/architecture.md, Guarantees: reliability)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

from shapedmap import ShapeError, batched

# -- 1. a parameter left at the function's own default is the function's business --------------

SENTINEL = object()


def with_sentinel(x: Float[Array, " n"], state: int = SENTINEL) -> Float[Array, " n"]:  # type: ignore[assignment]
    return x * 2 if state is SENTINEL else x * state


def test_default_the_caller_did_not_pass_is_not_checked():
    x = jnp.arange(6.0).reshape(2, 3)
    f = batched(with_sentinel, "b")
    expected = jax.vmap(with_sentinel)(x)
    np.testing.assert_array_equal(f(x), expected)
    np.testing.assert_array_equal(f(x), expected)  # the second call (shapes seen) too
    np.testing.assert_array_equal(jax.jit(f)(x), expected)
    np.testing.assert_array_equal(f(x=x), expected)


def test_default_passed_by_the_caller_is_still_checked():
    x = jnp.ones((2, 3))
    f = batched(with_sentinel, "b")
    np.testing.assert_array_equal(f(x, 3), jax.vmap(with_sentinel, in_axes=(0, None))(x, 3))
    with pytest.raises(ShapeError, match=r"with_sentinel: argument 'state' is annotated int"):
        f(x, "three")
    with pytest.raises(ShapeError, match=r"with_sentinel: argument 'state' is annotated int"):
        f(x, state=SENTINEL)  # passed by the caller: checked like any other value
    f(x)  # and an unpassed default still is not, after a failed call with the same shapes
    with pytest.raises(ShapeError, match=r"with_sentinel: argument 'state' is annotated int"):
        f(x, "three")  # nor does an unpassed default let a later bad value through


def test_equinox_state_default():
    eqx = pytest.importorskip("equinox")
    layer = eqx.nn.LayerNorm(3)
    default = inspect.signature(layer).parameters["state"].default  # equinox's sentinel

    def norm(x: Float[Array, " n"], state: eqx.nn.State = default) -> Float[Array, " n"]:
        return layer(x, state)

    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(batched(norm, "b")(x), jax.vmap(layer)(x), rtol=1e-6)


# -- 2. NumPy arrays and scalars of ml_dtypes ---------------------------------------------------


def scale(x: Float[Array, " n"], s: Float[Array, ""]) -> Float[Array, " n"]:
    return x * s


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float8_e4m3fn"])
def test_ml_dtypes_arrays_and_scalars_eagerly(dtype_name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dtype = getattr(ml_dtypes, dtype_name)
    x = np.arange(6).reshape(2, 3).astype(dtype)
    s = dtype(2.0)  # a NumPy scalar of that dtype
    f = batched(scale, "b", layouts={"s": ""})
    expected = jax.vmap(scale, in_axes=(0, None))(x, s)
    for result in (f(x, s), jax.jit(f)(x, s)):
        assert result.dtype == expected.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(result, np.float32), np.asarray(expected, np.float32))


# -- 3. NumPy masked arrays ----------------------------------------------------------------------


def double(x: Float[Array, " n"]) -> Float[Array, " n"]:
    return x * 2


def test_masked_array_is_a_named_error():
    x = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    with pytest.raises(ShapeError) as caught:
        batched(double, "b")(x)
    message = str(caught.value)
    assert message.startswith("double: argument 'x' ")
    assert "masked arrays are not supported" in message
    assert ".filled(" in message and ".data" in message


# -- 4. an annotated lambda ----------------------------------------------------------------------


def test_annotated_lambda():
    twice = lambda x: x * 2  # noqa: E731
    twice.__annotations__ = {"x": Float[Array, " n"], "return": Float[Array, " n"]}
    x = jnp.arange(6.0).reshape(2, 3)
    f = batched(twice, "b")
    np.testing.assert_array_equal(f(x), jax.vmap(twice)(x))
    np.testing.assert_array_equal(jax.jit(f)(x), jax.vmap(twice)(x))
    with pytest.raises(ShapeError, match=r"^<lambda>: argument 'x' has 1 dim "):
        f(jnp.ones(3))


# -- 5. a callable object that cannot be hashed ---------------------------------------------------


class Unhashable:
    """Like an Equinox module holding arrays: equal by value, so hashing it hashes arrays and fails."""

    def __init__(self, scale):
        self.scale = scale

    def __eq__(self, other):
        return isinstance(other, Unhashable) and bool((self.scale == other.scale).all())

    def __hash__(self):
        raise TypeError("unhashable type: 'Unhashable'")

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        return x * self.scale


def test_an_unhashable_callable_runs_on_every_call():
    """The second call (shapes seen, no per-example check) runs the object itself as the body."""
    layer = Unhashable(jnp.arange(3.0))
    f = batched(layer, "b")
    x = jnp.ones((2, 3))
    for _ in range(3):
        np.testing.assert_array_equal(f(x), jax.vmap(layer)(x))
