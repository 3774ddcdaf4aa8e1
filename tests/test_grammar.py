"""The whole annotation grammar: ``*batch`` broadcasting, ``#name``, PyTrees, dims, functions as people write them."""

import dataclasses
import functools
import importlib
import sys
import textwrap
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from beartype import beartype
from dim_strings import INVALID, STRICTER, VALID
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import Array, Float, Int, Key, PyTree, Scalar, Shaped, jaxtyped

from shapedmap import ShapeError, SpecError, batched
from shapedmap._grammar import parse_layout

# -- "*batch": any number of leading batch dims, broadcast like jnp.vectorize -----------------


def matmat(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return jnp.dot(x, y)


def matvec(x: Float[Array, "n m"], y: Float[Array, "m"]) -> Float[Array, "n"]:
    return jnp.dot(x, y)


def vecvec(x: Float[Array, "m"], y: Float[Array, "m"]) -> Float[Array, ""]:
    return jnp.dot(x, y)


def magnitude(x: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.dot(x, x)


def mean(x: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.mean(x)


def stack_plus_minus(x: Float[Array, ""]) -> Float[Array, "2"]:
    return jnp.stack([x, -x])


def center(array: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
    bias = jnp.mean(array)
    return bias, array - bias


# The shape cases of JAX's tests/lax_numpy_vectorize_test.py, with the same signatures.
VECTORIZE_CASES = [
    (matmat, "(n,m),(m,k)->(n,k)", [((2, 3), (3, 4), (2, 4)), ((2, 3), (1, 3, 4), (1, 2, 4))]),
    (matmat, "(n,m),(m,k)->(n,k)", [((1, 2, 3), (1, 3, 4), (1, 2, 4)), ((5, 2, 3), (1, 3, 4), (5, 2, 4))]),
    (matmat, "(n,m),(m,k)->(n,k)", [((6, 5, 2, 3), (3, 4), (6, 5, 2, 4))]),
    (matvec, "(n,m),(m)->(n)", [((2, 3), (3,), (2,)), ((2, 3), (1, 3), (1, 2))]),
    (matvec, "(n,m),(m)->(n)", [((4, 2, 3), (1, 3), (4, 2)), ((5, 4, 2, 3), (1, 3), (5, 4, 2))]),
    (vecvec, "(m),(m)->()", [((3,), (3,), ()), ((2, 3), (3,), (2,)), ((4, 2, 3), (3,), (4, 2))]),
    (magnitude, "(n)->()", [((3,), ()), ((2, 3), (2,)), ((1, 2, 3), (1, 2))]),
    (mean, "(n)->()", [((3,), ()), ((2, 3), (2,)), ((1, 2, 3, 4), (1, 2, 3))]),
    (stack_plus_minus, "()->(n)", [((), (2,)), ((3,), (3, 2))]),
]


@pytest.mark.parametrize(("function", "signature", "cases"), VECTORIZE_CASES)
def test_star_batch_matches_jnp_vectorize(function, signature, cases):
    ours = batched(function, "*batch")
    theirs = jnp.vectorize(function, signature=signature)
    for case in cases:
        *shapes, result_shape = case
        keys = jax.random.split(jax.random.key(0), len(shapes))
        args = [jax.random.normal(key, shape) for key, shape in zip(keys, shapes, strict=True)]
        with jax.numpy_rank_promotion("allow"):
            expected = theirs(*args)
        result = ours(*args)
        assert result.shape == result_shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_star_batch_tuple_result_like_vectorize_center():
    centred = batched(center, "*batch")
    theirs = jnp.vectorize(center, signature="(n)->(),(n)")
    for shape in [(3,), (2, 3), (4, 1, 3)]:
        x = jnp.arange(float(np.prod(shape))).reshape(shape)
        (b, a), (expected_b, expected_a) = centred(x), theirs(x)
        assert a.shape == expected_a.shape == shape and b.shape == expected_b.shape == shape[:-1]
        np.testing.assert_allclose(a, expected_a)
        np.testing.assert_allclose(b, expected_b)
    np.testing.assert_allclose(centred(jnp.arange(6.0).reshape(2, 3))[0], [1.0, 4.0])


def test_star_batch_conflict_names_dimension_and_both_arguments():
    with pytest.raises(ShapeError) as info:
        batched(matmat, "*batch")(jnp.ones((5, 2, 3)), jnp.ones((4, 3, 4)))
    assert str(info.value).startswith(
        "matmat: the dims '*batch' do not broadcast: (5,) in argument 'x' (axis 0 of f32[5,2,3])\n"
        "but (4,) in argument 'y' (axis 0 of f32[4,3,4])"
    )


def test_star_batch_under_jit_and_with_a_core_mismatch():
    mm = batched(matmat, "*batch")
    assert jax.jit(mm)(jnp.ones((5, 2, 3)), jnp.ones((1, 3, 4))).shape == (5, 2, 4)
    with pytest.raises(ShapeError, match="matmat: dimension 'm' has size 3 in argument 'x'"):
        mm(jnp.ones((5, 2, 3)), jnp.ones((5, 4, 4)))


@st.composite
def broadcastable_shapes(draw):
    """A broadcast batch shape, and two argument batch shapes that broadcast to it."""
    full = draw(st.lists(st.integers(1, 3), max_size=3))

    def one():
        length = draw(st.integers(0, len(full)))
        tail = full[len(full) - length :]
        return tuple(size if draw(st.booleans()) else 1 for size in tail)

    return one(), one()


@given(broadcastable_shapes(), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_star_batch_random_broadcasts_match_jnp_vectorize(batch_shapes, n, m, k):
    left, right = batch_shapes
    x = jnp.arange(np.prod((*left, n, m)), dtype=jnp.float32).reshape(*left, n, m) / 7
    y = jnp.arange(np.prod((*right, m, k)), dtype=jnp.float32).reshape(*right, m, k) / 5
    with jax.numpy_rank_promotion("allow"):
        expected = jnp.vectorize(matmat, signature="(n,m),(m,k)->(n,k)")(x, y)
    result = batched(matmat, "*batch")(x, y)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-5)


# -- "#name": a size-1 batch dim is shared, not mapped ---------------------------------------


def test_broadcastable_batch_dim():
    @batched("#graph")
    def add(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + y

    x = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(add(x, jnp.ones((1, 3))), x + 1)
    np.testing.assert_array_equal(add(jnp.ones((1, 3)), x), x + 1)
    np.testing.assert_array_equal(add(jnp.ones((1, 3)), jnp.ones((1, 3))), 2 * jnp.ones((1, 3)))
    with pytest.raises(ShapeError, match="add: dimension 'graph' has size 4 in argument 'x'"):
        add(x, jnp.ones((2, 3)))


# -- PyTrees: the layout applies to every leaf ---------------------------------------------------


class Pair(NamedTuple):
    left: jax.Array
    right: jax.Array


@functools.partial(jax.tree_util.register_dataclass, data_fields=["weight", "bias"], meta_fields=[])
@dataclasses.dataclass
class Layer:
    weight: jax.Array
    bias: jax.Array


@pytest.mark.parametrize(
    "tree",
    [
        {"a": jnp.ones((3, 4)), "b": jnp.arange(12.0).reshape(3, 4)},
        (jnp.ones((3, 4)), [jnp.zeros((3, 4))]),
        Pair(jnp.ones((3, 4)), jnp.ones((3, 4))),
        Layer(jnp.ones((3, 4)), jnp.ones((3, 4))),
    ],
    ids=["dict", "tuple-list", "namedtuple", "dataclass"],
)
def test_pytree_arguments_and_results(tree):
    @batched("b")
    def double(params: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return jax.tree.map(lambda leaf: 2 * leaf, params)

    result = double(tree)
    assert jax.tree.structure(result) == jax.tree.structure(tree)
    for got, leaf in zip(jax.tree.leaves(result), jax.tree.leaves(tree), strict=True):
        np.testing.assert_array_equal(got, 2 * leaf)


def test_pytree_leaf_error_names_the_tree_path():
    @batched("b")
    def total(params: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
        return sum(leaf.sum() for leaf in jax.tree.leaves(params))

    with pytest.raises(ShapeError) as info:
        total({"w": jnp.ones((3, 4)), "v": jnp.ones((2, 4))})
    assert "argument 'params' at ['w'] (axis 0 of f32[3,4])" in str(info.value)
    assert "argument 'params' at ['v'] (axis 0 of f32[2,4])" in str(info.value)


def test_pytree_structure_mismatch_names_both_parameters():
    @batched("b")
    def add(x: PyTree[Float[Array, "n"], "T"], y: PyTree[Float[Array, "n"], "T"]) -> PyTree[Float[Array, "n"], "T"]:
        return jax.tree.map(jnp.add, x, y)

    ones = jnp.ones((2, 3))
    assert add({"a": ones}, {"a": ones})["a"].shape == (2, 3)
    with pytest.raises(ShapeError) as info:
        add({"a": ones, "b": ones}, {"a": ones})
    message = str(info.value)
    assert message == (
        "add: argument 'y' and argument 'x' must have the same PyTree structure 'T' (both are annotated "
        "PyTree[..., 'T']): argument 'x' has ['b'], which argument 'y' lacks"
    )


def test_pytree_leaves_with_other_leaves_of_variadic_rank():
    @batched("b")
    def scale(params: PyTree[Float[Array, "..."]]) -> PyTree[Float[Array, "..."]]:
        return jax.tree.map(lambda leaf: leaf * 3, params)

    tree = {"matrix": jnp.ones((2, 3, 4)), "vector": jnp.ones((2, 5)), "scalar": jnp.ones((2,))}
    result = scale(tree)
    assert {k: v.shape for k, v in result.items()} == {"matrix": (2, 3, 4), "vector": (2, 5), "scalar": (2,)}


# -- dims ----------------------------------------------------------------------------------------


def test_fixed_unchecked_and_symbolic_dims():
    def transform(points: Float[Array, "n 3"], anything: Shaped[Array, "_"]) -> Float[Array, "n+1 xyz=3"]:
        return jnp.concatenate([points, points[:1]])

    per_cloud = batched(transform, "cloud")
    assert per_cloud(jnp.ones((2, 5, 3)), jnp.ones((2, 7))).shape == (2, 6, 3)
    with pytest.raises(ShapeError, match="dimension 3 of layout 'cloud n 3' must have size 3"):
        per_cloud(jnp.ones((2, 5, 4)), jnp.ones((2, 7)))


@pytest.mark.parametrize(
    ("expression", "size"),
    [("2*f", 6), ("f+1", 4), ("f//2", 1), ("f**2", 9), ("max(f,4)", 4), ("min(f,2)*3", 6)],
)
def test_symbolic_result_dims_are_evaluated_and_checked(expression, size):
    def grow(u: Float[Array, "f"]) -> Float[Array, expression]:
        return jnp.zeros(size)

    assert batched(grow, "b")(jnp.ones((2, 3))).shape == (2, size)


def test_ellipsis_and_scalar_per_example():
    def norm(x: Float[Array, "..."]) -> Scalar:
        return jnp.sqrt(jnp.sum(x**2))

    norms = batched(norm, "b")
    assert norms(jnp.ones((4, 2, 3))).shape == (4,)
    np.testing.assert_allclose(norms(jnp.ones((4, 9))), jnp.full(4, 3.0))


def test_prng_keys_are_mapped_per_example():
    def noise(key: Key[Array, ""], x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + jax.random.normal(key, x.shape)

    keys = jax.random.split(jax.random.key(0), 4)
    result = batched(noise, "b")(keys, jnp.zeros((4, 3)))
    expected = jnp.stack([jax.random.normal(k, (3,)) for k in keys])
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_optional_arrays_may_be_none():
    def shift(x: Float[Array, "n"], bias: Optional[Float[Array, "n"]] = None) -> Float[Array, "n"]:  # noqa: UP045
        return x if bias is None else x + bias

    shifted = batched(shift, "b")
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(shifted(x), x)
    np.testing.assert_array_equal(shifted(x, jnp.ones((2, 3))), 2 * x)
    np.testing.assert_array_equal(shifted(x, bias=None), x)
    with pytest.raises(ShapeError, match="shift: argument 'bias' must be an array"):
        shifted(x, "none")


def test_union_of_dtypes():
    def total(x: Float[Array, "n"] | Int[Array, "n"]) -> Shaped[Array, ""]:
        return x.sum()

    totals = batched(total, "b")
    assert totals(jnp.ones((2, 3))).dtype == jnp.float32
    assert totals(jnp.ones((2, 3), jnp.int32)).dtype == jnp.int32
    with pytest.raises(ShapeError, match="admits only Float or Int dtypes"):
        totals(jnp.ones((2, 3), bool))


# -- functions as people write them ------------------------------------------------------------


def test_methods_classmethods_and_staticmethods():
    class Model:
        scale = 3.0

        @batched("b")
        def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x * self.scale

        @classmethod
        @batched("b")
        def build(cls, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x * cls.scale

        @batched("b")
        @classmethod
        def build_outer(cls, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x * cls.scale

        @staticmethod
        @batched("b")
        def twice(x: Float[Array, "n"]) -> Float[Array, "n"]:
            return 2 * x

    x = jnp.ones((2, 3))
    for result in [Model().apply(x), Model.build(x), Model.build_outer(x)]:
        np.testing.assert_array_equal(result, 3 * x)
    np.testing.assert_array_equal(Model.twice(x), 2 * x)


FUTURE_MODULE = """
from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from shapedmap import batched


@batched("b")
def norm(x: Vector) -> Scalar:
    return jnp.sqrt(jnp.sum(x ** 2))


class Point:
    @batched("b")
    def move(self, offset: Vector, other: Point | None = None) -> Vector:
        return offset * 2


Vector = Float[Array, "n"]
Scalar = Float[Array, ""]
"""


def test_future_annotations_and_forward_references(tmp_path, monkeypatch):
    (tmp_path / "future_module.py").write_text(textwrap.dedent(FUTURE_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("future_module")
    try:
        assert module.norm.signature is None  # 'Vector' is defined below: resolved at the first call
        np.testing.assert_allclose(module.norm(jnp.ones((2, 4))), [2.0, 2.0])
        assert module.norm.signature == "b n -> b"
        assert module.Point().move(jnp.ones((2, 3))).shape == (2, 3)
    finally:
        sys.modules.pop("future_module", None)


def test_unresolvable_forward_reference_fails_at_the_first_call():
    def f(x: "Float[Array, 'n']", y: "NoSuchAlias") -> "Float[Array, 'n']":
        return x

    lazy = batched(f, "b")  # maybe defined later: not an error yet
    with pytest.raises(SpecError, match=r"f: cannot resolve its annotations \(NameError: name 'NoSuchAlias'"):
        lazy(jnp.ones((2, 3)), 1)


def test_functools_partial():
    def scale(x: Float[Array, "n"], factor: Float[Array, ""], *, offset: float) -> Float[Array, "n"]:
        return x * factor + offset

    partial = functools.partial(scale, offset=1.0)
    scaled = batched(partial, "b n, -> b n")
    np.testing.assert_allclose(scaled(jnp.ones((2, 3)), jnp.float32(2.0)), 3 * jnp.ones((2, 3)))
    assert scaled.__name__ == "scale"
    with pytest.raises(ShapeError, match="scale: argument 'factor' has 1 dim "):
        scaled(jnp.ones((2, 3)), jnp.ones(3))


def test_callable_object():
    class Scaler:
        def __call__(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x * 2

    assert batched(Scaler(), "b")(jnp.ones((2, 3))).shape == (2, 3)


def test_already_jaxtyped_function_is_not_checked_twice():
    @batched("b")
    @jaxtyped(typechecker=beartype)
    def double(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return 2 * x

    described = double.__shapedmap__
    assert described.first_body.__wrapped__ is described.fn  # the user's jaxtyped is the per-example check
    np.testing.assert_array_equal(double(jnp.ones((2, 3))), 2 * jnp.ones((2, 3)))

    @batched("b")
    @jaxtyped(typechecker=beartype)
    def wrong(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.concatenate([x, x])

    with pytest.raises(ShapeError, match="wrong: the per-example check failed inside the map of wrong over 'b'"):
        wrong(jnp.ones((2, 3)))


IMPORT_HOOK_MODULE = """
import jax.numpy as jnp
from jaxtyping import Array, Float

from shapedmap import batched


@batched("b")
def double(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return 2 * x
"""


def test_import_hook_functions_are_not_checked_twice(tmp_path, monkeypatch):
    from jaxtyping import install_import_hook

    (tmp_path / "hooked_module.py").write_text(IMPORT_HOOK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    with install_import_hook("hooked_module", "beartype.beartype"):
        module = importlib.import_module("hooked_module")
    try:
        described = module.double.__shapedmap__
        assert described.first_body.__wrapped__ is described.fn  # the hook's jaxtyped is the per-example check
        np.testing.assert_array_equal(module.double(jnp.ones((2, 3))), 2 * jnp.ones((2, 3)))
    finally:
        sys.modules.pop("hooked_module", None)


def test_star_args_and_kwargs_static_unless_annotated():
    def total(*xs: Float[Array, "n"], **options) -> Float[Array, ""]:
        return sum(x.sum() for x in xs) * options.get("scale", 1.0)

    totals = batched(total, "b")
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(totals(x, x, x, scale=2.0), [18.0, 18.0])
    assert totals.in_axes == {"b": (0,)}


def test_generic_array_annotations_and_numpy():
    def add(x: jax.Array, y: np.ndarray) -> jax.Array:
        return x + y

    added = batched(add, "b")
    assert added.signature == "b ..., b ... -> b ..."
    np.testing.assert_array_equal(added(np.ones((2, 3)), np.ones((2, 3))), 2 * np.ones((2, 3)))

    def norm(x: Float[np.ndarray, "n"]) -> Float[np.ndarray, ""]:
        return jnp.sqrt(jnp.sum(x**2))

    np.testing.assert_allclose(batched(norm, "b")(np.ones((2, 4), np.float32)), [2.0, 2.0])


def test_array_like_annotations_are_generic_arrays():
    import jaxtyping
    from jax.typing import ArrayLike

    def add(x: ArrayLike, y: jaxtyping.ArrayLike) -> jax.Array:
        return jnp.asarray(x) + y

    added = batched(add, "b")
    assert added.signature == "b ..., b ... -> b ..."
    np.testing.assert_array_equal(added(np.ones((2, 3)), jnp.ones((2, 3))), 2 * np.ones((2, 3)))
    shifted = batched(add, "b ..., ... -> b ...")  # a Python scalar for y: it is array-like
    np.testing.assert_array_equal(shifted(jnp.ones((2, 3)), 2.0), 3 * np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"^add: argument 'x' must be an array matching .* got list"):
        added([1.0, 2.0], jnp.ones(2))

    def shift(x: ArrayLike, y: ArrayLike | None = None) -> jax.Array:
        return jnp.asarray(x) if y is None else jnp.asarray(x) + y

    shifted = batched(shift, "b")
    np.testing.assert_array_equal(shifted(jnp.ones((2, 3))), jnp.ones((2, 3)))
    np.testing.assert_array_equal(shifted(jnp.ones((2, 3)), jnp.ones((2, 3))), 2 * jnp.ones((2, 3)))


# -- a corpus: every dim string gives a working function or a SpecError ---------------------------

# Every string of the jaxtyping contract test, and more of what people write (or mistype).
CORPUS = [
    *VALID,
    *STRICTER,
    *INVALID,
    *[
        "n m",
        "n n",
        "n=3",
        "#n",
        "_x",
        "*rest",
        "*rest n",
        "n *rest",
        "*#rest",
        "n 2",
        "rows=n cols=m",
        "a b c d",
        "x1 x2",
        "n+1",
        "2*n",
        "n//2",
        "min(n,m)",
        "{self.k}",
        "n+",
        "open(n)",
        "n/2",
        "{n",
        "n}",
        "() ()",
        "[n]",
        "n;m",
        "lambda: 1",
        "__import__('os')",
        "'n'",
        "n\\m",
    ],
]


@pytest.mark.parametrize("dim_str", CORPUS)
@pytest.mark.parametrize("spec", ["b", "b *batch", "*batch"])
def test_corpus_works_or_raises_spec_error(dim_str, spec):
    try:
        annotation = Float[Array, dim_str]
    except Exception:
        # No annotation can carry it, but a spec or layouts= can: shapedmap's parser refuses it too.
        with pytest.raises(SpecError):
            parse_layout(dim_str)
        return

    def f(x: annotation) -> Float[Array, ""]:
        return jnp.sum(x)

    try:
        function = batched(f, spec)
    except SpecError as error:
        assert str(error).startswith("f: ") and "parameter 'x'" in str(error), str(error)
        return
    assert dim_str not in STRICTER, "jaxtyping takes it, shapedmap must refuse it"
    # It decorated: it must work on an array matching it, or raise a ShapeError naming the function.
    try:
        result = function(jnp.ones((2, *_shape_for(dim_str))))
    except ShapeError as error:
        assert str(error).startswith("f: ")
    else:
        assert result.shape == (2,)


def _shape_for(dim_str):
    shape = []
    for token in dim_str.split():
        if token in ("...",) or token.startswith("*"):
            shape.append(2)
        elif token.lstrip("#").isdigit():
            shape.append(int(token.lstrip("#")))
        elif "=" in token and token.split("=")[-1].lstrip("#").isdigit():
            shape.append(int(token.split("=")[-1].lstrip("#")))
        else:
            shape.append(3)
    return tuple(shape)


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 60


def test_treepath_dims_take_one_size_per_leaf():
    @batched("b")
    def add(x: PyTree[Float[Array, "?n"], "T"], y: PyTree[Float[Array, "?n"], "T"]) -> PyTree[Float[Array, "?n"], "T"]:
        return jax.tree.map(jnp.add, x, y)

    x = {"short": jnp.ones((2, 3)), "long": jnp.ones((2, 5))}
    result = add(x, x)
    assert result["short"].shape == (2, 3) and result["long"].shape == (2, 5)
    with pytest.raises(ShapeError, match=r"dimension 'n\['long'\]' has size 5 in argument 'x' at \['long'\]"):
        add(x, {"short": jnp.ones((2, 3)), "long": jnp.ones((2, 4))})


def test_treepath_dims_outside_a_structured_pytree_are_refused():
    def f(x: Float[Array, "?n"]) -> Float[Array, ""]:
        return x.sum()

    with pytest.raises(SpecError, match=r"'\?n' gives each PyTree leaf its own size"):
        batched(f, "b")
