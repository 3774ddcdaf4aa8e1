"""jaxtyping hint forms beyond ``Float[Array, ...]``: ArrayLike array types, ScalarLike, PyTree of a class.

Each is compared with the hand-written ``jax.vmap`` version.
"""

import typing

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import pytest
from jaxtyping import Array, ArrayLike, Float, Key, PyTree, ScalarLike

from shapedmap import ShapeError, SpecError, batched

XS = np.arange(12.0, dtype=np.float32).reshape(4, 3)


def test_array_like_array_types_batch_like_arrays():
    def total(x: Float[ArrayLike, "n"]) -> Float[Array, ""]:
        return jnp.sum(x)

    def numpy_total(x: Float[npt.ArrayLike, "n"]) -> Float[Array, ""]:
        return jnp.sum(x)

    expected = jax.vmap(jnp.sum)(XS)
    np.testing.assert_array_equal(batched(total, "b")(XS), expected)
    np.testing.assert_array_equal(batched(numpy_total, "b")(XS), expected)
    np.testing.assert_array_equal(jax.jit(batched(numpy_total, "b"))(XS), expected)
    with pytest.raises(ShapeError, match=r"numpy_total: argument 'x' has 1 dim .* layout 'b n' needs 2"):
        batched(numpy_total, "b")(XS[0])


def scale(x: Float[Array, "n"], s: ScalarLike) -> Float[Array, "n"]:
    return x * s


def test_scalar_like_is_a_scalar_per_example():
    scales = jnp.arange(4.0)
    np.testing.assert_array_equal(batched(scale, "b")(XS, scales), jax.vmap(scale)(XS, scales))


@pytest.mark.parametrize("s", [2.0, 3, np.float32(0.5), jnp.array(1.5)], ids=["float", "int", "np.float32", "array"])
def test_scalar_like_shared_accepts_numbers_and_arrays(s):
    shared = batched(scale, "b", layouts={"s": None})
    np.testing.assert_array_equal(shared(XS, s), jax.vmap(scale, in_axes=(0, None))(XS, s))


def test_a_union_of_a_scalar_array_and_numbers_admits_their_dtypes():
    def shift(x: Float[Array, "n"], s: float | Float[Array, ""]) -> Float[Array, "n"]:
        return x + s

    np.testing.assert_array_equal(batched(shift, "b", layouts={"s": None})(XS, 1.5), XS + 1.5)
    with pytest.raises(ShapeError, match=r"shift: argument 's' has dtype int32 .* admits only Float dtypes"):
        batched(shift, "b")(XS, jnp.arange(4))


def test_numbers_with_a_non_scalar_array_are_held_static_unless_given_a_layout():
    def f(x: Float[Array, "n"], s: int | Float[Array, "n"]) -> Float[Array, "n"]:
        return x + s

    np.testing.assert_array_equal(batched(f, "b")(XS, 2), XS + 2)
    with pytest.raises(
        ShapeError, match=r"f: argument 's' is f32\[4,3\], but its annotation .* also admits non-arrays"
    ):
        batched(f, "b")(XS, XS)
    np.testing.assert_array_equal(batched(f, "b", layouts={"s": "b n"})(XS, XS), 2 * XS)


class Affine(typing.NamedTuple):
    w: Float[Array, "n"]
    b: Float[Array, ""]


def apply(p: PyTree[Affine], x: Float[Array, "n"]) -> Float[Array, ""]:
    return p.w @ x + p.b


def test_a_pytree_of_a_named_tuple_of_arrays_is_a_pytree_of_arrays():
    ps = Affine(jnp.arange(12.0).reshape(4, 3), jnp.arange(4.0))
    np.testing.assert_array_equal(batched(apply, "b")(ps, XS), jax.vmap(apply)(ps, XS))
    one = Affine(jnp.ones(3), jnp.array(2.0))
    shared = batched(apply, "b", layouts={"p": None})
    np.testing.assert_array_equal(shared(one, XS), jax.vmap(apply, in_axes=(None, 0))(one, XS))


