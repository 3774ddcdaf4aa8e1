"""explain(fn, *args, **kwargs): the text runs, and computes what the batched function computes."""

import ast
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import Array, Float, PyTree

from shapedmap import ShapeError, batched, explain
from shapedmap.examples import EXAMPLES, message_passing, mm, pairwise


def per_example_function(fn):
    while hasattr(fn, "__shapedmap__"):
        fn = fn.fn
    return fn


def run_explained(fn, *args, **kwargs):
    """Execute ``explain``'s text with only the per-example function in scope; call its def."""
    text = explain(fn, *args, **kwargs)
    inner = per_example_function(fn)
    namespace = {inner.__name__: inner}
    if f"{inner.__name__}_per_example = " in text:  # decorated in place: the text reads name.fn
        namespace[inner.__name__] = inner.__globals__[inner.__name__]
    exec(compile(text, "<explain>", "exec"), namespace)
    (definition,) = [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]
    return text, namespace[definition](*args, **kwargs)


def assert_same(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def check(fn, *args, **kwargs):
    text, got = run_explained(fn, *args, **kwargs)
    assert_same(got, fn(*args, **kwargs))
    return text


# -- every bundled example -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_runs_as_written(name):
    example = EXAMPLES[name]
    args = example.make_inputs(jax.random.key(0))
    text = check(example.function, *args)
    assert "jax.vmap(" in text
    assert_same(example.hand_written(*args), example.function(*args))  # the text and the seed agree


def test_message_passing_text():
    a, f = jnp.ones((13, 7, 7)), jnp.ones((13, 7, 11))
    text = explain(message_passing, a, f)
    assert text.splitlines() == [
        "# message_passing, batched as",
        "#     graph node node, graph node feat -> graph node feat",
        "# written out as plain jax.vmap for a: f32[13,7,7], f: f32[13,7,11]",
        "# (sizes: graph=13, node=7, feat=11). `message_passing` is the batched function (@batched rebinds the "
        "name): `message_passing_per_example` is the per-example function it maps, message_passing.fn.",
        "import jax",
        "",
        "message_passing_per_example = message_passing.fn  # the per-example function, under @batched",
        "",
        "",
        "def batched_message_passing(a, f):",
        '    vmapped = jax.vmap(message_passing_per_example, in_axes=(0, 0), out_axes=0, axis_name="graph")  # graph = 13',
        "    return vmapped(a, f)  # -> f32[13,7,11]",
    ]


def test_pairwise_text_nests_innermost_first():
    u, v = jnp.ones((3, 5)), jnp.ones((4, 5))
    text = check(pairwise, u, v)
    lines = text.splitlines()
    inner = lines.index(
        '    vmapped = jax.vmap(concat, in_axes=(None, 0), out_axes=0, axis_name="j")  # j = 4; u not mapped'
    )
    outer = lines.index(
        '    vmapped = jax.vmap(vmapped, in_axes=(0, None), out_axes=0, axis_name="i")  # i = 3; v not mapped'
    )
    assert inner < outer
    assert lines[-1] == "    return vmapped(u, v)  # -> f32[3,4,10]"
    assert "(sizes: i=3, f=5, j=4)" in text


def test_a_batched_function_batched_again_is_written_down_to_the_innermost():
    x, y = jnp.arange(15.0).reshape(5, 3), jnp.arange(12.0).reshape(3, 4)
    text = check(mm, x, y)
    assert 'jax.vmap(vv, in_axes=(0, None), out_axes=0, axis_name="b")' in text
    assert 'in_axes=(None, 1), out_axes=1, axis_name="c")' in text
    assert "`vv` is the per-example function: the function given to the innermost batched." in text
    np.testing.assert_allclose(run_explained(mm, x, y)[1], x @ y, rtol=1e-6)


# -- non-trivial specs ---------------------------------------------------------------------------


def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"], *, scale: float = 2.0) -> Float[Array, "out"]:
    return scale * x @ w


def test_keyword_arguments_static_parameters_and_a_shared_weight():
    layer = batched(linear, "batch", layouts={"w": "feat out"})
    x, w = jnp.arange(24.0).reshape(8, 3), jnp.arange(6.0).reshape(3, 2)
    text = check(layer, x, w=w, scale=3.0)
    assert "def batched_linear(x, w, *, scale=2.0):" in text
    assert "        return linear(x, w, scale=scale)" in text
    assert "in_axes=(0, None)" in text and "# batch = 8; w not mapped" in text
    check(layer, x=x, w=w)  # everything by keyword, the default scale


def test_keyword_argument_mapped_on_another_axis():
    layer = batched(linear, "batch feat, feat out batch -> batch out")
    x, w = jnp.ones((4, 3)), jnp.arange(24.0).reshape(3, 2, 4)
    text = check(layer, x, w=w)
    assert "in_axes=(0, 2)" in text  # plain jax.vmap would map the keyword on axis 0


def mp(a: Float[Array, "n n"], f: Float[Array, "n feat"]) -> Float[Array, "n feat"]:
    return a @ f


def test_broadcast_batch_dims_squeeze_then_map():
    broadcast = batched(mp, "*batch")
    a, f = jax.random.normal(jax.random.key(1), (3, 1, 4, 4)), jax.random.normal(jax.random.key(2), (1, 2, 4, 5))
    text = check(broadcast, a, f)
    assert "    a = jnp.squeeze(a, axis=(1,))  # size 1: shared, not mapped" in text
    assert "import jax.numpy as jnp" in text
    assert "# *batch dim 0 = 3" in text and "# *batch dim 1 = 2" in text
    assert "*batch=(3, 2)" in text
    check(broadcast, jnp.ones((4, 4)), jnp.ones((4, 5)) * 2)  # no batch dims at all


def test_broadcastable_named_dim():
    shared = batched(mp, "#graph n n, graph n feat -> graph n feat")
    text = check(shared, jnp.ones((1, 4, 4)) * 3, jnp.arange(120.0).reshape(6, 4, 5))
    assert 'jax.vmap(mp, in_axes=(None, 0), out_axes=0, axis_name="graph")' in text
    text = check(shared, jnp.ones((6, 4, 4)), jnp.ones((6, 4, 5)))
    assert "squeeze" not in text


def test_tuple_results_and_a_static_positional():
    def stats(x: Float[Array, "n"], k: int) -> tuple[Float[Array, ""], Float[Array, "n"]]:
        return x.sum() * k, x * k

    text = check(batched(stats, "b n -> b, n b"), jnp.arange(6.0).reshape(2, 3), 3)
    assert "out_axes=(0, 1)" in text and "-> (f32[2], f32[3,2])" in text
    assert "        return stats(x, k)" in text


def test_a_dim_only_the_output_has():
    def copy(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * 2

    text = check(batched(copy, "n -> k=5 n"), jnp.arange(3.0))
    assert 'jax.vmap(copy, in_axes=None, out_axes=0, axis_name="k", axis_size=5)' in text


def test_a_collective_over_the_batch_name():
    def centred(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x - jax.lax.pmean(x, "b")

    check(batched(centred, "b"), jnp.arange(12.0).reshape(4, 3))

    def total(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jax.lax.psum(x, "b")

    assert "out_axes=None" in check(batched(total, "b n -> n"), jnp.arange(12.0).reshape(4, 3))


def test_pytrees_star_args_and_star_kwargs():
    def tree(p: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
        return p["a"].sum() - p["b"].sum()

    check(batched(tree, "batch"), {"a": jnp.ones((4, 3)), "b": jnp.arange(12.0).reshape(4, 3)})

    def sums(*xs: Float[Array, "n"]) -> Float[Array, ""]:
        return sum(x.sum() for x in xs)

    assert "def batched_sums(*xs):" in check(batched(sums, "batch"), jnp.ones((4, 3)), jnp.arange(12.0).reshape(4, 3))

    def weighted(x: Float[Array, "n"], **extra: Float[Array, "n"]) -> Float[Array, ""]:
        return x.sum() + sum(v.sum() * 2 for v in extra.values())

    assert "return weighted(x, **extra)" in check(batched(weighted, "batch"), jnp.ones((4, 3)), y=jnp.ones((4, 3)))


WEIGHTS = jnp.arange(3.0)


def test_positional_only_and_defaults_that_are_not_literals():
    def f(x: Float[Array, "n"], /, y: Float[Array, "n"] = WEIGHTS, *, z: int = 2) -> Float[Array, ""]:
        return (x * y).sum() * z

    g = batched(f, "b n, n -> b")
    text = check(g, jnp.ones((4, 3)))
    assert "def batched_f(x, /, y=inspect.signature(f).parameters['y'].default, *, z=2):" in text
    check(g, jnp.ones((4, 3)), jnp.ones(3), z=5)


def test_parameter_names_that_clash_with_the_texts_own_names():
    def f(jax: Float[Array, "n"], vmapped: Float[Array, "n"], jnp: int = 1) -> Float[Array, ""]:
        return (jax * vmapped).sum() * jnp

    text = check(batched(f, "b"), np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32), jnp=3)
    assert "import jax as jax_" in text and "vmapped_ = jax_.vmap(" in text


def test_nested_with_broadcasting_inside():
    inner = batched(mp, "#graph n n, graph n feat -> graph n feat")
    outer = batched(inner, "t #graph n n, t graph n feat -> t graph n feat")
    a, f = jnp.arange(32.0).reshape(2, 1, 4, 4), jnp.arange(240.0).reshape(2, 6, 4, 5)
    text = check(outer, a, f)
    assert "def squeezed_0(a, f):" in text and "return vmapped_0(a, f)" in text


def test_wrong_arguments_give_the_calls_error():
    with pytest.raises(ShapeError) as from_call:
        message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    with pytest.raises(ShapeError) as from_explain:
        explain(message_passing, jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    assert str(from_explain.value) == str(from_call.value)
    with pytest.raises(TypeError, match=r"is not a function made by shapedmap\.batched"):
        explain(linear, jnp.ones(3))


def test_abstract_arguments_are_enough():
    spec = jax.ShapeDtypeStruct((13, 7, 7), jnp.float32), jax.ShapeDtypeStruct((13, 7, 11), jnp.float32)
    assert "# -> f32[13,7,11]" in explain(message_passing, *spec)


# -- random layouts ------------------------------------------------------------------------------


def outer(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n m"]:
    return jnp.outer(x, y) + x.sum()


@st.composite
def outer_specs(draw):
    """A spec for ``outer`` with one or two batch names inserted anywhere, and matching inputs."""
    names = draw(st.lists(st.sampled_from(["p", "q"]), min_size=1, max_size=2, unique=True))
    cores = (["n"], ["m"])
    layouts = []
    for core in cores:
        tokens = list(core)
        for name in draw(st.lists(st.sampled_from(names), unique=True)):
            tokens.insert(draw(st.integers(0, len(tokens))), name)
        layouts.append(tokens)
    for name in names:  # every batch name must size from some input
        if not any(name in tokens for tokens in layouts):
            layouts[0].insert(draw(st.integers(0, len(layouts[0]))), name)
    output = ["n", "m"]
    for name in draw(st.permutations(names)):
        output.insert(draw(st.integers(0, len(output))), name)
    sizes = {"n": draw(st.integers(1, 3)), "m": draw(st.integers(1, 3))}
    sizes.update({name: draw(st.integers(1, 3)) for name in names})
    spec = f"{' '.join(layouts[0])}, {' '.join(layouts[1])} -> {' '.join(output)}"
    arrays = [
        jnp.arange(float(np.prod([sizes[t] for t in tokens]))).reshape([sizes[t] for t in tokens]) for tokens in layouts
    ]
    return spec, arrays


@given(outer_specs())
def test_random_layouts_explain_equals_the_call(case):
    spec, arrays = case
    fn = batched(outer, spec)
    text = check(fn, *arrays)
    ast.parse(text)
    assert text.count("jax.vmap(") == len(fn.in_axes)


def test_the_text_is_plain_python_without_shapedmap():
    text = explain(pairwise, jnp.ones((2, 3)), jnp.ones((2, 3)))
    assert "shapedmap" not in "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert [node.names[0].name for node in ast.parse(text).body if isinstance(node, ast.Import)] == ["jax"]


class Model:
    def __init__(self, k: int) -> None:
        self.k = k

    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, ""]:
        return x.sum() * self.k


def test_a_partial_and_a_method():
    def scaled(x: Float[Array, "n"], factor: float) -> Float[Array, "n"]:
        return x * factor

    g = batched(functools.partial(scaled, factor=2.0), "b")
    x = jnp.arange(6.0).reshape(3, 2)
    text = explain(g, x)
    assert (
        "`scaled` is the per-example function: the functools.partial given to batched, which holds its bound values."
        in text
    )
    assert "# Bound by the functools.partial, shared as jax.vmap shares what a closure holds: factor float 2.0." in text
    namespace = {"scaled": g.fn}
    exec(text, namespace)
    assert_same(namespace["batched_scaled"](x), g(x))

    model = Model(3)
    text = explain(Model.apply, model, x)
    assert "        return apply(self, x)" in text  # not Model.apply: in place, that is the batched method
    assert explain(model.apply, x) == text  # a bound method: self is the instance, static
    namespace = {"apply": Model.apply.fn}
    exec(text, namespace)
    assert_same(namespace["batched_apply"](model, x), model.apply(x))


def test_a_sharded_function_keeps_its_spmd_axis_name():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharded = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh)
    text = check(sharded, jnp.ones((4, 3, 3)), jnp.arange(24.0).reshape(4, 3, 2))
    assert "jax.vmap(mp, in_axes=(0, 0), out_axes=0, axis_name=\"graph\", spmd_axis_name='data')" in text
    assert "fn.partition_specs(*args) gives the specs" in text
