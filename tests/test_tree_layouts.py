"""A layout may be a PyTree prefix of its argument or result, as jax.vmap reads in_axes/out_axes.

Every form is compared with the hand-written jax.vmap given that in_axes/out_axes tree (values,
shapes, PyTree structure), eagerly and under jax.jit; docs/layouts.md, "Layout trees", states it.
"""

import dataclasses
import functools
from typing import NamedTuple

import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jaxtyping import Array, Float, PyTree

from shapedmap import ShapeError, SpecError, batched, describe, explain
from shapedmap._plan import plan_of


class Pair(NamedTuple):
    w: Float[Array, "n"]
    b: Float[Array, "n"]


@functools.partial(jax.tree_util.register_dataclass, data_fields=["w", "b"], meta_fields=[])
@dataclasses.dataclass
class Registered:
    w: Float[Array, "n"]
    b: Float[Array, "n"]


class Module(eqx.Module):
    w: Float[Array, "n"]
    b: Float[Array, "n"]


def affine(params: PyTree[Float[Array, "n"]], x: Float[Array, "n"]) -> Float[Array, "n"]:
    """One example: ``w * x + b``, with ``params`` any container of ``w`` and ``b``."""
    leaves = jax.tree.leaves(params)
    return leaves[0] * x + sum(leaves[1:])


def _field(params, name):
    return params[name] if isinstance(params, dict) else getattr(params, name)


def wxb(params: PyTree[Float[Array, "n"]], x: Float[Array, "n"]) -> Float[Array, "n"]:
    return _field(params, "w") * x + _field(params, "b")


def leaves_of(shared_w):
    """w (3,) shared, b (4, 3): per example; or both mapped."""
    w = jnp.arange(3.0) + 1 if shared_w else jnp.arange(12.0).reshape(4, 3) + 1
    return w, jnp.arange(12.0).reshape(4, 3) / 7


X = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)


def assert_same(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6)


