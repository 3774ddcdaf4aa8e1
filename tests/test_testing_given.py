"""shapedmap.testing on real models: ``given=`` for any parameter, and PRNG keys per example.

The functions here are what people batch: per-example gradients of an equinox MLP and of the
README's params dict, a function of a ``PRNGKeyArray``. Each is compared directly with its
hand-written ``jax.vmap`` (values and PyTree structure), then ``check_batched`` compares it with
the naive loop, eagerly and under ``jax.jit``, with the model or parameters given. ``inputs``'
draws with ``given=`` are checked against shapes written out by hand, and every refusal by its
text.
"""

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from shapedmap import batched
from shapedmap.examples import message_passing
from shapedmap.testing import BatchedCheckError, check_batched, inputs

eqx = pytest.importorskip("equinox")

SMALL = st.floats(-1, 1, width=32)  # well-conditioned values: float32 jit and eager agree to 1e-5
XS = jax.random.normal(jax.random.key(1), (6, 3))
YS = jax.random.normal(jax.random.key(2), (6, 2))


def arguments(fn: Any, example: tuple[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    """The drawn arguments by parameter name, however they were passed."""
    return dict(inspect.signature(fn).bind(*example[0], **example[1]).arguments)


def assert_trees_equal(got: Any, want: Any) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


# -- per-example gradients of an equinox MLP --------------------------------------------------------

MLP = eqx.nn.MLP(in_size=3, out_size=2, width_size=8, depth=2, key=jax.random.key(0))
PARAMS, STATIC = eqx.partition(MLP, eqx.is_array)


def mlp_loss(model: eqx.nn.MLP, x: Float[Array, "3"], y: Float[Array, "2"]) -> Float[Array, ""]:
    """One example's squared error of a whole model (held static: its class is annotated)."""
    return jnp.sum((model(x) - y) ** 2)


def params_loss(params: PyTree[Float[Array, "..."]], x: Float[Array, "3"], y: Float[Array, "2"]) -> Float[Array, ""]:
    """The same, of the model's arrays only, as ``jax.grad`` differentiates them."""
    return jnp.sum((eqx.combine(params, STATIC)(x) - y) ** 2)


model_grads = batched(eqx.filter_grad(mlp_loss), "batch")
params_grads = batched(jax.grad(params_loss), "batch", layouts={"params": None})


def test_equinox_mlp_gradients_equal_the_hand_written_vmap():
    direct = jax.vmap(jax.grad(params_loss), in_axes=(None, 0, 0))(PARAMS, XS, YS)
    assert_trees_equal(params_grads(PARAMS, XS, YS), direct)
    assert jax.tree.map(jnp.shape, params_grads(PARAMS, XS, YS)).layers[0].weight == (6, 8, 3)
    # The model whole, through equinox's filters: the same gradients, the non-arrays None.
    by_model = model_grads(MLP, XS, YS)
    assert_trees_equal(eqx.filter(by_model, eqx.is_array), direct)
    assert_trees_equal(by_model, eqx.filter_vmap(eqx.filter_grad(mlp_loss), in_axes=(None, 0, 0))(MLP, XS, YS))


def test_check_batched_of_equinox_mlp_gradients_with_the_model_given():
    small = {"x": SMALL, "y": SMALL}
    check_batched(params_grads, max_examples=10, given={"params": PARAMS}, elements=small)
    check_batched(model_grads, max_examples=10, given={"model": MLP}, elements=small)


def test_models_drawn_from_a_strategy_are_told_apart_under_jit():
    """Regression: the jit cache keyed static values by ``repr``, which equinox prints as shapes only,
    so a second model's batched call ran the first model's compiled program and 'differed from the loop'."""
    models = st.integers(0, 2**31 - 1).map(lambda seed: eqx.nn.MLP(3, 2, 8, 2, key=jax.random.key(seed)))
    check_batched(model_grads, max_examples=8, given={"model": models}, elements={"x": SMALL, "y": SMALL})


class Weights:
    """A static object whose ``repr`` does not show its weights."""

    def __init__(self, scale: float) -> None:
        self.scale = jnp.float32(scale)

    def __repr__(self) -> str:
        return "Weights()"


def scaled(weights: Weights, x: Float[Array, "n"]) -> Float[Array, "n"]:
    return weights.scale * x


def test_static_objects_with_equal_reprs_are_not_confused_under_jit():
    check_batched(batched(scaled, "b"), max_examples=10, given={"weights": st.builds(Weights, st.sampled_from([1, 2]))})


# -- the README's per-example gradient of a params dict ---------------------------------------------

README_PARAMS = {"w": jax.random.normal(jax.random.key(3), (3, 2)), "b": jnp.array([0.5, -0.5])}


def loss(params: PyTree[Float[Array, "..."]], x: Float[Array, " feat"], y: Float[Array, " out"]) -> Float[Array, ""]:
    return jnp.sum((x @ params["w"] + params["b"] - y) ** 2)


per_example_grads = batched(jax.grad(loss), "batch", layouts={"params": None})


def test_readme_per_example_gradients_with_the_params_given():
    direct = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(README_PARAMS, XS, YS)
    assert_trees_equal(per_example_grads(README_PARAMS, XS, YS), direct)
    # 'params' has layout '...': it binds no size, so the drawn x and y are told theirs.
    check_batched(per_example_grads, max_examples=10, given={"params": README_PARAMS}, feat=3, out=2)
    trees = st.integers(0, 2**31 - 1).map(
        lambda seed: {"w": jax.random.normal(jax.random.key(seed), (3, 2)), "b": jnp.zeros(2)}
    )
    check_batched(per_example_grads, max_examples=10, given={"params": trees}, feat=3, out=2)
    with pytest.raises(BatchedCheckError, match=r"fix the sizes they need by name .*'params' has layout '\.\.\.'"):
        check_batched(per_example_grads, max_examples=5, given={"params": README_PARAMS})


def unannotated_loss(params, x: Float[Array, " feat"], y: Float[Array, " out"]) -> Float[Array, ""]:
    return jnp.sum((x @ params["w"] + params["b"] - y) ** 2)


def test_readme_form_with_params_unannotated_takes_them_static():
    grads = batched(jax.grad(unannotated_loss), "batch")
    direct = jax.vmap(jax.grad(unannotated_loss), in_axes=(None, 0, 0))(README_PARAMS, XS, YS)
    assert_trees_equal(grads(README_PARAMS, XS, YS), direct)
    check_batched(grads, max_examples=8, given={"params": README_PARAMS}, feat=3, out=2)
    # Without the sizes: a static value binds none, and the report says which to fix.
    with pytest.raises(BatchedCheckError, match=r"fix the sizes they need by name .*'params' is static") as caught:
        check_batched(grads, max_examples=8, given={"params": README_PARAMS})
    assert caught.value.reason == "raised"


# -- PRNG keys --------------------------------------------------------------------------------------


def noisy(x: Float[Array, "n"], key: PRNGKeyArray) -> Float[Array, "n"]:
    return x + jax.random.normal(key, x.shape)


per_example_noise = batched(noisy, "batch")
shared_noise = batched(noisy, "batch", layouts={"key": None})


def key_of(fn: Any, example: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
    return arguments(fn, example)["key"]


def is_typed(key: Any) -> bool:
    return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def test_a_prng_key_per_example_equals_the_hand_written_vmap():
    keys = jax.random.split(jax.random.key(0), 6)
    direct = jax.vmap(noisy)(XS, keys)
    np.testing.assert_array_equal(per_example_noise(XS, keys), direct)
    check_batched(per_example_noise, max_examples=15)
    check_batched(shared_noise, max_examples=10)


def test_prng_keys_are_drawn_typed_or_raw_per_example():
    """Regression: a ``PRNGKeyArray`` with a batch layout was drawn as ``u32[1]``, which the call refused."""
    typed = find(inputs(per_example_noise), lambda ex: arguments(per_example_noise, ex)["x"].shape[0] == 3)
    assert is_typed(key_of(per_example_noise, typed)) and key_of(per_example_noise, typed).shape == (3,)
    raw = find(inputs(per_example_noise), lambda ex: not is_typed(key_of(per_example_noise, ex)))
    raw_key = key_of(per_example_noise, raw)
    assert raw_key.dtype == jnp.uint32 and raw_key.shape == (1, 2)  # a batch of one uint32[2] key
    shared = find(inputs(shared_noise), lambda ex: not is_typed(key_of(shared_noise, ex)))
    assert key_of(shared_noise, shared).shape == (2,)  # one raw key for every example

    @settings(max_examples=20)
    @given(inputs(per_example_noise))
    def every_draw_is_accepted(example):
        args, kwargs = example
        per_example_noise(*args, **kwargs)  # shapedmap's own check accepts the keys

    every_draw_is_accepted()


@pytest.mark.parametrize("key", [jax.random.key(7), jax.random.PRNGKey(7)], ids=["typed", "raw"])
def test_a_fixed_key_given_is_shared_by_every_example(key):
    example = find(
        inputs(per_example_noise, given={"key": key}), lambda ex: arguments(per_example_noise, ex)["x"].shape[0] == 3
    )
    keys = key_of(per_example_noise, example)
    data = jax.random.key_data(keys) if is_typed(keys) else keys
    assert data.shape[0] == 3 and (np.asarray(data) == np.asarray(data[0])).all()
    check_batched(per_example_noise, max_examples=8, given={"key": key})


# -- what inputs(given=...) draws ----------------------------------------------------------------------


def shapes(fn: Any, example: tuple[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    return {name: jax.tree.map(jnp.shape, value) for name, value in arguments(fn, example).items()}


def test_a_given_batch_fixes_the_sizes_of_the_drawn_arguments():
    a = jnp.ones((2, 5, 5))

    @settings(max_examples=10)
    @given(inputs(message_passing, given={"a": a}))
    def check(example):
        drawn = shapes(message_passing, example)
        assert drawn["a"] == (2, 5, 5) and drawn["f"][:2] == (2, 5)
        assert arguments(message_passing, example)["a"] is a  # passed as given

    check()


def test_one_example_given_is_broadcast_along_the_batch():
    one = jnp.arange(9.0).reshape(3, 3)
    example = find(
        inputs(message_passing, given={"a": one}), lambda ex: arguments(message_passing, ex)["a"].shape[0] == 4
    )
    a = arguments(message_passing, example)["a"]
    assert shapes(message_passing, example) == {"a": (4, 3, 3), "f": (4, 3, 1)}
    assert all((np.asarray(a[i]) == np.asarray(one)).all() for i in range(4))


def test_a_given_strategy_fixes_sizes_draw_by_draw():
    sides = st.integers(1, 3).map(lambda n: jnp.ones((1, n, n)))
    seen = set()

    @settings(max_examples=20)
    @given(inputs(message_passing, given={"a": sides}, feat=2))
    def check(example):
        drawn = shapes(message_passing, example)
        assert drawn["f"] == (1, drawn["a"][1], 2)
        seen.add(drawn["a"][1])

    check()
    assert len(seen) > 1


def add_trees(x: PyTree[Float[Array, "n"], "T"], y: PyTree[Float[Array, "n"], "T"]) -> PyTree[Float[Array, "n"], "T"]:
    return jax.tree.map(jnp.add, x, y)


def power(x: Float[Array, "n"], exponent: int, scale: float = 2.0) -> Float[Array, "n"]:
    return scale * x**exponent


def matmat(a: Float[Array, "n m"], b: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return a @ b


def masked_sum(x: Float[Array, "n"], mask: Int[Array, "n"] | None = None) -> Float[Array, ""]:
    return x.sum() if mask is None else (x * mask).sum()


def test_given_structures_statics_optionals_and_star_batch():
    trees = batched(add_trees, "b")
    x = {"p": jnp.ones((2, 3)), "q": (jnp.zeros((2, 3)),)}
    example = find(inputs(trees, given={"x": x}), lambda ex: True)
    assert shapes(trees, example)["y"] == {"p": (2, 3), "q": ((2, 3),)}  # the structure named "T"
    check_batched(trees, max_examples=5, given={"x": x})

    powers = batched(power, "b")
    example = find(inputs(powers, given={"exponent": 3, "scale": st.just(-1.0)}), lambda ex: True)
    assert (arguments(powers, example)["exponent"], arguments(powers, example)["scale"]) == (3, -1.0)
    check_batched(powers, max_examples=5, given={"exponent": st.integers(1, 3)})

    sums = batched(masked_sum, "b")
    example = find(inputs(sums, given={"mask": None}), lambda ex: True)
    assert arguments(sums, example).get("mask") is None

    vectorized = batched(matmat, "*batch")
    a = jnp.ones((3, 1, 2, 2))

    @settings(max_examples=15)
    @given(inputs(vectorized, given={"a": a}))
    def broadcasts(example):
        b = arguments(vectorized, example)["b"]
        assert np.broadcast_shapes(a.shape[:-2], b.shape[:-2])[-2] == 3  # b broadcasts with a
        assert b.shape[-2] == 2  # 'm', bound by a

    broadcasts()


def inner(x: Float[Array, "*rest"], y: Float[Array, "*rest"]) -> Float[Array, ""]:
    return jnp.sum(x * y)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2,)], ids=["rest-3-4", "rest-empty"])
def test_a_given_value_fixes_a_star_core_shape(shape):
    """A ``*rest`` shape bound by a given value, the empty one included (it was drawn anew)."""
    inners = batched(inner, "b")

    @settings(max_examples=10)
    @given(inputs(inners, given={"x": jnp.ones(shape)}))
    def check(example):
        assert arguments(inners, example)["y"].shape == shape

    check()


# -- refusals, by their text ---------------------------------------------------------------------------


def tree_sum(tree: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
    return tree["w"].sum()  # needs a dict with 'w': a generic tree is not one


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: inputs(message_passing, given={"z": 1}),
            r"inputs\(message_passing\): given= names 'z', which is not a parameter \(parameters: a, f\)",
        ),
        (
            lambda: inputs(batched(power, "b"), given={"exponent": 2}, static={"exponent": 2}),
            r"'exponent' is named by both given= and static=; name it once",
        ),
        (
            lambda: inputs(message_passing, given={"a": jnp.ones((1, 2, 2))}, elements={"a": st.just(1.0)}),
            r"'a' is named by both given= and elements=",
        ),
        (
            lambda: inputs(message_passing, given={"a": jnp.ones(3)}),
            r"(?s)the value given for 'a' does not fit its layout 'graph node node'.*"
            r"give a batch of values, one example's value \(layout 'node node', shared by every example\)",
        ),
        (
            lambda: inputs(message_passing, given={"a": jnp.ones((2, 3, 3)), "f": jnp.ones((2, 4, 1))}),
            r"(?s)does not fit.*dimension 'node' has size 3 in argument 'a'.*but size 4 in argument 'f'",
        ),
        (
            lambda: inputs(message_passing, given={"a": jnp.ones((2, 3, 3))}, node=4),
            r"'node' has size 3 in the values given=, but node=4",
        ),
        (
            lambda: inputs(message_passing, given={"a": jnp.ones((2, 3, 3), dtype=jnp.int32)}),
            r"the value given for 'a' has i32\[2,3,3\] at argument 'a', but its annotation admits Float dtypes",
        ),
        (
            lambda: inputs(per_example_grads),
            r"give a value for 'params': given=\{'params': \.\.\.\}.*PyTree\[Float\[Array, '\.\.\.'\]\], "
            r"states neither the tree's structure nor its leaves' shapes",
        ),
        (
            lambda: inputs(per_example_grads, static={"params": README_PARAMS}),
            r"static= names 'params', which is an array parameter; give its value with given=\{'params': \.\.\.\}",
        ),
        (
            lambda: inputs(batched(power, "b")),
            r"the static parameter 'exponent' \(annotated int\) has no default.*given=\{'exponent': \.\.\.\}",
        ),
        (
            lambda: inputs(params_grads, given={"params": MLP}),
            r"the value given for 'params' has .* at \.activation, which is not an array.*eqx\.partition",
        ),
        (
            lambda: inputs(message_passing, given="a"),
            r"given= must be a dict",
        ),
    ],
    ids=[
        "unknown",
        "given-and-static",
        "given-and-elements",
        "wrong-rank",
        "two-given-disagree",
        "given-against-a-size",
        "dtype",
        "bare-pytree-needs-given",
        "static-for-an-array",
        "static-without-default",
        "a-model-for-a-pytree",
        "not-a-dict",
    ],
)
def test_refusals_say_what_to_write(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_elements_that_are_not_scalars_point_to_given():
    """Regression: ``elements={"params": st.just(params)}`` crashed inside NumPy."""
    with pytest.raises(
        ValueError, match=r"elements= for 'f' drew dict \{'w': 1.0\}, not a scalar.*given=\{'f': \.\.\.\}"
    ):
        find(inputs(message_passing, elements={"a": SMALL, "f": st.just({"w": 1.0})}), lambda ex: True)


def test_a_bound_self_cannot_be_given():
    class Scaler:
        @batched("b")
        def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return 2 * x

    with pytest.raises(ValueError, match=r"given= names 'self', which the bound method holds already"):
        inputs(Scaler().apply, given={"self": Scaler()})


def test_a_given_strategy_that_draws_a_bad_value_is_named():
    bad = st.just(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"the value given for 'a' does not fit its layout"):
        find(inputs(message_passing, given={"a": bad}), lambda ex: True)


def test_a_generic_tree_the_body_cannot_use_says_to_give_one():
    with pytest.raises(BatchedCheckError, match=r"if the function needs a particular tree, give it: given=\{'tree'"):
        check_batched(batched(tree_sum, "b"), max_examples=5)
    check_batched(batched(tree_sum, "b"), max_examples=5, given={"tree": {"w": jnp.ones((2, 3))}})
