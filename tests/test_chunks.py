"""``chunk=``: a batch dim mapped in slices (``jax.lax.map`` over ``vmap``s), and ``Budget``.

Every chunked function equals the naive loop and the same function without ``chunk=`` (every
spec form, eagerly, under ``jax.jit``, ``jax.grad`` and an outer ``jax.vmap``, for sizes the chunk
divides, does not divide, exceeds and 0); its compiled temporary memory is that of the hand-written
``jax.lax.map(..., batch_size=)``; a collective over a chunked name is a ``SpecError``; a ``Budget``
picks the largest power of two whose compiled temporary memory fits, and twice that would not.
Memory analysis is deterministic: nothing here is timed.
"""

import ast
import functools
import re
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jaxtyping import Array, Float, PyTree

from shapedmap import Budget, ShapeError, SpecError, batched, describe, explain
from shapedmap.testing import check_batched, inputs


def nearest(x: Float[Array, "p d"]) -> Float[Array, "p"]:
    """The distance from each point to its nearest other point: an (p, p) intermediate."""
    distances = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    return jnp.sort(distances, axis=-1)[:, 1]


def mp(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    return a @ f


def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"], *, scale: float = 2.0) -> Float[Array, "out"]:
    return scale * (x @ w)


def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
    return jnp.concatenate([u, v])


def total(x: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.sum(x)


def stats(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
    return jnp.sum(x), 2 * x


def with_shared(x: Float[Array, "n"], w: Float[Array, "n"]) -> tuple[Float[Array, "n"], Float[Array, "n"]]:
    return x * w, 2 * w  # the second result does not vary over the batch: left unmapped


def tree_scale(params: PyTree[Float[Array, "n"]], x: Float[Array, "n"]) -> PyTree[Float[Array, "n"]]:
    return jax.tree.map(lambda leaf: leaf * x, params)


def power(x: Float[Array, "n"], exponent: int) -> Float[Array, "n"]:
    return x**exponent


def add(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
    return x + y


def assert_close(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# -- values: every spec form equals the loop and the unchunked call ----------------------------------

SPEC_FORMS = {
    "leading": (mp, ("graph",), {}, "graph"),
    "non-leading in": (total, ("n col -> col",), {}, "col"),
    "non-leading out": (concat, ("i f, j f -> 2*f j i",), {}, "j"),
    "outer of two names": (concat, ("i f, j f -> i j 2*f",), {}, "i"),
    "inner of two names": (concat, ("i f, j f -> i j 2*f",), {}, "j"),
    "shared weight, keyword static": (linear, ("batch",), {"layouts": {"w": "feat out"}}, "batch"),
    "tuple results on other axes": (stats, ("b n -> b, n b",), {}, "b"),
    "an unmapped result": (with_shared, ("b n, n -> b n, n",), {}, "b"),
    "pytree argument and result": (tree_scale, ("b",), {}, "b"),
    "static argument": (power, ("b",), {}, "b"),
    "broadcast #graph": (add, ("#graph",), {}, "graph"),
}


@pytest.mark.parametrize("form", list(SPEC_FORMS))
def test_every_spec_form_equals_the_loop(form):
    fn, args, options, name = SPEC_FORMS[form]
    chunk = 1 + 2 * (list(SPEC_FORMS).index(form) % 2)  # slices of one (a scan over examples) or of 3, alternately
    chunked = batched(fn, *args, **options, chunk={name: chunk})
    static = {"exponent": 3} if fn is power else None
    check_batched(chunked, max_examples=6, max_size=7, allow_empty=True, static=static)


@pytest.mark.parametrize("form", list(SPEC_FORMS))
def test_every_spec_form_equals_the_unchunked_call(form):
    fn, args, options, name = SPEC_FORMS[form]
    chunked = batched(fn, *args, **options, chunk={name: 2})
    plain = batched(fn, *args, **options)
    static = {"exponent": 2} if fn is power else None

    @settings(max_examples=3, deadline=None)
    @given(inputs(plain, max_size=7, static=static))
    def same(example):
        call_args, call_kwargs = example
        assert_close(chunked(*call_args, **call_kwargs), plain(*call_args, **call_kwargs))
        jitted = jax.jit(chunked, static_argnames=("exponent",) if fn is power else ())
        assert_close(jitted(*call_args, **call_kwargs), plain(*call_args, **call_kwargs))

    same()


def test_keyword_arguments_follow_their_layouts_when_chunked():
    def shifted(x: Float[Array, "n"], *, bias: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + bias

    chunked = batched(shifted, "n b, b n -> b n", chunk={"b": 2})
    x, bias = jnp.arange(15.0).reshape(3, 5), jnp.arange(15.0).reshape(5, 3)
    assert_close(chunked(x, bias=bias), x.T + bias)
    assert_close(jax.jit(chunked)(x, bias=bias), x.T + bias)


@pytest.mark.parametrize("size", [0, 3, 4, 9])  # none, within one chunk, exactly one, a remainder
def test_sizes_the_chunk_divides_or_not_exceeds_or_zero(size):
    chunked = batched(nearest, "graph", chunk={"graph": 4})
    x = jax.random.normal(jax.random.key(size), (size, 6, 3))
    want = jax.vmap(nearest)(x)
    assert_close(chunked(x), want)
    assert_close(jax.jit(chunked)(x), want)


def test_grad_and_an_outer_vmap_through_a_chunked_function():
    chunked = batched(nearest, "graph", chunk={"graph": 3})
    x = jax.random.normal(jax.random.key(0), (2, 7, 5, 3))

    def loss(points, fn):
        return jnp.sum(fn(points) ** 2)

    assert_close(jax.grad(loss)(x[0], chunked), jax.grad(loss)(x[0], jax.vmap(nearest)))
    assert_close(jax.jit(jax.grad(loss), static_argnums=1)(x[0], chunked), jax.grad(loss)(x[0], jax.vmap(nearest)))
    assert_close(jax.vmap(chunked)(x), jnp.stack([jax.vmap(nearest)(one) for one in x]))


def test_the_decorator_form_takes_chunk():
    @batched("graph", chunk={"graph": 2})
    def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
        return a @ f

    a, f = jnp.ones((5, 3, 3)), jnp.ones((5, 3, 2))
    assert_close(message_passing(a, f), jnp.einsum("gij,gjk->gik", a, f))


def test_a_chunked_closure_roundtrips_through_cloudpickle():
    cloudpickle = pytest.importorskip("cloudpickle")
    scale = np.float32(3.0)

    def scaled(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * scale

    chunked = batched(scaled, "b", chunk={"b": 2})
    loaded = cloudpickle.loads(cloudpickle.dumps(chunked))
    x = jnp.arange(10.0).reshape(5, 2)
    assert_close(loaded(x), x * 3)
    assert "in slices of 2 examples" in loaded.__doc__


# -- the program: one scan, the memory of lax.map ----------------------------------------------------


def test_the_jaxpr_does_not_grow_with_the_number_of_slices():
    chunked = batched(nearest, "graph", chunk={"graph": 16})
    small = jax.make_jaxpr(chunked)(jax.ShapeDtypeStruct((64, 8, 3), jnp.float32))
    large = jax.make_jaxpr(chunked)(jax.ShapeDtypeStruct((4096, 8, 3), jnp.float32))
    assert "scan" in str(large)
    assert len(small.eqns) == len(large.eqns)


@pytest.mark.parametrize("chunk", [16, 64, 256])
def test_compiled_temporary_memory_is_that_of_hand_written_lax_map(chunk):
    x = jax.ShapeDtypeStruct((1024, 64, 3), jnp.float32)

    def temporary(fn):
        return jax.jit(fn).lower(x).compile().memory_analysis().temp_size_in_bytes

    hand_written = temporary(lambda points: jax.lax.map(nearest, points, batch_size=chunk))
    chunked = temporary(batched(nearest, "graph", chunk={"graph": chunk}))
    assert chunked <= 1.1 * hand_written
    assert chunked < temporary(jax.vmap(nearest)) / 2


def test_slices_of_one_example_need_the_memory_of_one_example():
    x = jax.ShapeDtypeStruct((1024, 64, 3), jnp.float32)

    def temporary(fn):
        return jax.jit(fn).lower(x).compile().memory_analysis().temp_size_in_bytes

    one_at_a_time = temporary(lambda points: jax.lax.map(nearest, points))  # a scan over the examples
    assert temporary(batched(nearest, "graph", chunk={"graph": 1})) <= 1.1 * one_at_a_time


def _counting(fn, counter):
    @functools.wraps(fn)
    def counted(*args, **kwargs):
        counter.append(1)
        return fn(*args, **kwargs)

    return counted


@pytest.mark.parametrize(("size", "traces"), [(8, 1), (3, 1), (9, 2)])
def test_the_body_is_traced_once_or_twice_with_a_remainder(size, traces):
    counter = []
    chunked = jax.jit(batched(_counting(nearest, counter), "graph", chunk={"graph": 4}))
    chunked(jnp.ones((size, 5, 3)))
    assert len(counter) == traces  # the full slices' scan, and the remainder's vmap
    chunked(jnp.ones((size, 5, 3)))
    assert len(counter) == traces


# -- refused at decoration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunk", "match"),
    [
        ({"grpah": 4}, r"concat: chunk= names 'grpah', which is not a batch dim of this function \(batch dims: i, j\)"),
        ({"i": 0}, r"concat: chunk=\{'i': \.\.\.\} must be a positive number of examples \(an int\)"),
        ({"i": -3}, r"must be a positive number of examples"),
        ({"i": True}, r"must be a positive number of examples .* got bool True"),
        ({"i": 2.0}, r"must be a positive number of examples .* got .*2.0"),
        (
            {"i": "auto"},
            r"positive number of examples \(an int\) or a shapedmap.Budget\(bytes=\.\.\.\), got str 'auto'",
        ),
        ({"i": Budget(bytes=0)}, r"concat: chunk=\{'i': Budget\(bytes=0\)\}: the budget must be a positive number"),
        ({"i": Budget(bytes=1.5)}, r"the budget must be a positive number of bytes"),
        ({"i": Budget(bytes=2**20), "j": Budget(bytes=2**20)}, r"chunk= gives memory budgets to 'i' and 'j'"),
        ({}, r"concat: chunk= must be a non-empty dict from batch name"),
        ([("i", 2)], r"chunk= must be a non-empty dict"),
    ],
)
def test_a_bad_chunk_is_a_spec_error_at_decoration(chunk, match):
    with pytest.raises(SpecError, match=match):
        batched(concat, "i f, j f -> i j 2*f", chunk=chunk)


def test_a_variadic_batch_dim_cannot_be_chunked():
    with pytest.raises(SpecError, match=r"add: chunk= names '\*batch', whose number of dims varies per call"):
        batched(add, "*batch", chunk={"batch": 4})


def test_a_batch_dim_only_the_results_have_cannot_be_chunked():
    def repeat(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x

    with pytest.raises(SpecError, match=r"repeat: chunk= names 'k', which no argument is mapped over"):
        batched(repeat, "n -> k=3 n", chunk={"k": 2})


def test_a_budget_with_shard_is_a_spec_error():
    mesh = jax.make_mesh((1,), ("data",))
    with pytest.raises(SpecError, match=r"nearest: chunk=\{'graph': Budget\(\.\.\.\)\} with shard="):
        batched(nearest, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": Budget(bytes=2**20)})


# -- collectives over a chunked name --------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("collective", ["psum", "axis_index"])
def test_a_collective_over_a_chunked_name_is_a_spec_error(collective, jit):
    def centred(x: Float[Array, "n"]) -> Float[Array, "n"]:
        if collective == "psum":
            return x - jax.lax.psum(x, "graph")
        return x + jax.lax.axis_index("graph")

    chunked = batched(centred, "graph", chunk={"graph": 2})
    call = jax.jit(chunked) if jit else chunked
    for size in (2, 5):  # one slice or several: the name is never bound
        with pytest.raises(SpecError, match=r"centred: the body uses an axis name that is not bound") as raised:
            call(jnp.ones((size, 3)))
        message = str(raised.value)
        assert "'graph' run in slices (chunk={'graph': 2})" in message
        assert "Drop them from chunk=" in message


def test_a_collective_over_an_unchunked_name_still_works_beside_a_chunked_one():
    def centred(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
        both = jnp.concatenate([u, v])
        return both - jax.lax.pmean(both, "i")

    chunked = batched(centred, "i f, j f -> i j 2*f", chunk={"j": 2})
    plain = batched(centred, "i f, j f -> i j 2*f")
    u, v = jax.random.normal(jax.random.key(0), (3, 4)), jax.random.normal(jax.random.key(1), (5, 4))
    assert_close(chunked(u, v), plain(u, v))


def test_a_python_name_error_in_the_body_stays_a_name_error():
    def broken(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + undefined_name

    with pytest.raises(NameError, match="undefined_name") as raised:
        batched(broken, "graph", chunk={"graph": 2})(jnp.ones((5, 3)))
    assert not isinstance(raised.value, SpecError)


# -- what the tools show --------------------------------------------------------------------------------


def run_explained(fn, *args):
    text = explain(fn, *args)
    inner = fn.fn
    namespace = {inner.__name__: inner}
    exec(compile(text, "<explain>", "exec"), namespace)
    (definition,) = [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]
    return text, namespace[definition](*args)


def _normal(*shape):
    return jax.random.normal(jax.random.key(sum(shape)), shape)


# Arguments that give the chunked name size 5: two slices of 2 and a remainder of 1.
EXPLAINED = {
    "leading": (_normal(5, 3, 3), _normal(5, 3, 2)),
    "non-leading in": (_normal(3, 5),),
    "non-leading out": (_normal(3, 4), _normal(5, 4)),
    "outer of two names": (_normal(5, 4), _normal(3, 4)),
    "inner of two names": (_normal(3, 4), _normal(5, 4)),
    "shared weight, keyword static": (_normal(5, 4), _normal(4, 2)),
    "tuple results on other axes": (_normal(5, 3),),
    "an unmapped result": (_normal(5, 3), _normal(3)),
    "pytree argument and result": ({"a": _normal(5, 3), "b": [_normal(5, 3)]}, _normal(5, 3)),
    "broadcast #graph": (_normal(5, 3), _normal(1, 3)),
}


@pytest.mark.parametrize("form", list(EXPLAINED))
def test_explain_writes_lax_map_and_computes_what_the_call_computes(form):
    fn, args, options, name = SPEC_FORMS[form]
    chunked = batched(fn, *args, **options, chunk={name: 2})
    text, got = run_explained(chunked, *EXPLAINED[form])
    assert_close(got, chunked(*EXPLAINED[form]))
    assert "jax.lax.map(" in text and "batch_size=2" in text
    assert f'axis_name="{name}"' not in text


def test_explain_of_a_batch_within_one_chunk_is_one_vmap_without_its_axis_name():
    chunked = batched(mp, "graph", chunk={"graph": 16})
    a, f = jnp.ones((13, 7, 7)), jnp.ones((13, 7, 11))
    text, got = run_explained(chunked, a, f)
    assert_close(got, chunked(a, f))
    assert "lax.map" not in text and "axis_name" not in text
    assert "graph = 13, at most one slice of 16: one vmap, no axis name" in text


def test_describe_and_the_shapes_section_report_the_chunk():
    chunked = batched(mp, "graph", chunk={"graph": 1024})
    (dim,) = describe(chunked).batch_dims
    assert (dim.chunk, dim.chunk_budget, dim.axis_name) == (1024, None, None)
    assert describe(chunked).to_dict()["batch_dims"][0]["chunk"] == 1024
    assert "`graph` runs in slices of 1024 examples" in describe(chunked).to_markdown()
    assert chunked.__doc__.endswith(
        "- vmap over ``graph``: ``in_axes=(0, 0), out_axes=0``; in slices of 1024 examples, "
        "one ``jax.lax.map`` step each; not an axis name"
    )
    budgeted = batched(mp, "graph", chunk={"graph": Budget(bytes=2**30)})
    (dim,) = describe(budgeted).batch_dims
    assert (dim.chunk, dim.chunk_budget) == (None, 2**30)
    assert "as many examples as fit a budget of 1073741824 bytes" in budgeted.__doc__


# -- Budget: the largest power of two whose compiled temporary memory fits -------------------------------


def _temporary(fn, *args):
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def _chosen_chunk(fn, *args):
    found = re.findall(r"batch_size=(\d+)", explain(fn, *args))
    return int(found[0]) if found else None


@pytest.mark.parametrize("size", [256, 200])
def test_a_budget_picks_the_largest_power_of_two_that_fits(size):
    x = jax.random.normal(jax.random.key(0), (size, 32, 3))
    budget = _temporary(batched(nearest, "graph", chunk={"graph": 16}), x) * 3  # between 32 and 64 examples
    fn = batched(nearest, "graph", chunk={"graph": Budget(bytes=budget)})
    assert_close(fn(x), jax.vmap(nearest)(x))
    chunk = _chosen_chunk(fn, x)
    assert chunk is not None and chunk & (chunk - 1) == 0
    assert _temporary(batched(nearest, "graph", chunk={"graph": chunk}), x) <= budget
    assert _temporary(batched(nearest, "graph", chunk={"graph": 2 * chunk}), x) > budget
    assert _temporary(fn, x) == _temporary(batched(nearest, "graph", chunk={"graph": chunk}), x)


def test_a_budget_the_whole_batch_fits_is_one_vmap():
    x = jnp.ones((64, 8, 3))
    fn = batched(nearest, "graph", chunk={"graph": Budget(bytes=2**30)})
    assert _chosen_chunk(fn, x) is None  # no lax.map: one vmap
    assert_close(jax.jit(fn)(x), jax.vmap(nearest)(x))


def test_a_budget_is_searched_once_per_abstract_signature():
    counter = []
    fn = batched(_counting(nearest, counter), "graph", chunk={"graph": Budget(bytes=2**16)})
    x = jnp.ones((128, 16, 3))
    fn(x)
    first = len(counter)
    fn(x)
    again = len(counter) - first
    assert again == 1  # the call itself, traced once: the search is remembered
    assert first > again  # the search compiled the call at a few chunks
    fn(jnp.ones((96, 16, 3)))  # a new shape: searched again
    assert len(counter) - first - again > 1


def test_a_budget_that_one_example_cannot_meet_is_a_named_error():
    fn = batched(nearest, "graph", chunk={"graph": Budget(bytes=64)})
    with pytest.raises(SpecError, match=r"nearest: chunk=\{'graph': Budget\(bytes=64\)\} cannot be met") as raised:
        fn(jnp.ones((32, 64, 3)))
    assert "(size 32) one example at a time still needs" in str(raised.value)


def test_a_budget_under_jit_and_with_statics_and_keywords():
    def scaled_nearest(x: Float[Array, "p d"], *, power: int = 1) -> Float[Array, "p"]:
        return nearest(x) ** power

    fn = batched(scaled_nearest, "graph", chunk={"graph": Budget(bytes=2**18)})
    x = jax.random.normal(jax.random.key(1), (100, 16, 3))
    want = jax.vmap(nearest)(x) ** 2
    assert_close(fn(x, power=2), want)
    assert_close(jax.jit(functools.partial(fn, power=2))(x), want)


def test_an_outer_transforms_axis_name_works_in_slices_but_cannot_be_measured():
    def centred(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x - jax.lax.pmean(x, "outer")

    x = jax.random.normal(jax.random.key(2), (3, 5, 4))
    want = jax.vmap(batched(centred, "b"), axis_name="outer")(x)
    in_slices = batched(centred, "b", chunk={"b": 2})
    assert_close(jax.vmap(in_slices, axis_name="outer")(x), want)
    budgeted = batched(centred, "b", chunk={"b": Budget(bytes=2**20)})
    with pytest.raises(SpecError, match=r"centred: chunk=\{'b': Budget\(bytes=1048576\)\} cannot be measured"):
        jax.vmap(budgeted, axis_name="outer")(x)


def test_explain_of_a_sharded_chunked_function_says_each_device_maps_its_shard():
    mesh = jax.make_mesh((1,), ("data",))
    chunked = batched(mp, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": 2})
    a, f = _normal(5, 3, 3), _normal(5, 3, 2)
    text, got = run_explained(chunked, a, f)
    assert_close(got, chunked(a, f))
    assert "in slices of 2; with shard=, each device maps its own shard in these slices" in text


def test_chunks_with_the_checks_off():
    x = _normal(9, 6, 3)
    unchecked = batched(nearest, "graph", chunk={"graph": 4}, check=False)
    assert_close(unchecked(x), jax.vmap(nearest)(x))
    assert_close(unchecked(np.asarray(x)), jax.vmap(nearest)(x))  # NumPy arrays are not converted first


# -- what the slices need of a call, checked even with check=False ------------------------------


def centred_over_g(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return x - jax.lax.pmean(x, "g")


CENTRED_MESSAGE = (
    r"centred_over_g: the batch dim 'g' runs in slices \(chunk=\{'g': 2\}\), so it binds no axis name, but a "
    r"transform around this call binds an axis named 'g' .* Rename the batch dim or the outer axis, or drop 'g' "
    r"from chunk="
)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("outer", ["jax.vmap", "batched", "shard_map"])
def test_an_outer_axis_of_the_chunked_name_is_a_spec_error_before_the_body_runs(outer, jit):
    # Was silent: the chunked level binds no name, so the body's pmean over 'g' used the outer axis 'g', silently.
    runs = []
    chunked = batched(_counting(centred_over_g, runs), "g", chunk={"g": 2})
    x = jnp.arange(24.0).reshape(2, 4, 3)
    if outer == "jax.vmap":
        call = jax.vmap(chunked, axis_name="g")
    elif outer == "batched":

        def per_group(x: Float[Array, "m n"]) -> Float[Array, "m n"]:
            return chunked(x)

        call = batched(per_group, "g")
    else:
        mesh = jax.make_mesh((1,), ("g",))
        call = jax.shard_map(jax.vmap(chunked), mesh=mesh, in_specs=jax.P(), out_specs=jax.P())
    with pytest.raises(SpecError, match=CENTRED_MESSAGE):
        (jax.jit(call) if jit else call)(x)
    assert runs == []  # found before the body ran: no extra run


def test_an_outer_axis_of_another_name_still_reaches_the_slices():
    chunked = batched(centred_over_g, "b", chunk={"b": 2})
    x = jax.random.normal(jax.random.key(3), (2, 5, 3))
    want = jax.vmap(jax.vmap(centred_over_g), axis_name="g")(x)
    assert_close(jax.vmap(chunked, axis_name="g")(x), want)
    assert_close(jax.jit(jax.vmap(chunked, axis_name="g"))(x), want)


ADD_SIZES = (
    r"add: the batch dim 'b' has size 5 in argument 'x' \(axis 0 of f32\[5,3\]\) but size 6 in argument 'y' "
    r"\(axis 0 of f32\[6,3\]\); chunk=\{'b': 2\} slices every argument mapped over it alike, so their sizes must "
    r"agree \(checked even with check=False"
)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("check", [False, True])
def test_arguments_of_different_sizes_are_refused_even_with_the_checks_off(check, jit):
    # Was silent: with check=False the slices took the first argument's size: a (5, 3) result, the sixth example dropped.
    chunked = batched(add, "b", check=check, chunk={"b": 2})
    call = jax.jit(chunked) if jit else chunked
    with pytest.raises(ShapeError, match=ADD_SIZES if not check else r"add: dimension 'b' has size 5"):
        call(jnp.ones((5, 3)), jnp.ones((6, 3)))


@pytest.mark.parametrize("jit", [False, True])
def test_pytree_leaves_of_different_sizes_are_refused_with_the_checks_off(jit):
    chunked = batched(tree_scale, "b n, b n -> b n", check=False, chunk={"b": 2})
    call = jax.jit(chunked) if jit else chunked
    params = {"u": jnp.ones((4, 3)), "v": jnp.ones((3, 3))}
    with pytest.raises(ShapeError, match=r"tree_scale: the batch dim 'b' has size 4 in argument 'params' at \['u'\]"):
        call(params, jnp.ones((4, 3)))


def test_a_chunked_inner_batch_dim_names_the_axis_of_the_whole_argument():
    def pair(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "f"]:
        return u + v

    chunked = batched(pair, "i j f, i j f -> i j f", check=False, chunk={"j": 2})
    with pytest.raises(ShapeError, match=r"'j' has size 5 in argument 'u' \(axis 1 of f32\[3,5,2\]\) but size 4"):
        chunked(jnp.ones((3, 5, 2)), jnp.ones((3, 4, 2)))


def test_a_varying_unmapped_result_of_a_chunked_name_is_told_to_reduce_outside():
    # The advice was jax.lax.psum(x, 'b'), which chunk= refuses.
    def leaky(x: Float[Array, "n"]) -> tuple[Float[Array, "n"], Float[Array, "n"]]:
        return x, 2 * x  # the second varies over the batch

    chunked = batched(leaky, "b n -> b n, n", chunk={"b": 2})
    with pytest.raises(ShapeError) as raised:
        chunked(jnp.ones((5, 3)))
    message = str(raised.value)
    assert "result 1 varies over the batch dim 'b'" in message
    assert "Add 'b' to the output layout and reduce over it outside the batched function" in message
    assert "psum" not in message.replace("so no psum", "")
    with pytest.raises(ShapeError, match=r"or reduce over it inside \(e\.g\. jax\.lax\.psum\(x, 'b'\)\)"):
        batched(leaky, "b n -> b n, n")(jnp.ones((5, 3)))


# -- memory, with axes not leading, a remainder, and symbolic sizes -------------------------------


def test_a_non_leading_batch_axis_needs_the_memory_of_the_written_out_program():
    # Was 1.73x the temporary memory of lax.map over jnp.moveaxis(x, 2, 0), the program explain() writes.
    x = jax.ShapeDtypeStruct((64, 3, 4096), jnp.float32)
    chunked = _temporary(batched(nearest, "p d g -> p g", chunk={"g": 64}), x)
    written_out = _temporary(
        lambda x: jnp.moveaxis(jax.lax.map(nearest, jnp.moveaxis(x, 2, 0), batch_size=64), 0, 1), x
    )
    assert chunked <= 1.1 * written_out


def test_a_remainder_does_not_copy_the_batch():
    # jax.lax.map(batch_size=) copies the examples of the full slices (3.5 MB at 4100, 51 MB at 65540);
    # slices cut from the arguments as they are keep one slice's memory whatever the batch.
    def temporary(size):
        return _temporary(
            batched(nearest, "graph", chunk={"graph": 16}), jax.ShapeDtypeStruct((size, 64, 3), jnp.float32)
        )

    assert temporary(65540) <= 1.1 * temporary(4100)
    assert temporary(4100) < 2 * temporary(4096)


def _exported(fn, *specs):
    from jax import export

    scope = export.SymbolicScope()
    return export.export(jax.jit(fn))(
        *(jax.ShapeDtypeStruct(export.symbolic_shape(spec, scope=scope), jnp.float32) for spec in specs)
    )


@pytest.mark.parametrize("form", ["leading", "non-leading in", "an unmapped result"])
def test_a_fixed_chunk_exports_with_a_symbolic_batch_size(form):
    # Was a bare InconclusiveDimensionOperation ('b' <= '3').
    fn, args, options, name = SPEC_FORMS[form]
    chunked = batched(fn, *args, **options, chunk={name: 4})
    plain = batched(fn, *args, **options)
    specs = {"leading": ("b, n, n", "b, n, 2"), "non-leading in": ("n, b",), "an unmapped result": ("b, n", "n")}
    exported = _exported(chunked, *specs[form])
    assert "b" in str(exported.out_avals)
    for size in (1, 3, 4, 9):  # within one slice, exactly one, slices and a remainder
        concrete = {
            "leading": (_normal(size, 3, 3), _normal(size, 3, 2)),
            "non-leading in": (_normal(5, size),),
            "an unmapped result": (_normal(size, 5), _normal(5)),
        }[form]
        assert_close(exported.call(*concrete), plain(*concrete))


def test_a_gradient_through_a_symbolic_chunk_exports():
    chunked = batched(nearest, "graph", chunk={"graph": 4})

    def loss(x):
        return jnp.sum(chunked(x) ** 2)

    exported = _exported(jax.grad(loss), "b, 6, 3")
    x = _normal(9, 6, 3)
    assert_close(exported.call(x), jax.grad(lambda x: jnp.sum(jax.vmap(nearest)(x) ** 2))(x))


def test_a_budget_on_symbolic_shapes_is_a_spec_error_that_says_so():
    # It blamed the axis name of a transform around the call, which there was none of.
    budgeted = batched(nearest, "graph", chunk={"graph": Budget(bytes=2**20)})
    with pytest.raises(SpecError) as raised:
        _exported(budgeted, "b, p, 3")
    message = str(raised.value)
    assert message.startswith(
        "nearest: chunk={'graph': Budget(bytes=1048576)} cannot be measured on symbolic shapes (an argument of "
        "shape (b, p, 3))"
    )
    assert "Give the chunk as a number of examples" in message
    assert "axis_name" not in message


# -- Budget, its key, its search, one example -------------------------------------------------------


def widen(x: Float[Array, "d"], config: dict) -> Float[Array, ""]:
    """Temporary memory grows with config["copies"]: a static value the chunk must be chosen for."""
    t = jnp.tile(x, config["copies"])
    return jnp.sort(jnp.outer(t, t), -1)[:, -1].sum()


def widen_by(x: Float[Array, "d"], copies: int) -> Float[Array, ""]:
    return widen(x, {"copies": -copies})


def widen_read(x: Float[Array, "d"], config: dict) -> Float[Array, ""]:
    """The number of copies is a NumPy array read as a size: its value changes the program."""
    return widen(x, {"copies": int(config["copies"])})


class Widener:
    """A plain object (not a PyTree) whose state changes the program: held static, keyed by identity."""

    def __init__(self, copies):
        self.copies = copies

    def __call__(self, x: Float[Array, "d"]) -> Float[Array, ""]:
        return widen(x, {"copies": self.copies})


def widen_with(x: Float[Array, "d"], widener: Widener) -> Float[Array, ""]:
    return widener(x)


def _fits(fn, budget, x, static):
    """The chunk the budget chose for this call, and whether that chunk's compiled call fits the budget."""
    chunk = _chosen_chunk(fn, x, static) or x.shape[0]
    fixed = batched(fn.fn, "b", chunk={"b": chunk})
    return chunk, _temporary(lambda x: fixed(x, static), x) <= budget


BUDGET = 2**16
X_WIDE = jnp.ones((256, 8))


@pytest.mark.parametrize("kind", ["dict", "colliding hashes", "object", "numpy array read as a size"])
def test_a_budget_is_chosen_for_each_static_value(kind):
    # The chunk was remembered per type of an unhashable static value and per hash of a hashable one
    # (hash(-1) == hash(-2)): the second call reused the first's chunk, 65x over its budget.
    fn, small, large = {
        "dict": (widen, {"copies": 1}, {"copies": 8}),
        "colliding hashes": (widen_by, -1, -2),
        "object": (widen_with, Widener(1), Widener(8)),
        "numpy array read as a size": (widen_read, {"copies": np.array(1)}, {"copies": np.array(8)}),
    }[kind]
    budgeted = batched(fn, "b", chunk={"b": Budget(bytes=BUDGET)})
    budgeted(X_WIDE, small)  # remembers the chunk for the small program
    small_chunk, _ = _fits(budgeted, BUDGET, X_WIDE, small)
    large_chunk, fits = _fits(budgeted, BUDGET, X_WIDE, large)
    assert fits and large_chunk < small_chunk
    jitted = jax.jit(lambda x: budgeted(x, large))  # under jit: the compiled call meets the budget
    assert _temporary(jitted, X_WIDE) <= BUDGET
    assert_close(budgeted(X_WIDE, large), jax.vmap(lambda x: fn(x, large))(X_WIDE))


def test_a_budgeted_call_keeps_no_static_object_alive():
    import gc
    import weakref

    budgeted = batched(widen_with, "b", chunk={"b": Budget(bytes=BUDGET)})
    widener = Widener(2)
    budgeted(X_WIDE, widener)
    alive = weakref.ref(widener)
    del widener
    gc.collect()
    assert alive() is None


def test_a_bound_method_or_partial_made_at_each_call_is_settled_once():
    """``m.act`` is a new bound method at each access: keyed by its object and function, not by itself."""

    def apply(x: Float[Array, "d"], act: Any) -> Float[Array, ""]:
        return act(widen(x, {"copies": 2}))

    class Model:
        def act(self, y):
            return y + 1.0

    runs = []
    budgeted = batched(_counting(apply, runs), "b", chunk={"b": Budget(bytes=BUDGET)})
    model = Model()
    for make in (lambda: model.act, lambda: functools.partial(jnp.add, 1.0)):  # a new object at each call
        budgeted(X_WIDE, make())  # the search, then the call: several traces
        searched = len(runs)
        budgeted(X_WIDE, make())
        assert len(runs) - searched == 1  # the call alone: the chunk was remembered


def test_a_static_value_that_cannot_be_keyed_is_settled_on_every_call():
    class Unhashable:
        __hash__ = None

        def __init__(self, copies):
            self.copies = copies

    def fn(x: Float[Array, "d"], holder: Unhashable) -> Float[Array, ""]:
        return widen(x, {"copies": holder.copies})

    runs = []
    budgeted = batched(_counting(fn, runs), "b", chunk={"b": Budget(bytes=BUDGET)})
    budgeted(X_WIDE, Unhashable(1))
    first = len(runs)
    budgeted(X_WIDE, Unhashable(1))
    assert len(runs) - first > 1  # searched again: the search's compilations trace the body


def pairwise_nearest(x: Float[Array, "p d"]) -> Float[Array, "p"]:
    distances = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    return jnp.sort(distances, axis=-1)[:, 1]


def test_a_budget_finds_the_largest_power_of_two_that_fits_when_memory_does_not_grow_with_the_chunk():
    # XLA's temporary memory for (100, 4, 64) pairwise distances is not monotone in the chunk (2 needs
    # more than 4); the bisection took 2's failure for 4's and chose 1.
    x = jax.random.normal(jax.random.key(5), (100, 4, 64))

    def temporary(chunk):
        return _temporary(batched(pairwise_nearest, "g", chunk={"g": chunk}), x)

    if not temporary(2) > temporary(4):  # XLA of this JAX version is monotone here: the search's own test holds
        pytest.skip("this XLA's temporary memory grows with the chunk for this function")
    budget = max(temporary(4), temporary(1))
    assert temporary(2) > budget and temporary(100) > budget
    fn = batched(pairwise_nearest, "g", chunk={"g": Budget(bytes=budget)})
    chosen = _chosen_chunk(fn, x)
    assert chosen == max(k for k in (1, 2, 4, 8, 16, 32, 64) if temporary(k) <= budget) == 4
    assert _temporary(fn, x) <= budget
    assert_close(fn(x), jax.vmap(pairwise_nearest)(x))


@pytest.mark.parametrize(
    ("needs", "chosen"),
    [
        ({100: 6400, 64: 10136, 32: 10136, 16: 10136, 8: 10136, 4: 4504, 2: 8600, 1: 4376}, 4),  # not monotone
        ({100: 9000, 64: 6400, 32: 3200, 16: 1600, 8: 800, 4: 400, 2: 200, 1: 100}, 32),  # grows with the chunk
        ({100: 90, 64: 640}, 100),  # the whole batch fits
    ],
    ids=["not monotone", "monotone", "whole batch"],
)
def test_the_budget_search_takes_the_largest_power_of_two_that_fits_whatever_the_memory_curve(needs, chosen):
    """The search on its own, against a memory curve given by hand (what XLA gives varies by version)."""
    from shapedmap._budget import settled
    from shapedmap._levels import Level, VmapNest
    from shapedmap._plan import plan_of

    plan = plan_of(batched(pairwise_nearest, "g"))
    nest = VmapNest((Level("g", None, (0,), (0,), chunk=Budget(bytes=5000)),), ())
    compiled = []

    def trace(candidate):
        chunk = candidate.levels[0].chunk
        compiled.append(chunk)
        analysis = types.SimpleNamespace(temp_size_in_bytes=needs[chunk])
        program = types.SimpleNamespace(memory_analysis=lambda: analysis)
        return types.SimpleNamespace(lower=lambda: types.SimpleNamespace(compile=lambda: program))

    assert settled(plan, nest, [jax.ShapeDtypeStruct((100, 4, 64), jnp.float32)], trace).levels[0].chunk == chosen
    assert compiled == [100, 64, 32, 16, 8, 4, 2, 1][: compiled.index(chosen) + 1]  # from the largest down


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("size", [1, 2])
def test_a_budget_one_example_cannot_meet_is_a_spec_error_for_one_example_too(size, jit):
    # Was a SpecError for 2 examples, silently ignored for 1.
    fn = batched(nearest, "graph", chunk={"graph": Budget(bytes=64)})
    call = jax.jit(fn) if jit else fn
    with pytest.raises(
        SpecError, match=rf"nearest: chunk=\{{'graph': Budget\(bytes=64\)\}} cannot be met: .*\(size {size}\)"
    ):
        call(jnp.ones((size, 64, 3)))


def test_an_empty_batch_runs_nothing_and_meets_any_budget():
    runs = []
    fn = batched(_counting(nearest, runs), "graph", chunk={"graph": Budget(bytes=64)})
    out = fn(jnp.ones((0, 64, 3)))
    assert out.shape == (0, 64)
    assert len(runs) == 1  # the call's own trace: nothing compiled to measure
