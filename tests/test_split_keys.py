"""``layouts={"key": SplitKey()}``: one key in, one key per example out, equal to the hand-written split.

The reference is always the hand-written form the docs show beside it: ``jax.random.split(key, n)``
(two batch names: ``split(key, (n, m))``) passed to ``jax.vmap`` (nested once per batch name). The keys
are compared exactly (``jax.random.key_data``), eagerly and under ``jax.jit``, for typed and raw keys,
chunked at several chunk sizes (the split happens on the whole batch, before slicing), under
``jax.grad``, with ``*batch`` (the broadcast batch shape), and through equinox's ``Dropout``. The
sharded case (the same keys whatever the mesh) is in tests/multidevice/test_split_keys.py.
"""

import inspect
import re

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jaxtyping import Array, Float, Key, PRNGKeyArray, UInt32

from shapedmap import ShapeError, SpecError, SplitKey, batched, describe, explain
from shapedmap.testing import check_batched, inputs

N, M = 6, 3
XS = jnp.arange(N * 4, dtype=jnp.float32).reshape(N, 4)
KEYS = {"typed": jax.random.key(7), "raw": jax.random.PRNGKey(7)}


def noisy(x: Float[Array, "n"], key: PRNGKeyArray) -> Float[Array, "n"]:
    """One example plus noise drawn from its own key."""
    return x + jax.random.normal(key, x.shape)


def key_bits(x: Float[Array, "n"], key: PRNGKeyArray) -> UInt32[Array, "2"]:
    """The key one example received, as raw bits (what the tests compare exactly)."""
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return data.reshape(-1)[:2]


def split_batched(fn, spec="b", **options):
    return batched(fn, spec, layouts={"key": SplitKey()}, **options)


@pytest.mark.parametrize("kind", KEYS)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_one_batch_name_equals_the_hand_written_split(kind, jit):
    key = KEYS[kind]
    reference = jax.vmap(noisy)
    expected = (jax.jit(reference) if jit else reference)(XS, jax.random.split(key, N))
    fn = split_batched(noisy)
    call = jax.jit(fn) if jit else fn
    np.testing.assert_array_equal(call(XS, key), expected)
    np.testing.assert_array_equal(call(XS, key=key), expected)  # by keyword
    np.testing.assert_array_equal(call(XS, key), expected)  # a remembered call splits again
    bits = jax.vmap(key_bits)(XS, jax.random.split(key, N))
    np.testing.assert_array_equal(split_batched(key_bits)(XS, key), bits)
    assert len({tuple(row) for row in np.asarray(bits)}) == N  # every example its own key


@pytest.mark.parametrize("kind", KEYS)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_two_batch_names_split_one_key_per_combination(kind, jit):
    key = KEYS[kind]
    xs = jnp.arange(M * N * 4, dtype=jnp.float32).reshape(M, N, 4)
    fn = split_batched(key_bits, "run b")
    call = jax.jit(fn) if jit else fn
    expected = jax.vmap(jax.vmap(key_bits))(xs, jax.random.split(key, (M, N)))
    got = call(xs, key)
    np.testing.assert_array_equal(got, expected)
    assert len({tuple(bits) for bits in np.asarray(got).reshape(-1, 2)}) == M * N
    values = split_batched(noisy, "run b")(xs, key)
    np.testing.assert_array_equal(values, jax.vmap(jax.vmap(noisy))(xs, jax.random.split(key, (M, N))))


def test_the_split_follows_the_plans_order_of_batch_names_not_the_arguments():
    """Outermost first, as the plan orders them (here by the result's layout 'j i')."""

    def pair(u: Float[Array, ""], v: Float[Array, ""], key: Key[Array, ""]) -> UInt32[Array, "2"]:
        return jax.random.key_data(key) + 0 * (u + v).astype(jnp.uint32)

    fn = batched(pair, "i, j, -> j i 2", layouts={"key": SplitKey()})
    us, vs, key = jnp.arange(2.0), jnp.arange(3.0), jax.random.key(1)
    keys = jax.random.split(key, (3, 2))  # (j, i)
    expected = jax.vmap(jax.vmap(pair, in_axes=(0, None, 0)), in_axes=(None, 0, 0))(us, vs, keys)
    np.testing.assert_array_equal(fn(us, vs, key), expected)


@pytest.mark.parametrize("kind", KEYS)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_chunked_gives_the_same_keys_whatever_the_chunk(kind, jit):
    key = KEYS[kind]
    expected = jax.vmap(key_bits)(XS, jax.random.split(key, N))
    for chunk in (1, 3, 4, N):  # one example a slice, slices, slices and a remainder, the whole batch
        fn = split_batched(key_bits, chunk={"b": chunk})
        call = jax.jit(fn) if jit else fn
        np.testing.assert_array_equal(call(XS, key), expected, err_msg=f"chunk={chunk}")


