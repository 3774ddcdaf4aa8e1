"""One test per bug the fuzzers (tests/test_fuzz_*.py, tests/test_threads.py) found, each named in a comment."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, PyTree

from shapedmap import ShapeError, batched


# Bug: a parameter annotated ``Callable[[Array], Array]`` was read as a PyTree of arrays (Callable's
# arguments looked like container contents), so passing a function raised "must be an array".
def test_callable_annotation_is_static():
    def apply_op(x: Float[Array, "n"], op: Callable[[Array], Array]) -> Float[Array, ""]:
        return jnp.sum(op(x))

    applied = batched(apply_op, "b")
    assert applied.in_axes == {"b": (0, None)}
    np.testing.assert_allclose(applied(jnp.zeros((2, 3)), jnp.cos), [3.0, 3.0])


# Bug: a Python int too large for any JAX dtype leaked an OverflowError from jnp.asarray.
def test_huge_python_int_is_a_named_shape_error():
    def scale(x: Float[Array, "n"], factor: Float[Array, ""]) -> Float[Array, "n"]:
        return x * factor

    with pytest.raises(
        ShapeError, match=r"^scale: argument 'factor' must be an array .* got int 1180591620717411303424"
    ):
        batched(scale, "b n, -> b n")(jnp.ones((2, 3)), 2**70)


# Bug: when every argument mapped over a batch dim was a PyTree without leaves (None, (None,),
# {"u": None}), jax.vmap raised a bare ValueError ("must be passed at least one argument containing
# an array") instead of a ShapeError naming the parameter.
@pytest.mark.parametrize("tree", [None, {"u": None}, ()])
def test_batch_dim_with_no_array_is_a_named_shape_error(tree):
    def double(params: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return jax.tree.map(lambda leaf: 2 * leaf, params)

    with pytest.raises(ShapeError, match=r"^double: nothing gives the size of the batch dim 'b': argument 'params'"):
        batched(double, "b")(tree)
