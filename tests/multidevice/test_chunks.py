"""``chunk=`` with ``shard=`` on 8 simulated CPU devices (run by tests/test_sharding.py in a subprocess).

Each device maps its own shard in slices: the values equal the naive loop and the unchunked call,
eagerly and under jit, on Auto and Explicit meshes, and the compiled per-device program is a while
loop whose body works on chunk-sized arrays, never on the shard or the batch at once.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType
from jaxtyping import Array, Float, PyTree

from shapedmap import SpecError, batched

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")

AXIS_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}
GRAPHS, POINTS = 256, 24  # 32 graphs per device


def mesh_1d(kind):
    return jax.make_mesh((8,), ("data",), axis_types=(AXIS_TYPES[kind],))


def nearest(x: Float[Array, "p d"]) -> Float[Array, "p"]:
    distances = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    return jnp.sort(distances, axis=-1)[:, 1]


X = jax.random.normal(jax.random.key(0), (GRAPHS, POINTS, 3))
LOOP = jnp.stack([nearest(X[g]) for g in range(GRAPHS)])


def call(function, *args, jit, mesh):
    """Call eagerly, or under jit inside the mesh (as JAX requires for Explicit axes)."""
    if not jit:
        return function(*args)
    with jax.set_mesh(mesh):
        return jax.jit(function)(*args)


@pytest.mark.parametrize("chunk", [4, 5, 32, 64])  # slices, slices and a remainder, one slice per device
@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("jit", [False, True])
def test_a_sharded_chunked_call_equals_the_loop_and_stays_partitioned(kind, jit, chunk):
    mesh = mesh_1d(kind)
    chunked = batched(nearest, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": chunk})
    out = call(chunked, X, jit=jit, mesh=mesh)
    np.testing.assert_allclose(out, LOOP, rtol=1e-5, atol=1e-5)
    assert out.sharding.spec[0] == "data"
    assert {shard.data.shape for shard in out.addressable_shards} == {(GRAPHS // 8, POINTS)}


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_each_device_loops_over_chunk_sized_slices_of_its_own_shard(kind):
    mesh = mesh_1d(kind)
    chunked = batched(nearest, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": 4})
    with jax.set_mesh(mesh):
        compiled = jax.jit(chunked).lower(X).compile()
    text = compiled.as_text()
    shapes = set(re.findall(r"f32\[([0-9,]+)\]", text))
    assert "while" in text
    assert f"4,{POINTS},{POINTS}" in {s.removeprefix("1,") for s in shapes}  # a slice's (p, p) distances
    assert not any(s.endswith(f"32,{POINTS},{POINTS}") or s.startswith(f"{GRAPHS},{POINTS},{POINTS}") for s in shapes)
    assert "all-gather" not in text and "all-to-all" not in text
    unchunked = batched(nearest, "graph", shard={"graph": "data"}, mesh=mesh)
    with jax.set_mesh(mesh):
        whole_shard = jax.jit(unchunked).lower(X).compile().memory_analysis().temp_size_in_bytes
    assert compiled.memory_analysis().temp_size_in_bytes < whole_shard / 2  # one shard in slices of 4


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_a_chunked_sharded_dim_after_a_variadic(kind):
    mesh = mesh_1d(kind)

    def step(x: Float[Array, "*lead feat"], w: Float[Array, "feat hidden"]) -> Float[Array, "*lead hidden"]:
        return jnp.tanh(x @ w)

    spec = "*lead time feat, feat hidden -> *lead time hidden"
    per_time = batched(step, spec, shard={"time": "data"}, mesh=mesh, chunk={"time": 3})
    w = jax.random.normal(jax.random.key(4), (4, 5))
    for lead in [(), (2, 3)]:
        x = jax.random.normal(jax.random.key(5), (*lead, 64, 4))
        for jit in (False, True):
            out = call(per_time, x, w, jit=jit, mesh=mesh)
            np.testing.assert_allclose(out, jnp.tanh(x @ w), rtol=1e-5, atol=1e-5)
            spec_of = tuple(out.sharding.spec) + (None,) * (out.ndim - len(out.sharding.spec))
            assert spec_of[len(lead)] == "data"


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_grad_through_a_sharded_chunked_call(kind):
    mesh = mesh_1d(kind)
    chunked = batched(nearest, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": 8})
    expected = jax.grad(lambda x: jnp.sum(jax.vmap(nearest)(x) ** 2))(X)
    with jax.set_mesh(mesh):
        got = jax.jit(jax.grad(lambda x: jnp.sum(chunked(x) ** 2)))(X)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_collective_over_a_sharded_chunked_name_is_a_spec_error():
    mesh = mesh_1d("auto")

    @batched("graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": 4})
    def centred(f: Float[Array, "feat"]) -> Float[Array, "feat"]:
        return f - jax.lax.psum(f, "graph")

    with pytest.raises(
        SpecError, match=r"centred: the body uses an axis name that is not bound .*\(chunk=\{'graph': 4\}"
    ):
        centred(jnp.ones((64, 3)))


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_per_device_memory_is_one_slice_whatever_the_batch(kind):
    # Each device's temporary memory held its whole shard: the scan's (devices, slices, chunk)
    # stacking, transposed under the devices' vmap, was copied (here 189 KB against the hand-written 42 KB at
    # 4096 graphs), where the hand-written shard_map(lax.map) stays at one slice's.
    mesh = mesh_1d(kind)
    chunked = batched(nearest, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": 16})
    by_hand = jax.shard_map(
        lambda xs: jax.lax.map(nearest, xs, batch_size=16), mesh=mesh, in_specs=jax.P("data"), out_specs=jax.P("data")
    )

    def temporary(function, graphs):
        x = jax.ShapeDtypeStruct((graphs, POINTS, 3), jnp.float32, sharding=jax.NamedSharding(mesh, jax.P("data")))
        with jax.set_mesh(mesh):
            return jax.jit(function).lower(x).compile().memory_analysis().temp_size_in_bytes

    at_4096, at_65536 = temporary(chunked, 4096), temporary(chunked, 65536)
    assert at_4096 <= 1.1 * temporary(by_hand, 4096)
    assert at_65536 <= 1.1 * temporary(by_hand, 65536)
    assert at_65536 <= 1.1 * at_4096  # flat in the batch size


@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("jit", [False, True])
def test_a_mesh_axis_named_as_the_chunked_batch_dim_is_no_outer_axis(kind, jit):
    # An outer axis of a chunked name is refused only where a transform around the call binds the name: a mesh axis of the
    # same name that shard= splits the batch over binds none.
    mesh = jax.make_mesh((8,), ("graph",), axis_types=(AXIS_TYPES[kind],))
    chunked = batched(nearest, "graph", shard={"graph": "graph"}, mesh=mesh, chunk={"graph": 4})
    np.testing.assert_allclose(call(chunked, X, jit=jit, mesh=mesh), LOOP, rtol=1e-5, atol=1e-5)


def _scaled(p: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
    return {"a": p["a"] * p["w"], "b": p["b"] + p["w"]}


@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("size", [32, 40], ids=["divides", "remainder"])
def test_a_layout_tree_sharded_and_chunked_slices_each_leaf_on_its_own_axis(kind, size):
    """docs/layouts.md, "Layout trees": each device slices each leaf of its shard on that leaf's own axis."""
    mesh = mesh_1d(kind)
    layouts = {"p": {"a": "batch n", "b": "n batch", "w": None}}
    out = {"a": "n batch", "b": "batch n"}
    fn = batched(_scaled, "batch", layouts=layouts, out=out, chunk={"batch": 2}, shard={"batch": "data"}, mesh=mesh)
    p = {"a": jnp.arange(3.0 * size).reshape(size, 3), "b": jnp.ones((3, size)), "w": jnp.arange(3.0)}
    expected = jax.vmap(_scaled, in_axes=({"a": 0, "b": 1, "w": None},), out_axes={"a": 1, "b": 0})(p)
    for jit in (False, True):
        got = call(fn, p, jit=jit, mesh=mesh)
        assert jax.tree.structure(got) == jax.tree.structure(expected)
        for leaf, want in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(leaf, want, rtol=1e-6)