def test_a_pytree_of_a_named_tuple_missing_the_batch_dim_names_the_leaf():
    one = Affine(jnp.ones(3), jnp.array(2.0))
    with pytest.raises(ShapeError, match=r"apply: argument 'p' at \.b has 0 dims .* the batch dim 'b' is missing"):
        batched(apply, "b")(one, XS)


def test_a_pytree_of_a_class_without_arrays_stays_static():
    class Config(typing.NamedTuple):
        name: str
        depth: int

    def f(x: Float[Array, "n"], config: PyTree[Config]) -> Float[Array, "n"]:
        return x * config.depth

    np.testing.assert_array_equal(batched(f, "b")(XS, Config("a", 2)), XS * 2)


# -- results annotated with a class, or Any; results no batch dim maps ---------------------------


class Stats(typing.NamedTuple):
    mean: jax.Array
    total: jax.Array


def test_a_result_annotated_with_a_class_or_any_is_a_pytree_of_arrays():
    def stats(x: Float[Array, "n"]) -> Stats:
        return Stats(x.mean(), x.sum())

    def anything(x: Float[Array, "n"]) -> typing.Any:
        return {"double": 2 * x}

    got = batched(stats, "b")(XS)
    assert isinstance(got, Stats)
    np.testing.assert_array_equal(got.total, jax.vmap(stats)(XS).total)
    np.testing.assert_array_equal(batched(anything, "b")(XS)["double"], 2 * XS)


def test_a_builtin_non_array_result_annotation_is_still_refused():
    def f(x: Float[Array, "n"]) -> str:
        return "x"

    with pytest.raises(SpecError, match=r"f: the return annotation str is not an array annotation"):
        batched(f, "b")


def test_out_none_is_a_result_no_batch_dim_maps():
    """An Equinox BatchNorm's state: the same for every example (a pmean over the batch name)."""

    def normalise(x: Float[Array, "n"], state: Float[Array, "n"]) -> tuple[Float[Array, "n"], Float[Array, "n"]]:
        mean = jax.lax.pmean(x, "b")
        return x - mean, 0.9 * state + 0.1 * mean

    state = jnp.zeros(3)
    per_example = batched(normalise, "b", layouts={"state": None}, out=("b n", None))
    expected = jax.vmap(normalise, in_axes=(0, None), out_axes=(0, None), axis_name="b")(XS, state)
    for got, want in zip(per_example(XS, state), expected, strict=True):
        np.testing.assert_allclose(got, want)
    assert per_example.out_axes == {"b": (0, None)}


def test_unannotated_parameters_are_named_where_a_batch_dim_finds_no_array():
    def unannotated(x, mask: Float[Array, "n"] | None = None) -> Float[Array, "n"]:
        return x

    with pytest.raises(
        ShapeError,
        match=r"argument 'mask' \(None\) holds no array\. 'x' is not annotated, so held static \(never mapped\)",
    ):
        batched(unannotated, "b")(XS)

    def nothing(*args, **kwargs) -> typing.Any:
        return args

    with pytest.raises(
        SpecError, match=r"^nothing: 'args' and 'kwargs' are not annotated.*As it is, .* appears in no input layout"
    ):
        batched(nothing, "b")
    given = batched(nothing, "b", layouts={"args": "b ...", "kwargs": "b ..."})
    np.testing.assert_array_equal(given(XS, XS)[1], XS)  # each entry of *args mapped, as the loop would


# -- a union of arrays and non-arrays (flax nnx's `rngs: Rngs | RngStream | Array | None`) -------


class Seeds:
    """A stand-in for nnx.Rngs: an object that makes keys."""

    def __init__(self, seed):
        self.seed = seed

    def key(self):
        return jax.random.key(self.seed)


def jitter(x: Float[Array, "n"], rngs: Seeds | Key[Array, ""] | None = None) -> Float[Array, "n"]:
    if rngs is None:
        return x
    key = rngs.key() if isinstance(rngs, Seeds) else rngs
    return x + jax.random.normal(key, x.shape)


def test_a_union_of_arrays_and_objects_is_static_by_default():
    per_example = batched(jitter, "b")
    np.testing.assert_array_equal(per_example(XS), XS)
    np.testing.assert_array_equal(per_example(XS, Seeds(3)), jax.vmap(lambda x: jitter(x, Seeds(3)))(XS))