# Each form: the layout tree, the in_axes tree jax.vmap takes, and a maker of the params.
FORMS = {
    "dict-shared-leaf": ({"w": None, "b": "batch n"}, {"w": None, "b": 0}, lambda w, b: {"w": w, "b": b}),
    "namedtuple": (Pair(w=None, b="batch n"), Pair(w=None, b=0), Pair),
    "registered-dataclass": (Registered(w=None, b="batch n"), Registered(w=None, b=0), Registered),
    "equinox-module": (Module(w=None, b="batch n"), Module(w=None, b=0), Module),
}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_a_container_prefix_equals_vmap_with_that_in_axes_tree(form, jit):
    layout, in_axes, make = FORMS[form]
    fn = batched(wxb, "batch", layouts={"params": layout})
    params = make(*leaves_of(shared_w=True))
    expected = jax.vmap(wxb, in_axes=(in_axes, 0))(params, X)
    call = jax.jit(fn) if jit else fn
    assert_same(call(params, X), expected)
    assert fn.in_axes == {"batch": (in_axes, 0)}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_two_leaves_on_two_axes(jit):
    """The issue's form: layouts={"p": {"a": "batch n", "b": "n batch"}} = in_axes=({"a": 0, "b": 1},)."""

    def total(p: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
        return (p["a"] * p["b"]).sum()

    fn = batched(total, "batch", layouts={"p": {"a": "batch n", "b": "n batch"}})
    p = {"a": jnp.arange(15.0).reshape(5, 3), "b": jnp.arange(15.0).reshape(3, 5) / 3}
    expected = jax.vmap(total, in_axes=({"a": 0, "b": 1},))(p)
    assert_same((jax.jit(fn) if jit else fn)(p), expected)
    assert fn.in_axes == {"batch": ({"a": 0, "b": 1},)}
    assert "in_axes=({'a': 0, 'b': 1},)" in fn.__doc__


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_tuples_lists_nested_dicts_and_subtrees(jit):
    """A layout leaf may stand for a whole subtree; tuples and lists are containers like dicts."""

    def body(p: PyTree[Float[Array, "n"]]) -> Float[Array, "n"]:
        (a, (b, c)), d = p["pair"], p["more"]
        return a * b + c - d["x"] * d["y"][0]

    layout = {"pair": ("batch n", [None, "n batch"]), "more": "batch n"}
    in_axes = {"pair": (0, [None, 1]), "more": 0}
    p = {
        "pair": (jnp.ones((4, 3)), [jnp.arange(3.0), jnp.arange(12.0).reshape(3, 4)]),
        "more": {"x": jnp.full((4, 3), 2.0), "y": [jnp.arange(12.0).reshape(4, 3)]},
    }
    fn = batched(body, "batch", layouts={"p": layout})
    assert_same((jax.jit(fn) if jit else fn)(p), jax.vmap(body, in_axes=(in_axes,))(p))


def test_a_tree_with_one_axis_everywhere_is_that_axis():
    """The common case keeps its one in_axes entry (and its code path)."""
    fn = batched(wxb, "batch", layouts={"params": {"w": "batch n", "b": "batch n"}})
    assert fn.in_axes == {"batch": (0, 0)}
    w, b = leaves_of(shared_w=False)
    assert_same(fn({"w": w, "b": b}, X), jax.vmap(wxb)({"w": w, "b": b}, X))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_one_results_layout_is_an_out_axes_tree(jit):
    def split(p: PyTree[Float[Array, "n"]]) -> tuple[PyTree[Float[Array, "n"]], Float[Array, "n"]]:
        return {"a": 2 * p["a"], "b": p["b"] + 1, "c": p["c"]}, p["a"] - p["b"]

    fn = batched(
        split,
        "batch",
        layouts={"p": {"a": "batch n", "b": "n batch", "c": None}},
        out=({"a": "n batch", "b": "batch n", "c": None}, "batch n"),
    )
    p = {"a": jnp.arange(15.0).reshape(5, 3), "b": jnp.arange(15.0).reshape(3, 5), "c": jnp.ones(3)}
    expected = jax.vmap(split, in_axes=({"a": 0, "b": 1, "c": None},), out_axes=({"a": 1, "b": 0, "c": None}, 0))(p)
    assert_same((jax.jit(fn) if jit else fn)(p), expected)
    assert fn.out_axes == {"batch": ({"a": 1, "b": 0, "c": None}, 0)}


def test_a_single_result_takes_a_dict_out_and_a_one_tuple_keeps_its_meaning():
    def double(p: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return jax.tree.map(lambda leaf: 2 * leaf, p)

    p = {"a": jnp.ones((4, 3)), "b": jnp.ones((4, 3))}
    fn = batched(double, "batch", out={"a": "n batch", "b": "batch n"})
    assert_same(fn(p), jax.vmap(double, out_axes={"a": 1, "b": 0})(p))
    assert batched(double, "batch", out=("n batch",)).out_axes == {"batch": 1}


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 6), n=st.integers(1, 4), shared=st.booleans(), axis=st.sampled_from([0, 1]))
def test_sizes_drawn_equal_vmap_and_the_loop(batch, n, shared, axis):
    layout = {"w": None if shared else "batch n", "b": "batch n" if axis == 0 else "n batch"}
    fn = batched(wxb, "batch", layouts={"params": layout})
    key_w, key_b, key_x = jax.random.split(jax.random.key(batch * 10 + n), 3)
    w = jax.random.normal(key_w, (n,) if shared else (batch, n))
    b = jax.random.normal(key_b, (batch, n) if axis == 0 else (n, batch))
    x = jax.random.normal(key_x, (batch, n))
    params = {"w": w, "b": b}
    in_axes = {"w": None if shared else 0, "b": axis}
    expected = jax.vmap(wxb, in_axes=(in_axes, 0))(params, x)
    loop = jnp.stack(
        [wxb({"w": w if shared else w[i], "b": b[i] if axis == 0 else b[:, i]}, x[i]) for i in range(batch)]
    )
    assert_same(fn(params, x), expected)
    assert_same(jax.jit(fn)(params, x), expected)
    np.testing.assert_allclose(fn(params, x), loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [8, 7, 2], ids=["divides", "remainder", "one-chunk"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_chunked_on_each_leafs_own_axis(size, jit):
    def body(p: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return {"a": p["a"] * p["w"], "b": p["b"] + p["w"]}

    layout = {"a": "batch n", "b": "n batch", "w": None}
    out = {"a": "n batch", "b": "batch n"}
    fn = batched(body, "batch", layouts={"p": layout}, out=out, chunk={"batch": 3})
    p = {"a": jnp.arange(3.0 * size).reshape(size, 3), "b": jnp.ones((3, size)), "w": jnp.arange(3.0)}
    expected = jax.vmap(body, in_axes=({"a": 0, "b": 1, "w": None},), out_axes={"a": 1, "b": 0})(p)
    assert_same((jax.jit(fn) if jit else fn)(p), expected)
    assert_same(fn(p), batched(body, "batch", layouts={"p": layout}, out=out)(p))


def test_chunked_leaves_that_disagree_are_named_by_their_paths():
    def body(p: PyTree[Float[Array, "n"]]) -> Float[Array, "n"]:
        return p["a"] + p["b"]

    fn = batched(body, "batch", layouts={"p": {"a": "batch n", "b": "n batch"}}, chunk={"batch": 2}, check=False)
    with pytest.raises(
        ShapeError,
        match=r"^body: the batch dim 'batch' has size 4 in argument 'p' at \['a'\] \(axis 0 of f32\[4,3\]\) but size 5 "
        r"in argument 'p' at \['b'\] \(axis 1 of f32\[3,5\]\); chunk=",
    ):
        fn({"a": jnp.ones((4, 3)), "b": jnp.ones((3, 5))})


def test_explain_writes_the_in_axes_tree_and_its_text_runs():
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "batch n"}})
    params = {"w": jnp.arange(3.0), "b": jnp.ones((4, 3))}
    text = explain(fn, params, X)
    assert "in_axes=({'b': 0, 'w': None}, 0)" in text
    namespace = {"wxb": wxb}
    exec(text, namespace)
    assert_same(namespace["batched_wxb"](params, X), fn(params, X))


