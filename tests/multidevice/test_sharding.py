"""Batch names onto a mesh of 8 simulated CPU devices (run by tests/test_sharding.py in a subprocess).

Every case is compared with the naive loop and with the unsharded call, eagerly and under jit,
on meshes of Auto and of Explicit axes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, PyTree

from shapedmap import ShapeError, SpecError, batched

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (simulated) devices")

AXIS_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}


def mesh_1d(kind):
    return jax.make_mesh((8,), ("data",), axis_types=(AXIS_TYPES[kind],))


def mesh_2d(kind):
    return jax.make_mesh((4, 2), ("x", "y"), axis_types=(AXIS_TYPES[kind],) * 2)


def mp(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    return a @ f


A = jax.random.normal(jax.random.key(0), (16, 7, 7))
F = jax.random.normal(jax.random.key(1), (16, 7, 11))
LOOP = jnp.stack([A[g] @ F[g] for g in range(16)])


def call(function, *args, jit, mesh):
    """Call eagerly, or under jit inside the mesh (as JAX requires for Explicit axes)."""
    if not jit:
        return function(*args)
    with jax.set_mesh(mesh):
        return jax.jit(function)(*args)


@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("jit", [False, True])
def test_message_passing_sharded_equals_loop_and_is_partitioned(kind, jit):
    mesh = mesh_1d(kind)
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    out = call(sharded, A, F, jit=jit, mesh=mesh)
    np.testing.assert_allclose(out, LOOP, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, batched(mp, "graph")(A, F), rtol=1e-6, atol=1e-6)
    assert out.sharding.spec[0] == "data"
    assert all(entry is None for entry in out.sharding.spec[1:])
    assert {shard.data.shape for shard in out.addressable_shards} == {(2, 7, 11)}


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_compiled_program_works_on_per_device_slices(kind):
    mesh = mesh_1d(kind)
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    with jax.set_mesh(mesh):
        text = jax.jit(sharded).lower(A, F).compile().as_text()
    assert "f32[2,7,7]" in text and "f32[2,7,11]" in text  # 16 graphs / 8 devices
    assert "f32[16,7,7]" not in text.split("ENTRY")[-1].split("ROOT")[0].replace("parameter", "")


@pytest.mark.parametrize("kind", ["auto", "explicit"])
@pytest.mark.parametrize("jit", [False, True])
def test_psum_over_a_sharded_batch_name_is_the_whole_batch(kind, jit):
    mesh = mesh_1d(kind)

    @batched("graph", shard={"graph": "data"}, mesh=mesh)
    def centred(f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
        return f - jax.lax.psum(f, "graph") / 16

    out = call(centred, F, jit=jit, mesh=mesh)
    np.testing.assert_allclose(out, F - F.mean(axis=0), rtol=1e-5, atol=1e-5)
    if jit:
        with jax.set_mesh(mesh):
            assert "all-reduce" in jax.jit(centred).lower(F).compile().as_text()


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_grad_through_a_sharded_call(kind):
    mesh = mesh_1d(kind)
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    with jax.set_mesh(mesh):
        grad = jax.grad(lambda f: sharded(A, f).sum())(F)
        jit_grad = jax.jit(jax.grad(lambda f: sharded(A, f).sum()))(F)
    expected = jax.grad(lambda f: jnp.einsum("gij,gjk->gik", A, f).sum())(F)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jit_grad, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_two_batch_names_on_a_4x2_mesh(kind):
    mesh = mesh_2d(kind)

    def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
        return jnp.concatenate([u, v])

    pairwise = batched(concat, "i f, j f -> i j 2*f", shard={"i": "x", "j": "y"}, mesh=mesh)
    u = jax.random.normal(jax.random.key(2), (8, 3))
    v = jax.random.normal(jax.random.key(3), (6, 3))
    loop = jnp.stack([jnp.stack([concat(u[i], v[j]) for j in range(6)]) for i in range(8)])
    for jit in (False, True):
        out = call(pairwise, u, v, jit=jit, mesh=mesh)
        np.testing.assert_allclose(out, loop)
        assert tuple(out.sharding.spec)[:2] == ("x", "y")
    specs = pairwise.partition_specs(u, v)
    assert specs == {"u": P("x", None), "v": P("y", None), "return": P("x", "y", None)}


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_batch_name_over_a_tuple_of_mesh_axes(kind):
    mesh = mesh_2d(kind)
    sharded = batched(mp, "graph", shard={"graph": ("x", "y")}, mesh=mesh)
    for jit in (False, True):
        out = call(sharded, A, F, jit=jit, mesh=mesh)
        np.testing.assert_allclose(out, LOOP, rtol=1e-5, atol=1e-5)
        assert out.sharding.spec[0] == ("x", "y")


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_non_leading_and_after_a_variadic(kind):
    mesh = mesh_1d(kind)

    def step(x: Float[Array, "*lead feat"], w: Float[Array, "feat hidden"]) -> Float[Array, "*lead hidden"]:
        return jnp.tanh(x @ w)

    per_time = batched(step, "*lead time feat, feat hidden -> *lead time hidden", shard={"time": "data"}, mesh=mesh)
    w = jax.random.normal(jax.random.key(4), (4, 5))
    for lead in [(), (3,), (2, 3)]:
        x = jax.random.normal(jax.random.key(5), (*lead, 16, 4))
        for jit in (False, True):
            out = call(per_time, x, w, jit=jit, mesh=mesh)
            np.testing.assert_allclose(out, jnp.tanh(x @ w), rtol=1e-5, atol=1e-5)
            spec = tuple(out.sharding.spec) + (None,) * (out.ndim - len(out.sharding.spec))
            assert spec[len(lead)] == "data" and spec.count("data") == 1
        specs = per_time.partition_specs(x, w)
        assert specs["x"] == P(*([None] * len(lead)), "data", None)
        assert specs["w"] == P(None, None)  # not mapped over 'time': replicated
        assert specs["return"] == P(*([None] * len(lead)), "data", None)


def test_mesh_from_context():
    mesh = mesh_1d("auto")
    sharded = batched(mp, "graph", shard={"graph": "data"})
    with jax.set_mesh(mesh):
        out = sharded(A, F)
        out_jit = jax.jit(sharded)(A, F)
    np.testing.assert_allclose(out, LOOP, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_jit, LOOP, rtol=1e-5, atol=1e-5)
    assert out.sharding.spec[0] == "data"
    with pytest.raises(SpecError, match=r"mp: shard=\{'graph': 'data'\} needs a mesh: pass mesh= to batched"):
        sharded(A, F)
    with jax.set_mesh(mesh_2d("auto")), pytest.raises(SpecError, match="names a mesh axis the mesh lacks"):
        sharded(A, F)


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_indivisible_batch_is_a_shape_error_before_jax(kind):
    mesh = mesh_1d(kind)
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    with pytest.raises(ShapeError) as info:
        sharded(A[:13], F[:13])
    assert str(info.value) == (
        "mp: the batch dim 'graph' has size 13 (argument 'a' (axis 0 of f32[13,7,7])), which the mesh axis "
        "'data' (size 8) cannot split evenly: make the batch a multiple of 8, or shard 'graph' over mesh axes "
        "whose size divides 13"
    )
    with pytest.raises(ShapeError, match="'data' \\(size 8\\) cannot split evenly"):
        sharded.partition_specs(A[:13], F[:13])  # specs that device_put would refuse are not given
    from_context = batched(mp, "graph", shard={"graph": "data"})
    assert from_context.partition_specs(A[:13], F[:13])["a"] == P("data", None, None)  # no mesh: specs only
    with jax.set_mesh(mesh), pytest.raises(ShapeError, match="cannot split evenly"):
        from_context.partition_specs(A[:13], F[:13])


def test_explicit_mesh_under_jit_outside_set_mesh_says_what_to_do():
    mesh = mesh_1d("explicit")
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    with pytest.raises(
        SpecError, match=r"needs a traced call \(jax.jit, jax.grad, ...\) over such arrays to run inside"
    ):
        jax.jit(sharded)(A, F)


def test_spec_errors_at_decoration():
    mesh = mesh_2d("auto")
    with pytest.raises(
        SpecError, match=r"mp: shard= names 'node', which is not a batch dim of this function \(batch dims: graph\)"
    ):
        batched(mp, "graph", shard={"node": "x"}, mesh=mesh)
    with pytest.raises(
        SpecError, match=r"mp: shard=\{'graph': 'data'\} names a mesh axis the mesh lacks \(mesh axes: 'x', 'y'\)"
    ):
        batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    with pytest.raises(SpecError, match="mp: mesh= is given but shard= is not"):
        batched(mp, "graph", mesh=mesh)
    with pytest.raises(SpecError, match="the mesh axis 'x' is given to both 'i' and 'j'"):
        batched(_pair, "i, j -> i j", shard={"i": "x", "j": "x"}, mesh=mesh)
    with pytest.raises(SpecError, match=r"mp: mesh= must be a jax\.sharding\.Mesh"):
        batched(mp, "graph", shard={"graph": "x"}, mesh="x")


def _pair(u: Float[Array, ""], v: Float[Array, ""]) -> Float[Array, ""]:
    return u * v


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_compiled_cost_equals_hand_written_spmd_vmap(kind):
    mesh = mesh_1d(kind)
    sharding = NamedSharding(mesh, P("data"))
    a, f = jax.device_put(A, sharding), jax.device_put(F, sharding)
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    hand_written = jax.vmap(mp, axis_name="graph", spmd_axis_name="data")
    with jax.set_mesh(mesh):
        ours = jax.jit(sharded).lower(a, f).compile().cost_analysis()
        theirs = jax.jit(hand_written).lower(a, f).compile().cost_analysis()
    assert ours == theirs


def vv(a: Float[Array, "a"], b: Float[Array, "a"]) -> Float[Array, ""]:
    return a @ b


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_a_sharded_function_batched_again(kind):
    # An eager vmap around a sharded call: on Explicit axes JAX's reshard refused to enter the mesh there.
    mesh = mesh_1d(kind)
    mv = batched(vv, "b a, a -> b", shard={"b": "data"}, mesh=mesh)
    mm = batched(mv, "b a, a c -> b c")
    x = jax.random.normal(jax.random.key(2), (8, 3))
    y = jax.random.normal(jax.random.key(3), (3, 5))
    with jax.set_mesh(mesh):
        eager = mm(x, y)
        jitted = jax.jit(mm)(x, y)
        grad = jax.grad(lambda y: mm(x, y).sum())(y)
    loop = jnp.stack([jnp.stack([x[b] @ y[:, c] for c in range(5)]) for b in range(8)])
    np.testing.assert_allclose(eager, loop, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jitted, loop, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, jnp.broadcast_to(x.sum(axis=0)[:, None], (3, 5)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_explain_text_runs_like_the_sharded_call(kind):
    # With a collective over the sharded name: on Explicit axes only the auto_axes wrapper makes it work.
    from shapedmap import explain

    mesh = mesh_1d(kind)

    @batched("graph", shard={"graph": "data"}, mesh=mesh)
    def centred(f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
        return f - jax.lax.psum(f, "graph") / 16

    text = explain(centred, F)
    assert ("auto_axes" in text) == (kind == "explicit")
    namespace = {"centred": centred.fn}
    exec(text, namespace)
    placed = jax.device_put(F, NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        written_out = jax.jit(namespace["batched_centred"])(placed)
        ours = jax.jit(centred)(placed)
    np.testing.assert_allclose(written_out, ours, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours, F - F.mean(axis=0), rtol=1e-5, atol=1e-5)


def _affine(params: PyTree[Float[Array, "n"]], x: Float[Array, "n"]) -> Float[Array, "n"]:
    return params["w"] * x + params["b"]


@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_a_layout_tree_places_each_subtree_with_its_own_spec(kind):
    """docs/layouts.md, "Layout trees": with shard=, each leaf is placed with its own partition spec."""
    mesh = mesh_1d(kind)
    layouts = {"params": {"w": None, "b": "n batch"}}
    sharded = batched(_affine, "batch", layouts=layouts, shard={"batch": "data"}, mesh=mesh)
    params = {"w": jnp.arange(3.0), "b": jax.random.normal(jax.random.key(6), (3, 16))}
    x = jax.random.normal(jax.random.key(7), (16, 3))
    expected = jax.vmap(_affine, in_axes=({"w": None, "b": 1}, 0))(params, x)
    for jit in (False, True):
        out = call(sharded, params, x, jit=jit, mesh=mesh)
        np.testing.assert_allclose(out, expected, rtol=1e-6)
        assert out.sharding.spec[0] == "data"
    specs = sharded.partition_specs(params, x)
    assert specs["params"] == {"w": P(None), "b": P(None, "data")}
    assert specs["x"] == P("data", None)