def test_an_array_in_such_a_union_is_refused_rather_than_silently_shared():
    with pytest.raises(ShapeError) as caught:
        batched(jitter, "b")(XS, jax.random.key(0))
    message = str(caught.value)
    assert message.startswith("jitter: argument 'rngs' is key<fry>[], but its annotation")
    assert "also admits non-arrays, so shapedmap holds it static rather than guess" in message
    assert "layouts={'rngs': 'batch ...'}" in message and "layouts={'rngs': None}" in message


def test_layouts_map_or_share_the_array_member_of_such_a_union():
    keys = jax.random.split(jax.random.key(0), 4)
    mapped = batched(jitter, "b", layouts={"rngs": "b"})
    np.testing.assert_array_equal(mapped(XS, keys), jax.vmap(jitter)(XS, keys))
    key = jax.random.key(1)
    shared = batched(jitter, "b", layouts={"rngs": None})
    np.testing.assert_array_equal(shared(XS, key), jax.vmap(jitter, in_axes=(0, None))(XS, key))


# -- array types JAX never gives the function ---------------------------------------------------------


class Tensor:
    """Another library's array class (torch.Tensor, say): JAX never makes one."""


def _on_tensor(x: Float[Tensor, "n"]) -> Float[Array, ""]:
    return jnp.sum(x)


def _to_tensor(x: Float[Array, "n"]) -> Float[Tensor, ""]:
    return jnp.sum(x)


def _tree_of_tensors(x: PyTree[Float[Tensor, "n"]], y: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.sum(y)


def _optional_tensor(y: Float[Array, "n"], x: Float[Tensor, "n"] | None = None) -> Float[Array, ""]:
    return jnp.sum(y)


@pytest.mark.parametrize(
    ("fn", "where"),
    [
        (_on_tensor, "parameter 'x'"),
        (_to_tensor, "the return annotation"),
        (_tree_of_tensors, "parameter 'x'"),
        (_optional_tensor, "parameter 'x'"),
    ],
    ids=["parameter", "result", "pytree leaf", "optional"],
)
def test_an_array_type_jax_never_gives_is_a_spec_error_at_decoration(fn, where):
    with pytest.raises(SpecError) as caught:
        batched(fn, "b")
    message = str(caught.value)
    dims = "''" if fn is _to_tensor else "'n'"
    assert message.startswith(f"{fn.__name__}: {where} Float[Tensor, {dims}] names the array type Tensor, "), message
    assert "which is not a JAX or NumPy array" in message
    assert f"Annotate it Float[Array, {dims}]" in message


KEPT_ARRAY_TYPES = {
    "Array": Float[Array, "n"],
    "np.ndarray": Float[np.ndarray, "n"],
    "np.ndarray | Array": Float[np.ndarray | jax.Array, "n"],
    "jaxtyping ArrayLike": Float[ArrayLike, "n"],
    "numpy ArrayLike": Float[npt.ArrayLike, "n"],
    "Any": Float[typing.Any, "n"],
    "plain jax.Array": jax.Array,
    "plain np.ndarray": np.ndarray,
    "jax.typing.ArrayLike": jax.typing.ArrayLike,
}


@pytest.mark.parametrize("annotation", KEPT_ARRAY_TYPES.values(), ids=KEPT_ARRAY_TYPES.keys())
def test_jax_and_numpy_array_types_are_kept(annotation):
    def total(x: annotation) -> Float[Array, ""]:
        return jnp.sum(x)

    np.testing.assert_array_equal(batched(total, "b")(XS), jax.vmap(jnp.sum)(XS))


def test_numpy_array_like_scalars_are_scalars_per_example():
    def times(x: Float[Array, "n"], s: Float[npt.ArrayLike, ""]) -> Float[Array, "n"]:
        return x * s

    scales = np.arange(4.0, dtype=np.float32)
    np.testing.assert_array_equal(batched(times, "b")(XS, scales), jax.vmap(times)(XS, scales))
    np.testing.assert_array_equal(batched(times, "b", layouts={"s": None})(XS, 2.0), XS * 2)