def test_describe_gives_each_subtrees_axis():
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "batch n"}})
    contract = describe(fn)
    (params, _) = contract.parameters
    assert params.batched == "{'b': 'batch n', 'w': None}"
    assert params.batch_axes == {"batch": {"['b']": 0}}
    assert contract.batch_dims[0].in_axes == {"params": {"['b']": 0, "['w']": None}, "x": 0}
    assert fn.signature == "{'b': 'batch n', 'w': None}, batch n -> batch n"
    assert params.subtrees == {"['b']": "batch n", "['w']": "n"}
    svg = contract.to_svg()  # one group per subtree
    assert ">params['b']<" in svg and ">params['w']<" in svg


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_a_layout_tree_beside_a_star_batch_argument(jit):
    """Levels settled per call (another argument's '*batch') keep the tree's axes."""

    def body(p: PyTree[Float[Array, "n"]], x: Float[Array, "n"]) -> Float[Array, "n"]:
        return p["w"] * x + p["b"]

    fn = batched(body, "*lead", layouts={"p": {"w": None, "b": "g n"}}, out="*lead g n")
    p = {"w": jnp.arange(3.0), "b": jnp.arange(12.0).reshape(4, 3)}
    x = jnp.arange(30.0).reshape(2, 5, 3)
    inner = jax.vmap(body, in_axes=({"w": None, "b": 0}, None))
    expected = jax.vmap(jax.vmap(inner, in_axes=(None, 0)), in_axes=(None, 0))(p, x)
    assert_same((jax.jit(fn) if jit else fn)(p, x), expected)


