"""One test per bug the fuzzers (tests/test_fuzz_*.py, tests/test_threads.py) found, each named in a comment."""

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from shapedmap import batched


# Bug: a parameter annotated ``Callable[[Array], Array]`` was read as a PyTree of arrays (Callable's
# arguments looked like container contents), so passing a function raised "must be an array".
def test_callable_annotation_is_static():
    def apply_op(x: Float[Array, "n"], op: Callable[[Array], Array]) -> Float[Array, ""]:
        return jnp.sum(op(x))

    applied = batched(apply_op, "b")
    assert applied.in_axes == {"b": (0, None)}
    np.testing.assert_allclose(applied(jnp.zeros((2, 3)), jnp.cos), [3.0, 3.0])
