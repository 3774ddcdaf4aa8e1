"""Every seed example against its naive Python loop and its hand-written vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapedmap.examples import EXAMPLES, mm

NAMES = sorted(EXAMPLES)


@pytest.mark.parametrize("name", NAMES)
def test_equals_the_naive_loop(name):
    example = EXAMPLES[name]
    args = example.make_inputs(jax.random.key(1))
    result = example.function(*args)
    expected = example.naive(*args)
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype == jnp.float32
    np.testing.assert_allclose(result, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_equals_hand_written_vmap_bit_for_bit(name):
    example = EXAMPLES[name]
    args = example.make_inputs(jax.random.key(2))
    np.testing.assert_array_equal(example.function(*args), example.hand_written(*args))
    np.testing.assert_array_equal(jax.jit(example.function)(*args), jax.jit(example.hand_written)(*args))


def test_expected_shapes_of_the_tutorial():
    assert EXAMPLES["message_passing"].function(*EXAMPLES["message_passing"].make_inputs(jax.random.key(0))).shape == (
        13,
        7,
        11,
    )
    assert EXAMPLES["chained"].function(*EXAMPLES["chained"].make_inputs(jax.random.key(0))).shape == (11, 31)
    assert EXAMPLES["pairwise"].function(*EXAMPLES["pairwise"].make_inputs(jax.random.key(0))).shape == (13, 13, 34)


def test_mm_is_matrix_product():
    x, y = EXAMPLES["mm"].make_inputs(jax.random.key(3))
    np.testing.assert_allclose(mm(x, y), x @ y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "in_axes", "out_axes"),
    [
        ("column_sums", {"col": (1,)}, {"col": 0}),
        ("mv", {"b": (0, None)}, {"b": 0}),
        ("mm", {"c": (None, 1)}, {"c": 1}),
        ("pairwise", {"i": (0, None), "j": (None, 0)}, {"i": 0, "j": 0}),
        ("message_passing", {"graph": (0, 0)}, {"graph": 0}),
        ("chained", {"batch": (0,), "row": (0,)}, {"batch": 0, "row": 0}),
    ],
)
def test_derived_axes_are_the_tutorials(name, in_axes, out_axes):
    function = EXAMPLES[name].function
    assert function.in_axes == in_axes
    assert function.out_axes == out_axes
