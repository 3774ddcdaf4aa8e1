"""Unannotated (or ``Any``) parameters and results take a layout from ``layouts=``/``out=``, or by
position from a full signature on a function with no array annotation; parameters nothing gives a
layout stay static; the first error of an unannotated function leads with both fixes.

The real conversions (jax-md's ``map_product``, optax's DP-SGD per-example gradients, probfindiff's
``batch_gram``) are compared with the original ``jax.vmap`` code, eagerly and under ``jax.jit``, with
no annotated wrapper (docs/architecture.md, Guarantees: loop, layouts, specs).
"""

import functools
import re
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float

from shapedmap import ShapeError, SpecError, batched

MODES = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


def _same_tree(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def _points(seed, *shape):
    return jax.random.uniform(jax.random.key(seed), shape, minval=0.0, maxval=10.0)


# -- jax-md: map_product of a displacement and of a metric -----------------------------------
# Reproduced from jax_md.space (free/periodic spaces, map_product), not imported.


def pairwise_displacement(Ra, Rb):
    if len(Ra.shape) != 1:
        raise ValueError(f"Can only compute displacements between vectors, got {Ra.shape}")
    return Ra - Rb


def periodic_displacement(side, dR):
    return jnp.mod(dR + side * 0.5, side) - 0.5 * side


def periodic(side):
    def displacement_fn(Ra, Rb, perturbation=None, **unused_kwargs):
        if "box" in unused_kwargs:
            raise ValueError("`space.periodic` does not accept a box argument.")
        dR = periodic_displacement(side, pairwise_displacement(Ra, Rb))
        if perturbation is not None:
            dR = dR * perturbation
        return dR

    return displacement_fn


def distance(dR):
    return jnp.sqrt(jnp.sum(dR**2, axis=-1))


def map_product(metric_or_displacement):
    return jax.vmap(jax.vmap(metric_or_displacement, (0, None), 0), (None, 0), 0)


def displacement(Ra, Rb):
    return Ra - Rb


@pytest.mark.parametrize("mode", MODES)
def test_displacement_equals_the_nested_vmap(mode):
    """The issue's example: an unannotated displacement, 'i j' with a layout per parameter."""
    per_pair = batched(displacement, "i j", layouts={"Ra": "i d", "Rb": "j d"}, out="j i d")
    Ra, Rb = _points(0, 5, 3), _points(1, 4, 3)
    _same_tree(mode(per_pair)(Ra, Rb), jax.vmap(jax.vmap(displacement, (0, None)), (None, 0))(Ra, Rb))
    assert per_pair.in_axes == {"j": (None, 0), "i": (0, None)}
    assert per_pair.signature == "i d, j d -> j i d"


@settings(max_examples=6)  # each example compiles four programs
@given(i=st.integers(1, 6), j=st.integers(1, 6), d=st.integers(1, 4), side=st.floats(1.0, 20.0))
def test_periodic_map_product_of_a_displacement_and_a_metric(i, j, d, side):
    displacement_fn = periodic(side)

    def metric(Ra, Rb, **kwargs):
        return distance(displacement_fn(Ra, Rb, **kwargs))

    Ra, Rb = _points(i * 7 + j, i, d), _points(d, j, d)
    pairs = batched(displacement_fn, "i j", layouts={"Ra": "i d", "Rb": "j d"}, out="j i d")
    distances = batched(metric, "i j", layouts={"Ra": "i d", "Rb": "j d"}, out="j i")
    for mode in (lambda f: f, jax.jit):
        _same_tree(mode(pairs)(Ra, Rb), map_product(displacement_fn)(Ra, Rb))
        _same_tree(mode(distances)(Ra, Rb), map_product(metric)(Ra, Rb))
    # perturbation and **unused_kwargs have no layout: static, passed through to every example
    scaled = pairs(Ra, Rb, perturbation=2.0)
    _same_tree(scaled, map_product(functools.partial(displacement_fn, perturbation=2.0))(Ra, Rb))


# -- optax's DP-SGD: per-example gradients of an unannotated loss ------------------------------


def predict(params, inputs):
    activations = inputs
    for w, b in params[:-1]:
        activations = jnp.tanh(activations @ w + b)
    w, b = params[-1]
    return activations @ w + b


def loss(params, x, y):
    logits = predict(params, x)
    log_probabilities = jax.nn.log_softmax(logits)
    return -jnp.sum(log_probabilities * y), logits


def _mlp(seed, sizes):
    keys = jax.random.split(jax.random.key(seed), len(sizes))
    return [
        (jax.random.normal(k, (m, n)) / np.sqrt(m), jnp.zeros(n))
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=False)
    ]