def test_chunked_over_one_of_two_batch_names():
    key = KEYS["typed"]
    xs = jnp.ones((M, N, 4))
    expected = jax.vmap(jax.vmap(key_bits))(xs, jax.random.split(key, (M, N)))
    for chunk in (1, 2, M):
        np.testing.assert_array_equal(split_batched(key_bits, "run b", chunk={"run": chunk})(xs, key), expected)


@pytest.mark.parametrize("kind", KEYS)
def test_under_grad_equals_the_hand_written_split(kind):
    key = KEYS[kind]
    fn = split_batched(noisy)

    def loss(xs):
        return jnp.sum(fn(xs, key) ** 2)

    def reference(xs):
        return jnp.sum(jax.vmap(noisy)(xs, jax.random.split(key, N)) ** 2)

    np.testing.assert_allclose(jax.grad(loss)(XS), jax.grad(reference)(XS), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(XS), jax.grad(reference)(XS), rtol=1e-6)


def test_a_variadic_batch_splits_into_the_broadcast_batch_shape():
    def scaled(x: Float[Array, ""], y: Float[Array, ""], key: Key[Array, ""]) -> Float[Array, ""]:
        return x * y + jax.random.normal(key)

    xs, ys, key = jnp.ones((2, 1)), jnp.arange(3.0), jax.random.key(4)
    got = batched(scaled, "*batch", layouts={"key": SplitKey()})(xs, ys, key)
    xb, yb = jnp.broadcast_to(xs, (2, 3)), jnp.broadcast_to(ys, (2, 3))
    np.testing.assert_array_equal(got, jax.vmap(jax.vmap(scaled))(xb, yb, jax.random.split(key, (2, 3))))
    fn = batched(scaled, "*batch", layouts={"key": SplitKey()})
    text = explain(fn, xs, ys, key)
    assert "key = jax.random.split(key, (2, 3))" in text
    namespace = {"scaled": scaled}
    exec(text, namespace)
    np.testing.assert_array_equal(namespace["batched_scaled"](xs, ys, key), got)


def test_an_output_only_batch_dim_with_a_size_draws_that_many_samples():
    def sample(key: Key[Array, ""]) -> Float[Array, "3"]:
        return jax.random.normal(key, (3,))

    key = jax.random.key(5)
    got = batched(sample, "b=4", layouts={"key": SplitKey()})(key)
    np.testing.assert_array_equal(got, jax.vmap(sample)(jax.random.split(key, 4)))


def test_an_optional_key_left_out_stays_none():
    def maybe(x: Float[Array, "n"], key: PRNGKeyArray | None = None) -> Float[Array, "n"]:
        return x if key is None else x + jax.random.normal(key, x.shape)

    fn = split_batched(maybe)
    np.testing.assert_array_equal(fn(XS), XS)
    np.testing.assert_array_equal(
        fn(XS, jax.random.key(0)), jax.vmap(maybe)(XS, jax.random.split(jax.random.key(0), N))
    )


def test_unchecked_and_pickled_functions_split_the_same():
    key = KEYS["typed"]
    expected = jax.vmap(noisy)(XS, jax.random.split(key, N))
    np.testing.assert_array_equal(split_batched(noisy, check=False)(XS, key), expected)

    def closure(x: Float[Array, "n"], key: Key[Array, ""]) -> Float[Array, "n"]:
        return noisy(x, key)

    loaded = cloudpickle.loads(cloudpickle.dumps(split_batched(closure, "b n, -> b n")))
    np.testing.assert_array_equal(loaded(XS, key), expected)


# -- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "said"),
    [
        (Float[Array, ""], "is annotated Float[Array, ''], not as one key"),
        (Key[Array, "k"], "is annotated Key[Array, 'k'], not as one key"),
        (UInt32[Array, "3"], "is annotated UInt32[Array, '3'], not as one key"),
        (None, "is not annotated"),
    ],
    ids=["float", "several keys", "uint32[3]", "unannotated"],
)
def test_split_key_on_a_parameter_not_annotated_as_one_key_is_a_spec_error(annotation, said):
    def f(x: Float[Array, "n"], key) -> Float[Array, "n"]:
        return x

    if annotation is not None:
        f.__annotations__["key"] = annotation
    with pytest.raises(SpecError) as error:
        split_batched(f)
    message = str(error.value)
    assert message.startswith("f: layouts={'key': SplitKey()} splits one PRNG key into one key per example, ")
    assert f"but parameter 'key' {said}" in message
    assert "one key: annotate it Key[Array, ''] (a jax.random.key), UInt32[Array, '2']" in message


def test_the_class_instead_of_an_instance_is_a_spec_error():
    with pytest.raises(SpecError, match=r"noisy: layouts=\{'key': SplitKey\} gives the class: write SplitKey\(\)"):
        batched(noisy, "b", layouts={"key": SplitKey})


def test_an_any_shaped_key_with_a_variadic_batch_is_a_spec_error():
    with pytest.raises(SpecError, match=r"noisy: .*'\*batch' batch shape.*annotate it Key\[Array, ''\]"):
        split_batched(noisy, "*batch")


