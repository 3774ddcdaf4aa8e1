"""PRNG keys and other unions of fixed shapes (jaxtyping's ``PRNGKeyArray``), per example and shared.

``PRNGKeyArray`` is ``Key[Array, ''] | UInt32[Array, '2'] | UInt32[Array, '4']``: a typed key, or a
legacy ``uint32`` key of 2 or 4 words. Every member has a fixed shape, so the batch dims go in front
of whichever shape the key has, and each example must match one member, dtype and shape together.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Bool, Float, Key, PRNGKeyArray, UInt32

from shapedmap import ShapeError, SpecError, SplitKey, batched, describe

XS = jnp.arange(15.0).reshape(5, 3)


def noisy(x: Float[Array, "n"], key: PRNGKeyArray | None = None) -> Float[Array, "n"]:
    """One example plus noise drawn from its key (none: no noise)."""
    if key is None:
        return x
    return x + jax.random.normal(key, x.shape)


TYPED = jax.random.split(jax.random.key(0), 5)
LEGACY = jax.random.split(jax.random.PRNGKey(0), 5)


@pytest.mark.parametrize("keys", [TYPED, LEGACY], ids=["typed", "legacy uint32[2]"])
def test_a_key_per_example_equals_vmap(keys):
    expected = jax.vmap(noisy)(XS, keys)
    np.testing.assert_array_equal(batched(noisy, "b")(XS, keys), expected)
    np.testing.assert_array_equal(batched(noisy, "b")(XS, key=keys), expected)
    np.testing.assert_array_equal(jax.jit(batched(noisy, "b"))(XS, keys), jax.jit(jax.vmap(noisy))(XS, keys))


@pytest.mark.parametrize("key", [jax.random.key(1), jax.random.PRNGKey(1)], ids=["typed", "legacy"])
def test_one_key_shared_by_every_example_equals_vmap(key):
    expected = jax.vmap(noisy, in_axes=(0, None))(XS, key)
    shared = batched(noisy, "b", layouts={"key": None})
    np.testing.assert_array_equal(shared(XS, key), expected)
    np.testing.assert_array_equal(shared(XS, key=key), expected)
    # every example drew the same noise
    noise = shared(jnp.zeros_like(XS), key)
    np.testing.assert_array_equal(noise, jnp.broadcast_to(noise[0], noise.shape))


def test_no_key_is_none():
    np.testing.assert_array_equal(batched(noisy, "b")(XS), XS)


def test_a_key_under_several_batch_names():
    keys = jax.random.split(jax.random.key(2), (2, 5))
    xs = jnp.stack([XS, -XS])
    expected = jax.vmap(jax.vmap(noisy))(xs, keys)
    np.testing.assert_array_equal(batched(noisy, "run b")(xs, keys), expected)


def test_the_signature_shows_each_key_shape_with_its_batch_dims():
    annotation = str(batched(noisy, "b").__signature__.parameters["key"].annotation)
    for member in ("Key[Array, 'b']", "UInt32[Array, 'b 2']", "UInt32[Array, 'b 4']"):
        assert member in annotation


def test_a_key_of_no_member_shape_names_the_members():
    with pytest.raises(ShapeError) as error:
        batched(noisy, "b")(XS, jnp.zeros((5, 3), jnp.uint32))
    message = str(error.value)
    assert message.startswith("noisy: argument 'key' is u32[5,3], so each example is uint32[3]")
    assert "admits one of Key[Array, ''], UInt32[Array, '2'], UInt32[Array, '4'] per example" in message


def test_a_typed_key_with_a_legacy_shape_is_refused():
    """Dtype and shape are checked together: a typed key is one scalar, not two words."""
    keys = jax.random.split(jax.random.key(0), (5, 2))
    with pytest.raises(ShapeError, match=r"each example is key<fry>\[2\].*admits one of Key\[Array, ''\]"):
        batched(noisy, "b")(XS, keys)


def test_a_key_of_another_dtype_names_the_admitted_dtypes():
    with pytest.raises(ShapeError, match=r"noisy: argument 'key' has dtype float32 .* admits only Key or UInt32"):
        batched(noisy, "b")(XS, jnp.zeros(5))


# One key where one per example is expected: the hint leads with splitting it (with the call's sizes) or
# SplitKey, says what sharing means, and only then offers layouts={'key': None}; never layouts={'key': ''}.
# Before, a typed key got "To share one value across the batch ... layouts={'key': '...'}" and a raw key a
# size conflict ('b' is 5 in x but 2 in key): both led to the silent bug of one key for every example.


def _hint_of(fn, *args):
    with pytest.raises(ShapeError) as error:
        fn(*args)
    return str(error.value)


@pytest.mark.parametrize("key", [jax.random.key(0), jax.random.PRNGKey(0)], ids=["typed", "raw uint32[2]"])
@pytest.mark.parametrize("annotation", ["PRNGKeyArray", "exact"])
def test_one_key_where_one_per_example_is_expected_suggests_the_split(key, annotation):
    # PRNGKeyArray, or exactly Key[Array, ''] for a typed key and UInt32[Array, '2'] for a raw one
    fn = noisy if annotation == "PRNGKeyArray" else _exact(key)
    message = _hint_of(batched(fn, "b"), XS, key)
    assert message.startswith(f"{fn.__name__}: argument 'key' is one key (")
    assert "maps it over 'b': expected one key per example (b=5" in message
    split = message.index("key = jax.random.split(key, 5)")
    assert split < message.index("layouts={'key': SplitKey()}") < message.index("the same random numbers")
    assert message.index("the same random numbers") < message.index("layouts={'key': None}")
    assert "layouts={'key': ''}" not in message and "To share one value" not in message


def test_one_key_under_two_batch_names_suggests_the_split_shape():
    message = _hint_of(batched(noisy, "run b"), jnp.stack([XS, XS]), jax.random.key(0))
    assert "maps it over 'run' and 'b': expected one key per example (run=2, b=5, ...)" in message
    assert "key = jax.random.split(key, (2, 5))" in message


def test_one_key_before_the_arrays_that_size_the_batch_still_gets_the_sizes():
    def keyed(key: Key[Array, ""], x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + jax.random.normal(key, x.shape)

    message = _hint_of(batched(keyed, "b"), jax.random.key(0), XS)
    assert "argument 'key' is one key (key<fry>[]), but its layout 'b' maps it over 'b'" in message
    assert "key = jax.random.split(key, 5)" in message


def test_the_hinted_fixes_work():
    key = jax.random.key(3)
    split = jax.random.split(key, 5)
    expected = jax.vmap(noisy)(XS, split)
    np.testing.assert_array_equal(batched(noisy, "b")(XS, split), expected)
    np.testing.assert_array_equal(batched(noisy, "b", layouts={"key": SplitKey()})(XS, key), expected)


def test_keys_of_another_shape_without_the_batch_dims_do_not_suggest_sharing():
    """Several keys per example (Key[Array, 'k']) passed without the batch dim: no layouts={'key': 'k'} hint."""

    def draws(x: Float[Array, "n"], keys: Key[Array, "k"]) -> Float[Array, "k n"]:
        return x + jax.vmap(lambda key: jax.random.normal(key, x.shape))(keys)

    message = _hint_of(batched(draws, "b"), XS, jax.random.split(jax.random.key(0), 3))
    assert message.startswith("draws: argument 'keys' has 1 dim")
    assert "To share one value" not in message and "layouts={'keys': 'k'}" not in message
    assert "jax.random.split" in message and "the same random numbers" in message
    assert message.index("the same random numbers") < message.index("layouts={'keys': None}")


def _exact(key):
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):

        def typed(x: Float[Array, "n"], key: Key[Array, ""]) -> Float[Array, "n"]:
            return x + jax.random.normal(key, x.shape)

        return typed

    def raw(x: Float[Array, "n"], key: UInt32[Array, "2"]) -> Float[Array, "n"]:
        return x + jax.random.normal(key, x.shape)

    return raw


def test_any_union_of_fixed_shapes():
    def first(v: Float[Array, "3"] | Float[Array, "2 3"]) -> Float[Array, "3"]:
        return v if v.ndim == 1 else v[0]

    vs = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(batched(first, "b")(vs), vs)
    ms = jnp.arange(24.0).reshape(4, 2, 3)
    np.testing.assert_array_equal(batched(first, "b")(ms), ms[:, 0])
    with pytest.raises(ShapeError, match=r"each example is float32\[4\].*Float\[Array, '3'\], Float\[Array, '2 3'\]"):
        batched(first, "b")(jnp.zeros((2, 4)))


def test_a_union_of_shapes_with_named_dims_is_chosen_by_rank():
    """Equinox's MultiheadAttention mask: 'q k' or 'heads q k'; jaxtyping checks the named dims per example."""

    def masked(x: Float[Array, "q k"], mask: Bool[Array, "q k"] | Bool[Array, "heads q k"]) -> Float[Array, "q k"]:
        return jnp.where(mask if mask.ndim == 2 else mask.all(axis=0), x, 0.0)

    xs = jnp.arange(24.0).reshape(2, 3, 4)
    for mask in (xs > 5, jnp.stack([xs > 5, xs > 7], axis=1)):
        np.testing.assert_array_equal(batched(masked, "b")(xs, mask), jax.vmap(masked)(xs, mask))
    with pytest.raises(
        ShapeError, match=r"each example is bool\[3\].*Bool\[Array, 'q k'\], Bool\[Array, 'heads q k'\]"
    ):
        batched(masked, "b")(xs, jnp.ones((2, 3), bool))
    with pytest.raises(ShapeError, match=r"(?s)masked: the per-example check failed.*parameter 'mask'.*k=4"):
        batched(masked, "b")(xs, jnp.ones((2, 3, 5), bool))  # 'k' is 4 in x, 5 in mask


def test_a_union_of_shapes_with_a_variadic_is_refused_at_decoration():
    def f(v: Float[Array, "*n"] | UInt32[Array, "n 2"]) -> Float[Array, ""]:
        return v.sum()

    with pytest.raises(SpecError, match=r"f: parameter 'v' .* allows several shapes .* a variadic dim"):
        batched(f, "b")


def test_describe_writes_a_union_of_shapes_as_its_members():
    contract = describe(batched(noisy, "b"))
    key = contract.parameters[1]
    assert key.annotation == "Key[Array, ''] | UInt32[Array, '2'] | UInt32[Array, '4'] | None"
    assert (key.per_example, key.batched) == ("...", "b ...")


def test_two_single_keys_name_the_first_with_the_split_hint():
    def two(x: Float[Array, "n"], a: PRNGKeyArray, b: PRNGKeyArray) -> Float[Array, "n"]:
        return x + jax.random.normal(a, x.shape) + jax.random.normal(b, x.shape)

    message = _hint_of(batched(two, "b"), XS, jax.random.PRNGKey(0), jax.random.PRNGKey(1))
    assert message.startswith("two: argument 'a' is one key (u32[2])") and "a = jax.random.split(a, 5)" in message