@pytest.mark.parametrize("mode", MODES)
def test_per_example_gradients_of_an_unannotated_loss(mode):
    params = _mlp(0, [6, 5, 3])
    x = jax.random.normal(jax.random.key(1), (7, 6))
    y = jax.nn.one_hot(jnp.arange(7) % 3, 3)
    per_example = batched(
        jax.grad(loss, has_aux=True),
        "batch",
        layouts={"params": None, "x": "batch feat", "y": "batch classes"},
    )
    want = jax.vmap(jax.grad(loss, has_aux=True), in_axes=(None, 0, 0))(params, x, y)
    _same_tree(mode(per_example)(params, x, y), want)
    assert per_example.in_axes == {"batch": (None, 0, 0)}
    message = r"^jax\.grad\(loss\): dimension 'batch' has size 7 in argument 'x' .*\nbut size 6 in argument 'y'"
    with pytest.raises(ShapeError, match=message):
        mode(per_example)(params, x, y[:6])


# -- probfindiff: batch_gram over unannotated kernel lambdas, batch axes trailing --------------


def batch_gram(k):
    """probfindiff.utils.kernel.batch_gram, without its jit: x (N, d), y (d, M) -> (N, M)."""
    k_vmapped_x = jax.vmap(k, in_axes=(0, None), out_axes=-1)
    return jax.vmap(k_vmapped_x, in_axes=(None, -1), out_axes=-1)


def _kernels():
    def k(x, y):
        return jnp.exp(-jnp.dot(x - y, x - y) / 2.0)

    return {
        "k": (k, "n m"),
        "lambda": ((lambda x, y: jnp.exp(-jnp.sum(jnp.abs(x - y)))), "n m"),
        "grad": (jax.grad(k), "... n m"),  # a vector per pair: jax.vmap's out_axes=-1 puts it in front
    }


@pytest.mark.parametrize("name", ["k", "lambda", "grad"])
@pytest.mark.parametrize("mode", MODES)
def test_batch_gram_with_trailing_batch_axes(mode, name):
    kernel, out = _kernels()[name]
    gram = batched(kernel, "n m", layouts={"x": "n ...", "y": "... m"}, out=out)
    x, y = _points(0, 4, 2) / 5, _points(1, 2, 3) / 5
    _same_tree(mode(gram)(x, y), batch_gram(kernel)(x, y))
    assert gram.in_axes == {"n": (0, None), "m": (None, -1)}


# -- the rule: layouts= and full signatures, static parameters, results ------------------------


@pytest.mark.parametrize("mode", MODES)
def test_any_per_example_shape_with_dots(mode):
    def total(x):
        return jnp.sum(x)

    summed = batched(total, "batch", layouts={"x": "batch ..."})
    for shape in [(4,), (4, 3), (4, 2, 5)]:
        x = jnp.arange(float(np.prod(shape))).reshape(shape)
        _same_tree(mode(summed)(x), jax.vmap(total)(x))


