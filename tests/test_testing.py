"""shapedmap.testing: the inputs() strategy and the check_batched() property.

The strategy's draws are checked against layouts written out by hand here and read by a
small independent checker (``assert_fits``), and by calling the batched function with its
checks on. ``check_batched`` must pass on correct functions and fail, with a report, on a
function whose output contradicts its annotation and on one whose batched call differs
from its loop.
"""

import inspect
import itertools
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Bool, Complex, Float, Float32, Int, Key, Num, PyTree, Shaped

import shapedmap.testing._loop
from shapedmap import batched
from shapedmap.examples import message_passing
from shapedmap.testing import BatchedCheckError, check_batched, inputs

# -- an independent layout checker --------------------------------------------------------------


def assert_fits(layouts: dict[str, str], example: tuple[tuple[Any, ...], dict[str, Any]], fn: Any) -> None:
    """Every array of the call fits its layout: sizes agree by name, '#n' may be 1, '*b' broadcasts,
    '_', '...' and '?n' (per leaf) take any size.

    Written without shapedmap: layouts are plain strings, parsed here by splitting on spaces.
    """
    bound = inspect.signature(fn).bind(*example[0], **example[1])
    sizes: dict[str, int] = {}
    variadic: dict[str, list[tuple[int, ...]]] = {}
    expressions: list[tuple[str, int]] = []
    for parameter, layout in layouts.items():
        value = bound.arguments.get(parameter)
        if value is None:
            continue
        tokens = layout.split()
        for leaf in jax.tree_util.tree_leaves(value):
            shape = tuple(leaf.shape)
            stars = [i for i, token in enumerate(tokens) if token.startswith("*") or token == "..."]
            if stars:
                star, after = stars[0], len(tokens) - stars[0] - 1
                assert len(shape) >= len(tokens) - 1, (parameter, shape, layout)
                parts = [*shape[:star], shape[star : len(shape) - after], *shape[len(shape) - after :]]
            else:
                assert len(shape) == len(tokens), (parameter, shape, layout)
                parts = list(shape)
            for token, size in zip(tokens, parts, strict=True):
                if token in ("_", "...") or token.startswith("?"):
                    continue  # any size (per leaf for '?n')
                if token.startswith("*"):
                    variadic.setdefault(token[1:], []).append(size)
                elif token.isdigit():
                    assert size == int(token), (parameter, shape, layout)
                elif token.startswith("#"):
                    if size != 1:
                        assert sizes.setdefault(token[1:], size) == size, (parameter, shape, layout, sizes)
                elif not token.isidentifier():
                    expressions.append((token, size))
                else:
                    assert sizes.setdefault(token, size) == size, (parameter, shape, layout, sizes)
    for expression, size in expressions:
        assert eval(expression, {}, dict(sizes)) == size, (expression, size, sizes)
    for shapes in variadic.values():
        np.broadcast_shapes(*shapes)  # raises if they do not broadcast


def arguments(fn: Any, example: tuple[tuple[Any, ...], dict[str, Any]]) -> dict[str, Any]:
    """The drawn arguments by parameter name (positional or keyword alike)."""
    return dict(inspect.signature(fn).bind(*example[0], **example[1]).arguments)