@pytest.mark.parametrize(
    ("keys", "shape"),
    [
        (jax.random.split(KEYS["typed"], N), r"key<fry>\[6\], keys of shape \(6,\)"),
        (jax.random.split(KEYS["raw"], N), r"u32\[6,2\], keys of shape \(6,\)"),
    ],
    ids=["typed", "raw"],
)
def test_keys_with_batch_dims_where_one_key_is_taken_say_to_pass_one(keys, shape):
    with pytest.raises(ShapeError) as error:
        split_batched(noisy)(XS, keys)
    message = str(error.value)
    assert message.startswith(
        "noisy: argument 'key' takes one key, which layouts={'key': SplitKey()} splits into one key per example over 'b'"
    )
    assert re.search(shape, message)
    assert "Pass one key, such as jax.random.key(0); to pass one key per example yourself, drop SplitKey" in message


def test_a_key_of_the_wrong_dtype_is_named():
    with pytest.raises(ShapeError, match=r"noisy: argument 'key'.*float32"):
        split_batched(noisy)(XS, jnp.zeros(2))


# -- what the views show ----------------------------------------------------------------------


def test_the_signature_describe_and_shapes_section_show_one_key_split():
    fn = split_batched(noisy, "run b")
    annotation = str(inspect.signature(fn).parameters["key"].annotation)
    assert "Key[Array, '']" in annotation and "'run b'" not in annotation  # one key is passed
    assert (
        "- ``key``: one key (per example ``...``), split by ``jax.random.split`` into one key per example over "
        "``run``, ``b``: ``run b ...``"
    ) in fn.__doc__
    contract = describe(fn)
    key = contract.parameters[1]
    assert key.split_key and (key.batched, key.per_example) == ("run b ...", "...")
    assert contract.to_dict()["parameters"][1]["split_key"] is True
    markdown = contract.to_markdown()
    assert "| `key` | `run b ...`, split from one key `...` |" in markdown
    assert (
        "`key` is passed as one key: each call splits it with `jax.random.split` into one key per example" in markdown
    )
    assert "split from one key" in contract.to_rst()


@pytest.mark.parametrize("kind", KEYS)
def test_explain_writes_the_split_and_computes_what_the_call_computes(kind):
    key = KEYS[kind]
    xs = jnp.ones((M, N, 4))
    fn = split_batched(noisy, "run b", chunk={"b": 4})
    text = explain(fn, xs, key)
    assert "key = jax.random.split(key, (3, 6))  # one key per example (layouts={'key': SplitKey()})" in text
    assert f"for x: f32[3,6,4], key: {'key<fry>[]' if kind == 'typed' else 'u32[2]'}" in text
    namespace = {"noisy": noisy}
    exec(text, namespace)
    np.testing.assert_array_equal(namespace["batched_noisy"](xs, key), fn(xs, key))
    single = explain(split_batched(noisy), XS, jax.ShapeDtypeStruct((), jax.random.key(0).dtype))
    assert "key = jax.random.split(key, 6)" in single


SPLIT_NOISY = split_batched(noisy, "run b")


@settings(max_examples=5, deadline=None)
@given(inputs(SPLIT_NOISY))
def test_inputs_draw_one_key(example):
    args, kwargs = example
    key = {**dict(zip(["x", "key"], args, strict=False)), **kwargs}["key"]
    assert key.shape == () and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def test_check_batched_compares_with_the_loop_over_the_split_keys():
    check_batched(SPLIT_NOISY, max_examples=3)

    def raw(x: Float[Array, "n"], key: UInt32[Array, "2"]) -> UInt32[Array, "2"]:
        return key + 0 * x[:2].astype(jnp.uint32)

    check_batched(split_batched(raw), max_examples=3, n=2)


# -- equinox ----------------------------------------------------------------------------------


def test_equinox_dropout_per_example_from_one_key():
    eqx = pytest.importorskip("equinox")
    dropout = eqx.nn.Dropout(0.5, inference=False)
    ones, key = jnp.ones((N, 40)), KEYS["typed"]
    got = batched(dropout, "batch", layouts={"key": SplitKey()})(ones, key=key)
    expected = jax.vmap(dropout)(ones, key=jax.random.split(key, N))
    np.testing.assert_array_equal(got, expected)
    assert not all(np.array_equal(got[0], row) for row in got[1:])  # each example its own mask
    raw = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(
        batched(dropout, "batch", layouts={"key": SplitKey()})(ones, key=raw),
        jax.vmap(dropout)(ones, key=jax.random.split(raw, N)),
    )


def test_a_dim_read_from_the_key_sees_one_examples_key():
    """``{key.shape[0]}`` is read per example, as jaxtyping reads it inside the map: a raw key's 2 words."""

    def first_words(x: Float[Array, "n"], key: UInt32[Array, "2"]) -> Float[Array, "{key.shape[0]}"]:
        return x[: key.shape[0]] + jax.random.normal(key, (key.shape[0],))

    key = KEYS["raw"]
    got = split_batched(first_words)(XS, key)
    np.testing.assert_array_equal(got, jax.vmap(first_words)(XS, jax.random.split(key, N)))