@pytest.mark.parametrize("mode", MODES)
def test_named_sizes_of_an_unannotated_parameter_are_checked_and_bound(mode):
    def project(x, w: Float[Array, "n m"]) -> Float[Array, " m"]:
        return x @ w

    projected = batched(project, "batch", layouts={"x": "batch n", "w": None})
    x, w = _points(0, 5, 3), _points(1, 3, 2)
    _same_tree(mode(projected)(x, w), jax.vmap(project, in_axes=(0, None))(x, w))
    message = r"project: dimension 'n' has size 4 in argument 'x' \(axis 1 of f32\[5,4\]\)\nbut size 3 in argument 'w'"
    with pytest.raises(ShapeError, match=message):
        mode(projected)(_points(0, 5, 4), w)


def test_any_annotated_parameter_takes_a_layout():
    def scale(x: typing.Any, factor: float) -> Float[Array, " n"]:
        return x * factor

    scaled = batched(scale, "b", layouts={"x": "b n"})
    x = _points(0, 3, 4)
    _same_tree(scaled(x, 2.0), jax.vmap(scale, in_axes=(0, None))(x, 2.0))
    assert scaled.signature == "b n -> b n"


@pytest.mark.parametrize("mode", MODES)
def test_a_full_signature_gives_layouts_to_the_positional_parameters_in_order(mode):
    by_position = batched(displacement, "i d, j d -> j i d")
    Ra, Rb = _points(0, 5, 3), _points(1, 4, 3)
    _same_tree(mode(by_position)(Ra, Rb), jax.vmap(jax.vmap(displacement, (0, None)), (None, 0))(Ra, Rb))
    # Every name of the result is a batch name: 'd' is mapped too (the short spec keeps it per example).
    assert by_position.in_axes == {"j": (None, 0), "i": (0, None), "d": (0, 0)}

    def scaled(x, y, scale=2.0):
        return scale * x * y

    trailing = batched(scaled, "b n, n -> b n")  # 'scale' has a default: left out, held static
    x, y = _points(2, 3, 4), _points(3, 4)
    _same_tree(mode(functools.partial(trailing, scale=3.0))(x, y), 3.0 * x * y)


def test_a_full_signature_with_too_many_or_too_few_layouts_names_the_parameters():
    def scaled(x, y, scale=2.0):
        return scale * x * y

    with pytest.raises(SpecError, match=r"^scaled: the spec has 1 input layout\(s\) but the function has 3 positional"):
        batched(scaled, "b n -> b n")
    with pytest.raises(
        SpecError,
        match=r"has 4 input layout\(s\) but the function has 3 positional parameter\(s\) \('x', 'y', 'scale'\)",
    ):
        batched(scaled, "b n, n, , n -> b n")


def test_static_parameters_stay_static():
    """A config dict and ``self`` that nothing gives a layout are never mapped."""

    def apply(x, config):
        return x * config["scale"]

    applied = batched(apply, "b", layouts={"x": "b n"})
    x = _points(0, 3, 2)
    _same_tree(applied(x, {"scale": 2.0}), 2.0 * x)
    assert applied.in_axes == {"b": (0,)}

    class Scaler:
        factor = 3.0

        @batched("b", layouts={"x": "b ..."})
        def apply(self, x):
            return x * self.factor

        @batched("b n -> b n")
        def by_position(self, x):
            return x * self.factor

    _same_tree(Scaler().apply(x), 3.0 * x)
    _same_tree(Scaler().by_position(x), 3.0 * x)


def test_unannotated_results_with_and_without_out():
    def split(x):
        return {"total": jnp.sum(x), "doubled": 2 * x}

    tree = batched(split, "b", layouts={"x": "b n"})  # no out=: batch names leading, the rest unchecked
    x = _points(0, 3, 4)
    _same_tree(tree(x), jax.vmap(split)(x))

    def wrong_rank(x):
        return jnp.sum(x)

    checked = batched(wrong_rank, "b", layouts={"x": "b n"}, out="b n")
    with pytest.raises(ShapeError, match=r"^wrong_rank: the return value .*'n'"):
        checked(x)
    unmapped = batched(wrong_rank, "b", layouts={"x": "b n"}, out="b")
    _same_tree(unmapped(x), jnp.sum(x, axis=1))


