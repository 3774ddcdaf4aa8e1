"""Tests of shapedmap with other JAX libraries (the ``interop`` extra); each module skips itself when
its library is not installed."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_trees_close(got, expected, *, exact=False):
    """Same structure, shapes and dtypes; the same values (bit for bit where ``exact``)."""
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    assert [jnp.shape(a) for a in jax.tree.leaves(got)] == [jnp.shape(b) for b in jax.tree.leaves(expected)]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        assert a.dtype == b.dtype
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