def test_checks_off_maps_the_same():
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "batch n"}}, check=False)
    params = {"w": jnp.arange(3.0), "b": jnp.ones((4, 3))}
    assert_same(fn(params, X), jax.vmap(wxb, in_axes=({"w": None, "b": 0}, 0))(params, X))


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_a_tree_that_does_not_fit_is_named_at_the_call_with_its_path(jit):
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "batch n"}})
    fn = jax.jit(fn) if jit else fn
    with pytest.raises(ShapeError, match=r"^wxb: argument 'params' does not fit its layout tree .* at its top: "
                       r"the layout tree has a dict with keys 'b', 'w' where the value has a dict with keys 'b', 'v'\. "
                       r"Make the layout tree a prefix"):  # fmt: skip
        fn({"v": jnp.ones(3), "b": jnp.ones((4, 3))}, X)


def test_a_nested_mismatch_names_the_inner_path():
    def body(p: PyTree[Float[Array, "n"]]) -> Float[Array, "n"]:
        return jax.tree.leaves(p)[0]

    fn = batched(body, "batch", layouts={"p": {"inner": ("batch n", None)}})
    with pytest.raises(ShapeError, match=r"argument 'p' does not fit .* at \['inner'\]: the layout tree has a tuple "
                       r"of 2 where the value has a tuple of 3"):  # fmt: skip
        fn({"inner": (jnp.ones((2, 3)), jnp.ones(3), jnp.ones(3))})
    with pytest.raises(
        ShapeError, match=r"at \['inner'\]: the layout tree has a tuple of 2 where the value has a list"
    ):
        fn({"inner": [jnp.ones((2, 3)), jnp.ones(3)]})


def test_a_namedtuple_value_under_a_dict_layout_tree_says_so():
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "batch n"}})
    with pytest.raises(ShapeError, match=r"where the value has a Pair"):
        fn(Pair(jnp.ones(3), jnp.ones((4, 3))), X)


