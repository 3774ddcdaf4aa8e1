"""The seed examples, property-tested with shapedmap.testing.

Each batched function of ``shapedmap.examples`` must equal the naive loop over every batch
index (``check_batched``, eagerly and under ``jax.jit``), and must equal the example's own
hand-written naive version on inputs drawn from its annotations.
"""

import inspect

import jax
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from shapedmap.examples import EXAMPLES
from shapedmap.testing import check_batched, inputs

NAMES = sorted(EXAMPLES)


@pytest.mark.parametrize("name", NAMES)
def test_example_equals_the_loop(name):
    # Small sizes: every new shape is a fresh compilation; Hypothesis still shrinks any failure.
    check_batched(EXAMPLES[name].function, max_examples=10, max_size=3)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=8)
@given(data=st.data())
def test_example_equals_its_naive_version(name, data):
    example = EXAMPLES[name]
    args, kwargs = data.draw(inputs(example.function, max_size=3))
    bound = inspect.signature(example.function).bind(*args, **kwargs)
    batched = example.function(*args, **kwargs)
    naive = example.naive(*bound.args)  # the naive versions take positional arguments
    np.testing.assert_allclose(np.asarray(batched), np.asarray(naive), rtol=1e-5, atol=1e-5)
    assert batched.dtype == naive.dtype


@pytest.mark.parametrize("name", NAMES)
def test_example_inputs_fit_the_seed_inputs(name):
    """The seeds' own inputs and the drawn ones have the same ranks and dtypes."""
    example = EXAMPLES[name]
    seed_args = example.make_inputs(jax.random.key(0))
    args, kwargs = find(inputs(example.function), lambda drawn: True)
    drawn = inspect.signature(example.function).bind(*args, **kwargs).args
    assert [(a.ndim, a.dtype) for a in drawn] == [(a.ndim, a.dtype) for a in seed_args]