# -- errors ------------------------------------------------------------------------------------


def test_a_layout_for_a_parameter_that_does_not_exist():
    with pytest.raises(
        SpecError, match=r"^displacement: layouts= names 'Rc', which is not a parameter \(parameters: Ra, Rb\)$"
    ):
        batched(displacement, "i j", layouts={"Ra": "i d", "Rc": "j d"})


def test_a_call_that_contradicts_the_rank_of_a_layout_names_the_parameter_and_the_layout():
    per_pair = batched(displacement, "i j", layouts={"Ra": "i d", "Rb": "j d"}, out="j i d")
    with pytest.raises(
        ShapeError, match=r"^displacement: argument 'Rb' has 1 dim \(f32\[4\]\) but its layout 'j d' needs 2"
    ):
        jax.jit(per_pair)(_points(0, 5, 3), _points(1, 4))


def test_no_batch_names_to_read_a_layout_with():
    with pytest.raises(SpecError, match=r"^displacement: parameter 'Ra' is not annotated.*no batch names are given"):
        batched(displacement, layouts={"Ra": "i d", "Rb": "j d"})


def test_mixing_annotated_and_unannotated_parameters_under_a_full_signature():
    def mixed(Ra, Rb: Float[Array, " d"]):
        return Ra - Rb

    with pytest.raises(SpecError) as caught:
        batched(mixed, "i d, j d -> j i d")
    message = str(caught.value)
    assert message.startswith(
        "mixed: the spec 'i d, j d -> j i d' has 2 input layouts, but 'Rb' is annotated as an array and 'Ra' is not"
    )
    call = "batched(mixed, 'j i', layouts={'Ra': 'i d', 'Rb': 'j d'}, out='j i d')"
    assert message.endswith(f"Give the unannotated ones theirs by name with layouts=: {call}")
    fixed = batched(mixed, "j i", layouts={"Ra": "i d", "Rb": "j d"}, out="j i d")  # the call shown works
    Ra, Rb = _points(0, 5, 3), _points(1, 4, 3)
    _same_tree(fixed(Ra, Rb), jax.vmap(jax.vmap(mixed, (0, None)), (None, 0))(Ra, Rb))


def test_the_first_error_of_an_unannotated_function_leads_with_the_fix():
    """Issue 22, item 4: the unannotated parameters and both fixes, before the batch dim's detail."""

    def f(x, w):
        return x @ w

    with pytest.raises(SpecError) as caught:
        batched(f, "batch")
    message = str(caught.value)
    assert message.startswith(
        "f: 'x' and 'w' are not annotated, so they are held static (never mapped): give them layouts"
    )
    fix = "batched(f, 'batch', layouts={'x': 'batch ...', 'w': 'batch ...'})"
    annotate = "or annotate them (x: Float[Array, '...'], w: Float[Array, '...'])"
    detail = "As it is, the output batch dim 'batch' appears in no input layout, so its size is unknown."
    assert message.index(fix) < message.index(annotate) < message.index(detail)
    assert message.endswith(detail)
    x, w = _points(0, 3, 2), _points(1, 3, 2, 4)
    _same_tree(batched(f, "batch", layouts={"x": "batch ...", "w": "batch ..."})(x, w), jax.vmap(f)(x, w))

    with pytest.raises(
        SpecError, match=re.escape("f: 'x' and 'w' are not annotated") + r".*As it is, no layout has a batch dim"
    ):
        batched(f)


def test_annotated_static_parameters_still_refuse_a_layout():
    def scale(x: Float[Array, " n"], factor: float) -> Float[Array, " n"]:
        return x * factor

    with pytest.raises(
        SpecError, match=r"^scale: layouts= gives a layout for 'factor', which is annotated float: only arrays"
    ):
        batched(scale, "b", layouts={"factor": "b"})


