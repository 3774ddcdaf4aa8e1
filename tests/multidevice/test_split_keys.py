"""``SplitKey`` sharded on 8 simulated CPU devices (run by tests/test_sharding.py in a subprocess).

The one key is split on the whole batch before the arguments are placed on the mesh, so every
example gets the key of the hand-written ``jax.random.split(key, n)`` whatever the mesh (1-d, 2-d,
Auto or Explicit axes), eagerly and under jit, chunked or not, and the results stay partitioned.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jaxtyping import Array, Float, PRNGKeyArray, UInt32

from shapedmap import SplitKey, batched

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")

AXIS_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}
KEYS = {"typed": jax.random.key(11), "raw": jax.random.PRNGKey(11)}
B = 16
XS = jnp.arange(B * 5, dtype=jnp.float32).reshape(B, 5)


def key_bits(x: Float[Array, "n"], key: PRNGKeyArray) -> UInt32[Array, "2"]:
    """The key one example received, as raw bits."""
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return data.reshape(-1)[:2] + 0 * x[:2].astype(jnp.uint32)


def noisy(x: Float[Array, "n"], key: PRNGKeyArray) -> Float[Array, "n"]:
    return x + jax.random.normal(key, x.shape)


def call(function, *args, jit, mesh):
    """Call eagerly, or under jit inside the mesh (as JAX requires for Explicit axes)."""
    if not jit:
        return function(*args)
    with jax.set_mesh(mesh):
        return jax.jit(function)(*args)


@pytest.mark.parametrize("key_kind", KEYS)
@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("chunk", [None, 1, 3], ids=["unchunked", "chunk 1", "chunk 3"])
def test_sharded_split_keys_equal_the_hand_written_split(key_kind, kind, jit, chunk):
    key = KEYS[key_kind]
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AXIS_TYPES[kind],))
    options = {"chunk": {"b": chunk}} if chunk else {}
    fn = batched(key_bits, "b", layouts={"key": SplitKey()}, shard={"b": "data"}, mesh=mesh, **options)
    out = call(fn, XS, key, jit=jit, mesh=mesh)
    np.testing.assert_array_equal(out, jax.vmap(key_bits)(XS, jax.random.split(key, B)))
    np.testing.assert_array_equal(out, batched(key_bits, "b", layouts={"key": SplitKey()})(XS, key))
    assert out.sharding.spec[0] == "data"
    assert {shard.data.shape for shard in out.addressable_shards} == {(B // 8, 2)}


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_two_batch_names_on_a_2d_mesh_give_the_hand_written_keys(kind):
    key = KEYS["typed"]
    mesh = jax.make_mesh((4, 2), ("x", "y"), axis_types=(AXIS_TYPES[kind],) * 2)
    xs = jnp.ones((4, 6, 5))
    fn = batched(key_bits, "run b", layouts={"key": SplitKey()}, shard={"run": "x", "b": "y"}, mesh=mesh)
    expected = jax.vmap(jax.vmap(key_bits))(xs, jax.random.split(key, (4, 6)))
    for jit in (False, True):
        np.testing.assert_array_equal(call(fn, xs, key, jit=jit, mesh=mesh), expected)


def test_the_values_of_a_sharded_split_equal_the_unsharded_call():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    key = KEYS["typed"]
    sharded = batched(noisy, "b", layouts={"key": SplitKey()}, shard={"b": "data"}, mesh=mesh)
    unsharded = batched(noisy, "b", layouts={"key": SplitKey()})
    np.testing.assert_allclose(call(sharded, XS, key, jit=True, mesh=mesh), unsharded(XS, key), rtol=1e-6)
    specs = sharded.partition_specs(XS, key)
    assert specs["key"][0] == "data" and specs["return"][0] == "data"  # the split keys, as they are placed
