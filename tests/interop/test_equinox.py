"""equinox modules run per example through ``batched``, against the hand-written ``jax.vmap`` version.

equinox layers act on one example, and users batch them with ``jax.vmap(layer)(xs)``. Here:

* the built-in layers batched with ``batched(layer, "batch")``: ``Linear``, ``MLP``, ``Conv1d``,
  ``GRUCell`` (two mapped arguments), ``Embedding`` (an integer index per example), ``LayerNorm``
  (its ``state`` left at equinox's default sentinel), and ``Dropout`` in training mode
  with its ``key: PRNGKeyArray | None`` either mapped (one key per example, as
  ``jax.vmap(dropout)(xs, key=keys)``) or shared (``layouts={"key": None}``, as
  ``jax.vmap(lambda x: dropout(x, key=key))(xs)``, every example getting the same mask);
* batched layers under ``eqx.filter_jit`` and inside a loss differentiated by ``eqx.filter_grad``;
* a custom module whose ``__call__`` is decorated with ``@batched`` in the class body, its width
  read from ``self`` (``"{self.features}"``): it stays a normal module — a PyTree that flattens and
  unflattens, works under ``eqx.filter_jit``/``eqx.filter_grad``, takes a new weight from
  ``eqx.tree_at`` and round-trips through ``eqx.tree_serialise_leaves``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

from interop import assert_trees_close
from shapedmap import ShapeError, batched

eqx = pytest.importorskip("equinox")

KEY = jax.random.key(0)
XS = jax.random.normal(jax.random.key(1), (5, 3))  # 5 examples of 3 features
YS = jax.random.normal(jax.random.key(2), (5, 2))


# -- equinox's layers, batched ----------------------------------------------------------------

LAYERS = {  # a layer, and its arguments for a batch of 5
    "Linear": (lambda: eqx.nn.Linear(3, 2, key=KEY), (XS,)),
    "MLP": (lambda: eqx.nn.MLP(3, 2, width_size=4, depth=2, key=KEY), (XS,)),
    "Conv1d": (lambda: eqx.nn.Conv1d(3, 2, kernel_size=3, key=KEY), (jax.random.normal(KEY, (5, 3, 7)),)),
    "LayerNorm": (lambda: eqx.nn.LayerNorm(3), (XS,)),
    "GRUCell": (lambda: eqx.nn.GRUCell(3, 2, key=KEY), (XS, YS)),  # two mapped arguments: input, hidden
    "Embedding": (lambda: eqx.nn.Embedding(10, 2, key=KEY), (jnp.arange(5),)),  # x: Int[Array, ''] | int
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_per_example(name):
    make, args = LAYERS[name]
    layer = make()
    expected = jax.vmap(layer)(*args)
    one = layer(*(arg[3] for arg in args))
    np.testing.assert_allclose(expected[3], one, rtol=1e-6, atol=1e-6)  # the reference is the loop
    per_example = batched(layer, "batch")
    for _ in range(2):  # the second call, with the shapes seen, runs the layer itself as the body
        assert_trees_close(per_example(*args), expected, exact=True)


def test_multihead_attention_with_and_without_its_mask():
    """Its ``mask`` is ``Bool[Array, 'q_seq kv_seq'] | Bool[Array, 'num_heads q_seq kv_seq'] | None``."""
    attention = eqx.nn.MultiheadAttention(num_heads=2, query_size=4, key=KEY)
    qs = jax.random.normal(KEY, (3, 5, 4))
    per_example = batched(attention, "batch")
    assert_trees_close(per_example(qs, qs, qs), jax.vmap(attention)(qs, qs, qs))
    for mask in (qs[..., :1] @ qs[..., :1].mT > 0, jnp.ones((3, 2, 5, 5), bool).at[:, 1, :, 0].set(False)):
        assert_trees_close(per_example(qs, qs, qs, mask), jax.vmap(attention)(qs, qs, qs, mask))


def test_batch_norm_with_its_state_shared_and_returned_unmapped():
    """``jax.vmap(bn, axis_name="batch", in_axes=(0, None), out_axes=(0, None))``: the batch name is the axis name."""
    norm, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, axis_name="batch")
    _, reference_state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, axis_name="batch")  # equinox: one use each
    reference = jax.vmap(norm, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    per_example = batched(norm, "batch", out=("batch ...", None))  # State is a class: held static
    for xs in (XS, 2 * XS + 1):  # the second step runs on the state the first returned
        out, state = per_example(xs, state)
        expected, reference_state = reference(xs, reference_state)
        assert_trees_close((out, state), (expected, reference_state))


DROPOUT = eqx.nn.Dropout(0.5, inference=False)
ONES = jnp.ones((6, 40))  # every kept entry is 2, every dropped one 0: the masks are visible


# the members of equinox's PRNGKeyArray: a typed key, and a raw uint32 key of 2 words
KEY_KINDS = {"typed": KEY, "raw": jax.random.PRNGKey(0)}


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_dropout_one_key_per_example(kind):
    keys = jax.random.split(KEY_KINDS[kind], 6)
    expected = jax.vmap(DROPOUT)(ONES, key=keys)
    np.testing.assert_array_equal(expected[2], DROPOUT(ONES[2], key=keys[2]))
    got = batched(DROPOUT, "batch")(ONES, key=keys)
    assert_trees_close(got, expected, exact=True)
    assert not all(np.array_equal(got[0], row) for row in got[1:])  # different keys, different masks


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("layout", [None, "..."], ids=["None", "ellipsis"])
def test_dropout_one_key_shared_by_every_example(layout, kind):
    """``None`` is the per-example layout itself (here ``...``): the key is not mapped."""
    key = KEY_KINDS[kind]
    shared = batched(DROPOUT, "batch", layouts={"key": layout})
    expected = jax.vmap(lambda x: DROPOUT(x, key=key))(ONES)
    got = shared(ONES, key=key)
    assert_trees_close(got, expected, exact=True)
    assert all(np.array_equal(got[0], row) for row in got[1:])  # one key: one mask for all
    assert 0 < int(jnp.sum(got[0] == 0)) < ONES.shape[1]


def test_dropout_in_inference_needs_no_key():
    np.testing.assert_array_equal(batched(DROPOUT, "batch")(ONES, inference=True), ONES)


def test_batched_layer_under_filter_jit_and_filter_grad():
    mlp = LAYERS["MLP"][0]()
    expected = jax.vmap(mlp)(XS)
    # batched at call time, as equinox asks of jax.vmap: batched(mlp) closes over mlp's arrays, like jax.vmap(mlp)
    assert_trees_close(eqx.filter_jit(lambda model, xs: batched(model, "batch")(xs))(mlp, XS), expected)

    def loss(model, xs, ys, per_example):
        return jnp.mean((per_example(model)(xs) - ys) ** 2)

    grads = eqx.filter_grad(loss)(mlp, XS, YS, lambda model: batched(model, "batch"))
    assert_trees_close(grads, eqx.filter_grad(loss)(mlp, XS, YS, jax.vmap))


# -- a module whose __call__ is batched --------------------------------------------------------


class Affine(eqx.Module):
    weight: Float[Array, "out features"]
    bias: Float[Array, " out"]
    features: int = eqx.field(static=True)

    def __init__(self, features: int, out: int, *, key: jax.Array):
        self.features = features
        self.weight = jax.random.normal(key, (out, features))
        self.bias = jnp.arange(float(out))

    @batched("batch")
    def __call__(self, x: Float[Array, "{self.features}"]) -> Float[Array, " out"]:
        return jnp.tanh(self.weight @ x + self.bias)


def by_hand(model, xs):
    """The hand-written version: ``jax.vmap`` of the per-example formula."""
    return jax.vmap(lambda x: jnp.tanh(model.weight @ x + model.bias))(xs)


MODEL = Affine(3, 2, key=KEY)


def test_decorated_call_equals_jax_vmap():
    assert_trees_close(MODEL(XS), by_hand(MODEL, XS), exact=True)
    assert MODEL(XS[:1]).shape == (1, 2)


def test_decorated_call_names_the_width_from_self():
    with pytest.raises(ShapeError, match=r"(?s)Affine\.__call__: dimension '\{self\.features\}'.* should be 3,.*'x'"):
        MODEL(jnp.ones((5, 4)))


def test_decorated_module_is_a_pytree():
    leaves, tree = jax.tree.flatten(MODEL)
    assert_trees_close(leaves, [MODEL.weight, MODEL.bias], exact=True)  # no leaf of shapedmap's own
    rebuilt = jax.tree.unflatten(tree, [2 * leaf for leaf in leaves])
    assert type(rebuilt) is Affine and rebuilt.features == 3
    assert_trees_close(rebuilt(XS), by_hand(rebuilt, XS), exact=True)


def test_decorated_module_under_filter_jit_and_filter_grad():
    assert_trees_close(eqx.filter_jit(lambda model, xs: model(xs))(MODEL, XS), by_hand(MODEL, XS))

    def loss(model, predict):
        return jnp.mean((predict(model, XS) - YS) ** 2)

    grads = eqx.filter_grad(loss)(MODEL, Affine.__call__)
    expected = eqx.filter_grad(loss)(MODEL, by_hand)
    assert type(grads) is Affine
    assert_trees_close(grads, expected)


def test_decorated_module_takes_a_new_weight_from_tree_at():
    weight = -MODEL.weight
    replaced = eqx.tree_at(lambda model: model.weight, MODEL, weight)
    np.testing.assert_array_equal(replaced.weight, weight)
    assert_trees_close(replaced(XS), by_hand(replaced, XS), exact=True)
    assert not np.allclose(replaced(XS), MODEL(XS))


def test_decorated_module_serialises(tmp_path):
    path = tmp_path / "affine.eqx"
    eqx.tree_serialise_leaves(path, MODEL)
    loaded = eqx.tree_deserialise_leaves(path, Affine(3, 2, key=jax.random.key(9)))
    assert_trees_close(loaded, MODEL, exact=True)
    assert_trees_close(loaded(XS), MODEL(XS), exact=True)