@given(
    shape=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    data=st.data(),
)
def test_an_unannotated_parameter_is_mapped_where_its_layout_says(shape, data):
    """Any per-example rank, the batch axis anywhere (or shared): equal to jax.vmap with that axis and to
    the same function annotated with the per-example layout, eagerly and under jax.jit."""
    rank = len(shape)
    axis = data.draw(st.integers(0, rank), label="axis")
    names = [f"d{i}" for i in range(rank)]
    layout = " ".join([*names[:axis], "b", *names[axis:]])
    batch = data.draw(st.integers(1, 3), label="batch")

    def body(x, w):
        return jnp.sum(x) * w

    def annotated(x: Float[Array, " ".join(names)], w: Float[Array, " m"]) -> Float[Array, " m"]:
        return jnp.sum(x) * w

    x = jnp.arange(float(batch * int(np.prod(shape)))).reshape(*shape[:axis], batch, *shape[axis:])
    w = jnp.arange(1.0, 3.0)
    unannotated = batched(body, "b", layouts={"x": layout, "w": None}, out="b m")
    want = jax.vmap(body, in_axes=(axis, None))(x, w)
    for mode in (lambda f: f, jax.jit):
        _same_tree(mode(unannotated)(x, w), want)
        _same_tree(mode(unannotated)(x, w), batched(annotated, "b", layouts={"x": layout, "w": None})(x, w))
    assert unannotated.in_axes == {"b": (axis, None)}
    assert unannotated.signature == f"{layout}, ... -> b m"  # None: shared, its shape unchecked


def test_an_any_annotated_result_takes_out():
    def stats(x) -> typing.Any:
        return jnp.stack([x.mean(), x.std()])

    per_row = batched(stats, "b", layouts={"x": "b n"}, out="b two=2")
    x = _points(0, 4, 5)
    _same_tree(per_row(x), jax.vmap(stats)(x))
    wrong = batched(stats, "b", layouts={"x": "b n"}, out="b three=3")
    with pytest.raises(
        ShapeError, match=r"^stats: dimension 'three' of layout 'b three=3' must have size 3, but the return value"
    ):
        wrong(x)


# -- unannotated values with layout trees (a layout per subtree, as jax.vmap reads in_axes) --------------


def _affine(params, x):
    return params["w"] @ x + params["b"]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_an_unannotated_parameter_takes_a_layout_tree(jit):
    """The issue's per-leaf form on an unannotated function: each leaf's per-example layout is its
    own layout less the batch names; equal to jax.vmap with the in_axes tree."""
    batched_affine = batched(_affine, "batch", layouts={"params": {"w": None, "b": "batch n"}, "x": "batch m"})
    params = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.arange(15.0).reshape(5, 3)}
    x = jnp.arange(20.0).reshape(5, 4)
    expected = jax.vmap(_affine, in_axes=({"w": None, "b": 0}, 0))(params, x)
    call = jax.jit(batched_affine) if jit else batched_affine
    assert batched_affine.in_axes == {"batch": ({"b": 0, "w": None}, 0)}
    np.testing.assert_array_equal(call(params, x), expected)
    with pytest.raises(ShapeError) as error:
        call({"w": params["w"], "b": jnp.ones((6, 3))}, x)
    assert "dimension 'batch' has size 6 in argument 'params' at ['b']" in str(error.value)
    assert "but size 5 in argument 'x'" in str(error.value)


def test_an_unannotated_result_takes_an_out_tree():
    def halve(p):
        return {"a": p["a"] / 2, "b": p["b"].sum()}

    batched_halve = batched(
        halve, "batch", layouts={"p": {"a": "batch n", "b": "n batch"}}, out={"a": "n batch", "b": "batch"}
    )
    p = {"a": jnp.arange(15.0).reshape(5, 3), "b": jnp.arange(15.0).reshape(3, 5)}
    expected = jax.vmap(halve, in_axes=({"a": 0, "b": 1},), out_axes={"a": 1, "b": 0})(p)
    got = batched_halve(p)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, got, expected)