def call(fn: Any, example: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
    args, kwargs = example
    return fn(*args, **kwargs)


# -- batched functions covering the grammar ------------------------------------------------------


def matmat(a: Float[Array, "n m"], b: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return a @ b


vectorized_matmat = batched(matmat, "*batch")


def linear(x: Float[Array, "n"], w: Float[Array, "n"]) -> Float[Array, ""]:
    return x @ w


shared_linear = batched(linear, "graph", layouts={"w": "#graph n"})


def mixed(
    x: Int[Array, "n"], mask: Bool[Array, "n"], z: Complex[Array, "n"], key: Key[Array, ""], f: Float32[Array, "n"]
) -> Float32[Array, "n"]:
    noise = jax.random.normal(key, f.shape)
    return jnp.where(mask, x.astype(jnp.float32), f) + jnp.abs(z) + noise


batch_mixed = batched(mixed, "b")


def power(x: Float[Array, "n"], exponent: int, scale: float = 2.0) -> Float[Array, "n"]:
    return scale * x**exponent


batch_power = batched(power, "b")


def masked_sum(x: Float[Array, "n"], mask: Bool[Array, "n"] | None = None) -> Float[Array, ""]:
    return x.sum() if mask is None else jnp.where(mask, x, 0.0).sum()


batch_masked_sum = batched(masked_sum, "b")


def tree_total(tree: PyTree[Float[Array, "n"]]) -> Float[Array, ""]:
    return sum((leaf.sum() for leaf in jax.tree_util.tree_leaves(tree)), start=jnp.float32(0))


batch_tree_total = batched(tree_total, "b")


def dict_scale(params: dict[str, Float[Array, "n"]], x: Float[Array, "n"]) -> Float[Array, "n"]:
    return sum((value * x for value in params.values()), start=jnp.zeros_like(x))


batch_dict_scale = batched(dict_scale, "b", layouts={"params": "n"})


def pad_concat(x: Float[Array, "n"], y: Float[Array, "n+1"]) -> Float[Array, "2*n+1"]:
    return jnp.concatenate([x, y])


batch_pad_concat = batched(pad_concat, "b")


def cross(u: Float[Array, "3"], v: Float[Array, "3"]) -> Float[Array, "3"]:
    return jnp.cross(u, v)


batch_cross = batched(cross, "b")


def keyword_only(x: Float[Array, "n"], *, y: Float[Array, "n"]) -> Float[Array, "n"]:
    return x - y


batch_keyword_only = batched(keyword_only, "b")


def trace(m: Float[Array, "n n"]) -> Float[Array, ""]:
    return jnp.trace(m)


graph_time_trace = batched(trace, "graph time")


def norm(x: Float[Array, "*rest"]) -> Float[Array, ""]:
    return jnp.sqrt(jnp.sum(x**2))


batch_norm = batched(norm, "b")


def split_sum(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
    return x.sum(), x - x.mean()


batch_split_sum = batched(split_sum, "n col -> col, n col")


def any_dtype(x: Shaped[Array, "n"], y: Num[Array, "n"]) -> Shaped[Array, "n"]:
    return x + y.real.astype(x.dtype) if x.dtype != jnp.bool_ else x


batch_any_dtype = batched(any_dtype, "b")


def per_leaf(tree: PyTree[Float[Array, "?n"], "S"]) -> Float[Array, ""]:
    return sum((leaf.sum() for leaf in jax.tree_util.tree_leaves(tree)), start=jnp.float32(0))


batch_per_leaf = batched(per_leaf, "b")


def add_trees(x: PyTree[Float[Array, "n"], "T"], y: PyTree[Float[Array, "n"], "T"]) -> PyTree[Float[Array, "n"], "T"]:
    return jax.tree_util.tree_map(jnp.add, x, y)


batch_add_trees = batched(add_trees, "b")


def add_all(*xs: Float[Array, "n"], **named: Float[Array, "n"]) -> Float[Array, "n"]:
    return sum(xs, start=jnp.float32(0)) + sum(named.values(), start=jnp.float32(0))


batch_add_all = batched(add_all, "b")


def anonymous(x: Float[Array, "_ ..."], y: Float[Array, "m"]) -> Float[Array, ""]:
    return x.sum() * y.sum()


batch_anonymous = batched(anonymous, "b")

# Each function with its batched layouts, written out by hand for ``assert_fits``.
CASES = [
    (message_passing, {"a": "graph node node", "f": "graph node feat"}),
    (vectorized_matmat, {"a": "*batch n m", "b": "*batch m k"}),
    (shared_linear, {"x": "graph n", "w": "#graph n"}),
    (batch_mixed, {"x": "b n", "mask": "b n", "z": "b n", "key": "b", "f": "b n"}),
    (batch_power, {"x": "b n"}),
    (batch_masked_sum, {"x": "b n", "mask": "b n"}),
    (batch_tree_total, {"tree": "b n"}),
    (batch_dict_scale, {"params": "n", "x": "b n"}),
    (batch_pad_concat, {"x": "b n", "y": "b n+1"}),
    (batch_cross, {"u": "b 3", "v": "b 3"}),
    (batch_keyword_only, {"x": "b n", "y": "b n"}),
    (graph_time_trace, {"m": "graph time n n"}),
    (batch_norm, {"x": "b *rest"}),
    (batch_split_sum, {"x": "n col"}),
    (batch_any_dtype, {"x": "b n", "y": "b n"}),
    (batch_per_leaf, {"tree": "b ?n"}),
    (batch_add_trees, {"x": "b n", "y": "b n"}),
    (batch_add_all, {"xs": "b n", "named": "b n"}),
    (batch_anonymous, {"x": "b _ ...", "y": "b m"}),
]
STATIC = {batch_power: {"exponent": st.integers(1, 3)}}
IDS = [fn.__name__ for fn, _ in CASES]


@pytest.mark.parametrize(("fn", "layouts"), CASES, ids=IDS)
@settings(max_examples=15)
@given(data=st.data())
def test_draws_fit_the_layouts(fn, layouts, data):
    example = data.draw(inputs(fn, static=STATIC.get(fn)))
    assert_fits(layouts, example, fn)
    call(fn, example)  # the function's own checks (on) accept the arguments


@pytest.mark.parametrize(("fn", "layouts"), CASES, ids=IDS)
def test_check_batched_passes_on_correct_functions(fn, layouts):
    check_batched(fn, max_examples=8, max_size=3, static=STATIC.get(fn))


# -- what the strategy draws -------------------------------------------------------------------


def shape_of(fn, example, name):
    value = arguments(fn, example).get(name)
    return None if value is None else value.shape


def test_shrinks_to_size_one_and_positional():
    minimal = find(inputs(message_passing), lambda example: True)
    assert [a.shape for a in minimal[0]] == [(1, 1, 1), (1, 1, 1)]
    assert minimal[1] == {}


def test_fixed_sizes_and_strategies_are_honoured():
    @settings(max_examples=20)
    @given(inputs(message_passing, feat=3, node=st.integers(2, 3)))
    def check(example):
        assert shape_of(message_passing, example, "f")[2] == 3
        assert shape_of(message_passing, example, "a")[1] in (2, 3)

    check()


def test_sizes_never_zero_unless_allowed():
    @settings(max_examples=30)
    @given(inputs(message_passing))
    def never_empty(example):
        assert 0 not in shape_of(message_passing, example, "a") + shape_of(message_passing, example, "f")

    never_empty()
    empty = find(inputs(message_passing, allow_empty=True), lambda ex: shape_of(message_passing, ex, "a")[0] == 0)
    assert shape_of(message_passing, empty, "a") == (0, 1, 1)  # only batch dims are drawn empty


def test_star_batch_is_drawn_broadcastable():
    strategy = inputs(vectorized_matmat)

    def batch_shapes(example):
        return shape_of(vectorized_matmat, example, "a")[:-2], shape_of(vectorized_matmat, example, "b")[:-2]

    fewer = find(strategy, lambda ex: len(batch_shapes(ex)[0]) < len(batch_shapes(ex)[1]))
    assert batch_shapes(fewer) == ((), (1,))  # a missing leading dim
    ones = find(strategy, lambda ex: batch_shapes(ex)[0][-1:] == (1,) and batch_shapes(ex)[1][-1:] == (2,))
    assert batch_shapes(ones) == ((1,), (2,))  # a size-1 dim against a size-2 one


def test_hash_batch_dims_are_sometimes_one():
    strategy = inputs(shared_linear)
    broadcast = find(
        strategy, lambda ex: shape_of(shared_linear, ex, "w")[0] == 1 < shape_of(shared_linear, ex, "x")[0]
    )
    assert shape_of(shared_linear, broadcast, "x") == (2, 1)
    mapped = find(strategy, lambda ex: shape_of(shared_linear, ex, "w")[0] > 1)
    assert shape_of(shared_linear, mapped, "w") == shape_of(shared_linear, mapped, "x")


def test_dtypes_follow_the_annotations():
    @settings(max_examples=10)
    @given(inputs(batch_mixed))
    def check(example):
        values = arguments(batch_mixed, example)
        assert values["x"].dtype == jnp.int32
        assert values["mask"].dtype == jnp.bool_
        assert values["z"].dtype == jnp.complex64
        assert jax.dtypes.issubdtype(values["key"].dtype, jax.dtypes.prng_key)
        assert values["f"].dtype == jnp.float32
        assert np.isfinite(np.asarray(values["f"])).all()

    check()
    # Num admits several dtypes: int32 is drawn too; Shaped (any dtype) is always float32.
    other = find(inputs(batch_any_dtype), lambda ex: arguments(batch_any_dtype, ex)["y"].dtype == jnp.int32)
    assert arguments(batch_any_dtype, other)["x"].dtype == jnp.float32


def test_optional_arrays_are_sometimes_none():
    strategy = inputs(batch_masked_sum)
    without = find(strategy, lambda ex: arguments(batch_masked_sum, ex).get("mask") is None)
    assert set(arguments(batch_masked_sum, without)) == {"x"}  # left to its default None
    with_mask = find(strategy, lambda ex: arguments(batch_masked_sum, ex).get("mask") is not None)
    assert arguments(batch_masked_sum, with_mask)["mask"].dtype == jnp.bool_


def test_pytree_arguments_are_small_trees():
    strategy = inputs(batch_tree_total)
    as_dict = find(strategy, lambda ex: isinstance(arguments(batch_tree_total, ex)["tree"], dict))
    assert isinstance(arguments(batch_tree_total, as_dict)["tree"], dict)
    as_tuple = find(strategy, lambda ex: isinstance(arguments(batch_tree_total, ex)["tree"], tuple))
    assert isinstance(arguments(batch_tree_total, as_tuple)["tree"], tuple)
    two = find(strategy, lambda ex: len(jax.tree_util.tree_leaves(ex)) >= 2)
    assert len({leaf.shape for leaf in jax.tree_util.tree_leaves(two)}) == 1  # sizes shared by every leaf
    fixed = find(inputs(batch_dict_scale), lambda ex: True)
    assert set(arguments(batch_dict_scale, fixed)["params"]) <= {"a", "b", "c"}  # dict[str, ...] keys


def test_per_leaf_dims_and_named_structures():
    leaves = find(inputs(batch_per_leaf), lambda ex: len({leaf.shape for leaf in jax.tree_util.tree_leaves(ex)}) > 1)
    assert len({leaf.shape[0] for leaf in jax.tree_util.tree_leaves(leaves)}) == 1  # '?n' varies, 'b' does not

    @settings(max_examples=15)
    @given(inputs(batch_add_trees))
    def same_structure(example):
        values = arguments(batch_add_trees, example)
        assert jax.tree_util.tree_structure(values["x"]) == jax.tree_util.tree_structure(values["y"])

    same_structure()
    varargs = find(inputs(batch_add_all), lambda ex: len(ex[0]) == 2 and ex[1])
    assert set(varargs[1]) <= {"extra_a", "extra_b"}


def test_static_parameters():
    with pytest.raises(ValueError, match=r"static parameter 'exponent' .* has no default.*given=\{'exponent'"):
        inputs(batch_power)
    strategy = inputs(batch_power, static={"exponent": st.integers(1, 3)})
    drawn = find(strategy, lambda ex: arguments(batch_power, ex)["exponent"] == 3)
    assert "scale" not in arguments(batch_power, drawn)  # left to its default
    fixed = find(inputs(batch_power, static={"exponent": 2, "scale": -1.0}), lambda ex: True)
    assert fixed[0][1:] == (2, -1.0)


def test_arrays_are_sometimes_passed_by_keyword():
    by_keyword = find(inputs(message_passing), lambda ex: "f" in ex[1])
    assert len(by_keyword[0]) == 1 and set(by_keyword[1]) == {"f"}
    keyword_only = find(inputs(batch_keyword_only), lambda ex: True)
    assert set(keyword_only[1]) == {"y"}


def test_elements_option():
    @settings(max_examples=10)
    @given(inputs(batch_power, static={"exponent": 2}, elements={"x": st.floats(0.5, 1.0)}))
    def check(example):
        x = np.asarray(arguments(batch_power, example)["x"])
        assert ((x >= 0.5) & (x <= 1.0)).all()

    check()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: inputs(message_passing, colour=3), r"colour= is not a dimension.*feat, graph, node"),
        (lambda: inputs(message_passing, node=-1), r"node= must be a non-negative int"),
        (lambda: inputs(batch_power, static={"x": 1.0}), r"static= names 'x', which is an array parameter"),
        (
            lambda: inputs(batch_power, static={"exponent": 1}, elements={"exponent": st.just(1)}),
            r"'exponent' is named by both static= and elements=",
        ),
        (
            lambda: inputs(batch_power, elements={"exponent": st.just(1)}),
            r"elements= names 'exponent', which is a static \(non-array\) parameter; give its value with given=",
        ),
        (lambda: inputs(message_passing, sizes={"feat": 3}, feat=3), r"given twice"),
    ],
)
def test_option_errors_teach(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def rotate(p: Float[Array, "xyz=3"]) -> Float[Array, "3"]:
    return p[::-1]


def test_a_labelled_fixed_size_is_accepted_as_itself_and_refused_otherwise():
    rotations = batched(rotate, "b")
    with pytest.raises(ValueError, match=r"'xyz' is fixed to 3 by the layout \('xyz=3'\), cannot draw 4"):
        inputs(rotations, xyz=4)

    @settings(max_examples=5)
    @given(inputs(rotations, xyz=3))
    def check(example):
        assert np.asarray(arguments(rotations, example)["p"]).shape[1] == 3

    check()


def test_plain_functions_are_refused():
    with pytest.raises(TypeError, match=r"not a function made by shapedmap\.batched"):
        inputs(matmat)


class Scaler:
    def __init__(self, size: int) -> None:
        self.size = size

    @batched("b")
    def apply(self, x: Float[Array, "{self.size}"]) -> Float[Array, ""]:
        return self.size * x.sum()


def test_methods_bound_and_unbound():
    scaler = Scaler(3)
    example = find(inputs(scaler.apply), lambda ex: True)
    assert [a.shape for a in example[0]] == [(1, 3)]  # 'self' is bound; '{self.size}' read from it
    check_batched(scaler.apply, max_examples=5)
    check_batched(Scaler.apply, max_examples=5, static={"self": st.builds(Scaler, st.integers(1, 3))})


# -- check_batched: failures and their reports -----------------------------------------------------


def drops_last(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return x[:-1]


@pytest.mark.parametrize("check", [True, False], ids=["checks-on", "checks-off"])
def test_output_that_contradicts_its_annotation_fails(check):
    with pytest.raises(BatchedCheckError) as caught:
        check_batched(batched(drops_last, "b", check=check), max_examples=10)
    message = str(caught.value)
    assert message.startswith("check_batched(drops_last):")
    assert "inputs: x: f32[1,1]" in message  # the shrunk example's shapes
    assert re.search(r"f32\[0\]|f32\[1,0\]", message)  # what the function returned
    assert caught.value.reason == ("raised" if check else "annotation")


_calls = itertools.count()


def add_global_row(x: Float[Array, "4"]) -> Float[Array, "4"]:
    """Meant to add a per-example offset, but the offset is global state, not an argument: under
    vmap the body runs once for the whole batch; the loop runs it per example, each call 4 more
    (a difference of 4 whatever the count reached before: no wrap-around to depend on)."""
    return x + 4.0 * next(_calls)


def test_batched_not_equal_to_loop_fails_with_the_first_index():
    with pytest.raises(BatchedCheckError) as caught:
        check_batched(batched(add_global_row, "b"), max_examples=10)
    error = caught.value
    assert error.reason == "mismatch"
    assert error.batch_index == {"b": 0}
    message = str(error)
    assert "inputs: x: f32[1,4]" in message
    assert "first differing batch index: b=0" in message
    assert re.search(r"max \|batched - loop\| = 4 ", message)
    assert "batched: [" in message and "loop:    [" in message


def test_the_first_differing_index_is_reported():
    state = {"concrete_calls": 0}

    def stale_after_first(x: Float[Array, "n"]) -> Float[Array, "n"]:
        """Right under vmap; called example by example, wrong from the second example on."""
        if isinstance(x, jax.core.Tracer):
            state["concrete_calls"] = 0  # a new batched call: the loop starts afresh after it
            return x
        state["concrete_calls"] += 1
        return x + (state["concrete_calls"] > 1)

    with pytest.raises(BatchedCheckError) as caught:
        check_batched(batched(stale_after_first, "b"), max_examples=20, jit=False)
    assert caught.value.batch_index == {"b": 1}
    assert "inputs: x: f32[2,1]" in str(caught.value)
    assert "first differing batch index: b=1" in str(caught.value)


def test_jit_failures_are_reported_as_such():
    state = {"looped": False}

    def differs_under_jit(x: Float[Array, "n"]) -> Float[Array, "n"]:
        """Eager batched call, then the loop, then jax.jit: only the jit trace adds 1."""
        if isinstance(x, jax.core.Tracer):
            offset = 1.0 if state["looped"] else 0.0
            state["looped"] = False
            return x + offset
        state["looped"] = True
        return x

    with pytest.raises(BatchedCheckError) as caught:
        # Only generate: shrinking re-compiles under jit at every step, and the report is what is tested.
        check_batched(batched(differs_under_jit, "b"), settings=settings(max_examples=5, phases=[Phase.generate]))
    assert caught.value.mode == "jit"
    assert "the batched call (under jax.jit) differs from the loop" in str(caught.value)


def test_trees_and_tuples_are_compared_leaf_by_leaf():
    def halves(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        return x.sum(), x.sum() + (0.0 if isinstance(x, jax.core.Tracer) else 1.0)

    with pytest.raises(BatchedCheckError, match=r"result 1 there:"):
        check_batched(batched(halves, "b"), max_examples=5, jit=False)


def test_the_loop_indexes_by_name_independently_of_the_core():
    """A stand-in that claims column_sums' plan but maps over rows: the loop must notice."""
    from shapedmap.examples import column_sums, sum_vector

    def row_sums_in_disguise(x):
        return jax.vmap(sum_vector)(x)

    row_sums_in_disguise.__shapedmap__ = column_sums.__shapedmap__
    row_sums_in_disguise.fn = sum_vector
    row_sums_in_disguise.signature = column_sums.signature
    with pytest.raises(BatchedCheckError) as caught:
        check_batched(row_sums_in_disguise, max_examples=20, n=3, col=3, jit=False)
    assert caught.value.reason == "mismatch"
    assert "first differing batch index: col=" in str(caught.value)


# -- check_batched: how many examples, and settings ---------------------------------------------------


@pytest.fixture
def examples_run(monkeypatch):
    """A list that grows by one for every example check_batched checks."""
    runs: list[int] = []
    original = shapedmap.testing._loop._Checker.check

    def counting(self, example):
        runs.append(1)
        return original(self, example)

    monkeypatch.setattr(shapedmap.testing._loop._Checker, "check", counting)
    return runs


def test_max_examples_and_settings_are_respected(examples_run):
    check_batched(message_passing, max_examples=3)
    assert len(examples_run) == 3
    examples_run.clear()
    check_batched(message_passing, settings=settings(max_examples=2, deadline=None))
    assert len(examples_run) == 2
    examples_run.clear()
    check_batched(message_passing)  # the loaded profile (ci: 25)
    assert len(examples_run) == settings.default.max_examples


def test_inside_given_with_data_the_outer_settings_rule():
    runs: list[int] = []

    @settings(max_examples=4, deadline=None)
    @given(data=st.data())
    def outer(data):
        runs.append(1)
        check_batched(message_passing, data=data)

    outer()
    assert len(runs) == 4


def test_nested_given_without_data_is_refused():
    @settings(max_examples=1, deadline=None)
    @given(st.integers())
    def outer(_):
        check_batched(message_passing)

    with pytest.raises(TypeError, match=r"inside a @given test.*data="):
        outer()


def test_failure_inside_given_with_data_shrinks_too():
    @settings(max_examples=20, deadline=None)
    @given(data=st.data())
    def outer(data):
        check_batched(batched(drops_last, "b", check=False), data=data)

    with pytest.raises(BatchedCheckError, match=r"inputs: x: f32\[1,1\]"):
        outer()


def test_static_values_equal_but_different_are_not_confused_under_jit():
    """Regression: the jitted call was reused for a static value equal to an earlier one."""

    @batched("b")
    def signed(x: Float[Array, "n"], s: float) -> Float[Array, "n"]:
        return x * jnp.copysign(1.0, s)

    from hypothesis import strategies as st

    check_batched(signed, static={"s": st.sampled_from([0.0, -0.0])}, max_examples=20)


def test_nan_on_one_side_is_counted_not_measured():
    """A NaN against a number has no distance: the report counts those elements (it printed -inf)."""

    def nan_when_batched(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * jnp.nan if isinstance(x, jax.core.Tracer) else x

    with pytest.raises(BatchedCheckError) as caught:
        check_batched(batched(nan_when_batched, "b"), max_examples=3, jit=False)
    message = str(caught.value)
    assert "inf" not in message
    assert re.search(r"\d+ elements? NaN on one side only; first at element \(0,\)", message), message
    assert "max |batched - loop|" not in message