def test_a_result_that_does_not_fit_its_out_tree_is_named():
    def body(p: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return {"a": p["a"]}

    fn = batched(body, "batch", out={"a": "batch n", "b": "n batch"})
    with pytest.raises(ShapeError, match=r"^body: the return value does not fit its layout tree .* at its top"):
        fn({"a": jnp.ones((2, 3))})


def test_a_size_conflict_between_leaves_names_both_paths():
    fn = batched(wxb, "batch", layouts={"params": {"w": "batch n", "b": "n batch"}})
    with pytest.raises(ShapeError, match=r"dimension 'batch' has size 4 in argument 'params' at \['b'\].*\n.*"
                       r"size 5 in argument 'params' at \['w'\]"):  # fmt: skip
        fn({"w": jnp.ones((5, 3)), "b": jnp.ones((3, 4))}, jnp.ones((4, 3)))


def test_a_leaf_layout_is_checked_against_the_annotation():
    with pytest.raises(SpecError, match=r"^wxb: the layout 'batch m' of parameter 'params' at \['b'\] lacks the "
                       r"per-example dim\(s\) 'n'"):  # fmt: skip
        batched(wxb, "batch", layouts={"params": {"w": None, "b": "batch m"}})


def test_a_tree_for_one_array_is_a_spec_error():
    with pytest.raises(
        SpecError, match=r"^wxb: the layout of parameter 'x' is a tree .*one array .*give it one layout"
    ):
        batched(wxb, "batch", layouts={"x": {"a": "batch n"}})


def test_a_dict_for_an_annotated_namedtuple_is_a_spec_error_at_decoration():
    def body(p: PyTree[Pair]) -> Float[Array, "n"]:
        return p.w * p.b

    with pytest.raises(SpecError, match=r"^body: the layout tree of parameter 'p' is a dict .* annotated Pair: .*"
                       r"write Pair\(w=\.\.\., b=\.\.\.\)"):  # fmt: skip
        batched(body, "batch", layouts={"p": {"w": None, "b": "batch n"}})


def test_a_non_string_leaf_says_what_to_write():
    with pytest.raises(SpecError, match=r"^wxb: the layout tree of parameter 'params' has 0 at \['b'\]: its leaves "
                       r"must be layout strings or None"):  # fmt: skip
        batched(wxb, "batch", layouts={"params": {"w": None, "b": 0}})


def test_broadcasting_dims_are_refused_in_a_tree():
    with pytest.raises(SpecError, match=r"broadcasts \('\*name' or '#name'\), which a layout tree cannot"):
        batched(wxb, "*batch", layouts={"params": {"w": None, "b": "*batch n"}})


def test_a_varying_unmapped_subtree_is_named_by_its_path():
    def body(p: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return {"a": p["a"], "b": p["a"] + p["b"]}

    fn = batched(body, "batch", layouts={"p": {"a": "batch n", "b": None}}, out={"a": "batch n", "b": None})
    with pytest.raises(ShapeError, match=r"^body: the return value at \['b'\] varies over the batch dim 'batch'"):
        fn({"a": jnp.ones((4, 3)), "b": jnp.ones(3)})


def test_the_plan_keeps_one_placement_per_subtree():
    fn = batched(affine, "batch", layouts={"params": {"w": None, "b": "batch n"}})
    placement = plan_of(fn).arguments[0].placement
    assert [str(leaf.batched) for leaf in placement.leaves] == ["batch n", "n"]
    assert placement.batch_names == ("batch",)


@pytest.mark.parametrize("layout", [5, 1.5, object()], ids=["int", "float", "object"])
def test_a_value_that_is_no_container_is_still_an_invalid_layout(layout):
    with pytest.raises(SpecError, match=r"^wxb: invalid layout .* for parameter 'x': a layout must be a string"):
        batched(wxb, "batch", layouts={"x": layout})


def test_check_batched_draws_the_layout_tree_and_loops_over_each_leafs_axis():
    """The testing tools read a layout tree: one array per layout, each taken on its own axis by the loop."""
    from shapedmap.testing import check_batched, inputs

    def body(p: PyTree[Float[Array, "n"]], x: Float[Array, "n"]) -> PyTree[Float[Array, "n"]]:
        return {"a": p["a"] * x, "b": p["b"] + p["w"]}

    fn = batched(
        body, "batch", layouts={"p": {"a": "batch n", "b": "n batch", "w": None}}, out={"a": "n batch", "b": "batch n"}
    )
    check_batched(fn, max_examples=5)

    @settings(max_examples=5, deadline=None)
    @given(inputs(fn))
    def drawn(arguments):
        args, kwargs = arguments
        bound = {**dict(zip(["p", "x"], args, strict=False)), **kwargs}
        p, x = bound["p"], bound["x"]
        assert set(p) == {"a", "b", "w"} and p["a"].shape[0] == p["b"].shape[1] == x.shape[0]
        assert p["w"].shape == x.shape[1:]

    drawn()


def test_explain_refuses_a_chunked_layout_tree_rather_than_write_another_program():
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "n batch"}}, chunk={"batch": 2})
    params = {"w": jnp.arange(3.0), "b": jnp.ones((3, 4))}
    assert_same(fn(params, X), jax.vmap(wxb, in_axes=({"w": None, "b": 1}, 0))(params, X))
    with pytest.raises(SpecError, match=r"^wxb: explain\(\) does not write a chunked level \('batch', chunk=2\)"):
        explain(fn, params, X)


def test_numpy_leaves_are_converted_on_a_remembered_call_and_a_bad_leaf_names_its_layout():
    fn = batched(wxb, "batch", layouts={"params": {"w": None, "b": "n batch"}})
    params = {"w": np.arange(3.0, dtype=np.float32), "b": np.ones((3, 4), np.float32)}
    expected = jax.vmap(wxb, in_axes=({"w": None, "b": 1}, 0))(params, X)
    for _ in range(2):  # the second call's shapes are remembered: only converted, not checked again
        assert_same(fn(params, np.asarray(X)), expected)
    with pytest.raises(
        ShapeError, match=r"^wxb: argument 'params' must be an array matching Float\[Array, 'n batch'\], got str"
    ):
        fn({"w": params["w"], "b": "not an array"}, X)
