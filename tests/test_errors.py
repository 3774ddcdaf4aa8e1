"""Every error says which function, which parameter, which dimension, and both sides of a conflict."""

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array, Float, Int

from shapedmap import ShapeError, SpecError, batched
from shapedmap.examples import message_passing, pairwise


def message(error_type, fn, *args, **kwargs):
    with pytest.raises(error_type) as info:
        fn(*args, **kwargs)
    return str(info.value)


# -- ShapeError at call time ------------------------------------------------------------------


def test_batch_size_conflict_names_both_sources():
    text = message(ShapeError, message_passing, jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    assert text.startswith(
        "message_passing: dimension 'graph' has size 5 in argument 'a' (axis 0 of f32[5,7,7])\n"
        "but size 4 in argument 'f' (axis 0 of f32[4,7,11])"
    )
    assert "argument 'f' has layout 'graph node feat': expected (graph=5, node=7, feat), got f32[4,7,11]" in text


def test_core_size_conflict_names_the_core_dim():
    text = message(ShapeError, message_passing, jnp.ones((13, 7, 7)), jnp.ones((13, 6, 11)))
    assert "message_passing: dimension 'node' has size 7 in argument 'a' (axis 1 of f32[13,7,7])" in text
    assert "but size 6 in argument 'f' (axis 1 of f32[13,6,11])" in text


def test_shape_errors_are_type_errors():
    with pytest.raises(TypeError):
        message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))


def test_missing_batch_dim_is_spelled_out():
    text = message(ShapeError, message_passing, jnp.ones((7, 7)), jnp.ones((13, 7, 11)))
    assert text.startswith(
        "message_passing: argument 'a' has 2 dims (f32[7,7]) but its layout 'graph node node' needs 3. "
        "It has the per-example shape 'node node': the batch dim 'graph' is missing."
    )
    assert "layouts={'a': 'node node'}" in text
    assert text.endswith(
        "If it is one example, make it a batch of one (a[None]), or batch with a '*batch' spec, whose batch "
        "dims an argument may lack (they broadcast)."
    )


def test_missing_non_leading_batch_dim_offers_expand_dims():
    from shapedmap.examples import column_sums

    text = message(ShapeError, column_sums, jnp.ones(3))
    assert "the batch dim 'col' is missing" in text
    assert text.endswith("If it is one example, make it a batch of one (jnp.expand_dims(x, (1,))).")
    assert column_sums(jnp.expand_dims(jnp.arange(3.0), (1,))).tolist() == [3.0]  # the fix it offers works


def test_zero_d_array_where_a_batch_dim_is_expected():
    def square(x: Float[Array, ""]) -> Float[Array, ""]:
        return x**2

    text = message(ShapeError, batched(square, "i"), jnp.float32(2.0))
    assert text.startswith("square: argument 'x' has 0 dims (f32[]) but its layout 'i' needs 1")


def test_too_many_dims():
    text = message(ShapeError, message_passing, jnp.ones((13, 7, 7, 1)), jnp.ones((13, 7, 11)))
    assert "argument 'a' has 4 dims (f32[13,7,7,1]) but its layout 'graph node node' needs 3" in text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ([[1.0]], "list [[1.0]] (jnp.asarray makes one array of it)"),
        (None, "None"),
        ("abc", "str 'abc'"),
        ({"a": 1}, "dict {'a': 1}"),
        (object, "type <class 'object'>"),
    ],
)
def test_non_arrays_are_refused_by_name(value, shown):
    text = message(ShapeError, message_passing, value, jnp.ones((13, 7, 11)))
    assert text == (
        f"message_passing: argument 'a' must be an array matching Float[Array, 'graph node node'], got {shown}"
    )


def test_shared_argument_given_a_batch_dim():
    def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"]) -> Float[Array, "out"]:
        return x @ w

    layer = batched(linear, "batch", layouts={"w": "feat out"})
    text = message(ShapeError, layer, jnp.ones((5, 3)), jnp.ones((5, 3, 2)))
    assert text == (
        "linear: argument 'w' has 3 dims (f32[5,3,2]) but its layout 'feat out' needs 2. Its layout has no "
        "'batch', so one value of it is shared across the batch: pass one, or map it too with "
        "layouts={'w': 'batch feat out'}."
    )


def test_non_array_as_keyword_argument():
    text = message(ShapeError, message_passing, jnp.ones((13, 7, 7)), f=[1, 2])
    assert "message_passing: argument 'f' must be an array" in text


def test_wrong_dtype():
    text = message(ShapeError, message_passing, jnp.ones((13, 7, 7), jnp.int32), jnp.ones((13, 7, 11)))
    assert text == (
        "message_passing: argument 'a' has dtype int32 (i32[13,7,7]) but its annotation admits only Float dtypes"
    )


def test_fixed_size():
    def rotate(p: Float[Array, "xyz=3"]) -> Float[Array, "3"]:
        return p[::-1]

    text = message(ShapeError, batched(rotate, "points"), jnp.ones((5, 4)))
    assert text == (
        "rotate: dimension 'xyz' of layout 'points xyz=3' must have size 3, but argument 'p' (axis 1 of f32[5,4]) has 4"
    )


def test_wrong_symbolic_result_names_the_expression_and_its_source():
    def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
        return jnp.concatenate([u, v, u])  # 3*f, not 2*f

    wrong = batched(concat, "i f, j f -> i j 2*f")
    for call in (wrong, jax.jit(wrong)):
        text = message(ShapeError, call, jnp.ones((13, 17)), jnp.ones((13, 17)))
        assert text == (
            "concat: dimension '2*f' of layout 'i j 2*f' should be 34 (f=17 from argument 'u' (axis 1 of "
            "f32[13,17])),\nbut the return value (axis 2 of f32[13,13,51]) has 51"
        )


def test_pairwise_mismatch_in_core_dim():
    text = message(ShapeError, pairwise, jnp.ones((13, 17)), jnp.ones((13, 16)))
    assert text.startswith(
        "concat: dimension 'f' has size 17 in argument 'u' (axis 1 of f32[13,17])\n"
        "but size 16 in argument 'v' (axis 1 of f32[13,16])"
    )


def test_batched_again_names_its_layer():
    from shapedmap.examples import mm

    text = message(ShapeError, mm, jnp.ones((2, 3)), jnp.ones((4, 5)))
    assert text.startswith("vv [b a, a c -> b c]: dimension 'a' has size 3 in argument 'x' (axis 1 of f32[2,3])")


def test_result_that_varies_over_a_batch_dim_missing_from_its_layout():
    def total(f: Float[Array, "node feat"]) -> Float[Array, "feat"]:
        return f.sum(axis=0)  # forgot the psum over 'graph'

    forgot = batched(total, "graph node feat -> feat")
    text = message(ShapeError, forgot, jnp.ones((4, 5, 2)))
    assert text == (
        "total: the return value varies over the batch dim 'graph', but its layout has no 'graph'. "
        "Add 'graph' to the output layout, or reduce over it inside (e.g. jax.lax.psum(x, 'graph'))"
    )


def test_tuple_result_of_the_wrong_length():
    def stats(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        return (x.mean(),)

    text = message(ShapeError, batched(stats, "b"), jnp.ones((2, 3)))
    assert text == "stats: the return value should be a tuple of 2 (its annotation), got tuple (f32[],)"


def test_error_inside_the_body_gets_the_map_as_a_note():
    def broken(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, ""]:
        return x @ y  # n != m: a JAX error about contracting dims

    with pytest.raises(TypeError) as info:
        batched(broken, "b")(jnp.ones((2, 3)), jnp.ones((2, 4)))
    assert (
        "(raised inside the map of broken over 'b' (size 2); shapes there are per example)" in info.value.__notes__[-1]
    )


def test_bad_static_value_names_the_parameter():
    def scale(x: Float[Array, "n"], factor: int) -> Float[Array, "n"]:
        return x * factor

    scaled = batched(scale, "b")
    assert scaled(jnp.ones((2, 3)), 2).shape == (2, 3)
    for bad in ("three", 2.5):  # the second call with these shapes is checked as strictly
        text = message(ShapeError, scaled, jnp.ones((2, 3)), bad)
        assert text == f"scale: argument 'factor' is annotated int, got {type(bad).__name__} {bad!r}"


def test_errors_under_jit_are_the_same():
    text = message(ShapeError, jax.jit(message_passing), jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    assert text.startswith("message_passing: dimension 'graph' has size 5 in argument 'a'")


def test_int_annotation_refuses_floats():
    def count(x: Int[Array, "n"]) -> Int[Array, ""]:
        return x.sum()

    text = message(ShapeError, batched(count, "b"), jnp.ones((2, 3)))
    assert text == "count: argument 'x' has dtype float32 (f32[2,3]) but its annotation admits only Int dtypes"


# -- SpecError at decoration -------------------------------------------------------------------


def mp(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    return a @ f


def spec_error(*args, **kwargs):
    return message(SpecError, batched, *args, **kwargs)


def test_spec_errors_are_value_errors():
    with pytest.raises(ValueError):
        batched(mp, "graph graph")


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            (mp, "graph"),
            {"layouts": {"adjacency": "graph node node"}},
            "mp: layouts= names 'adjacency', which is not a parameter (parameters: a, f)",
        ),
        (
            (mp, "graph node, graph node feat -> graph node feat"),
            {},
            "mp: the layout 'graph node' of parameter 'a' lacks the per-example dim(s) 'node' of the annotation "
            "'node node'",
        ),
        (
            (mp, "graph node node, graph feat node -> graph node feat"),
            {},
            "mp: the layout 'graph feat node' of parameter 'f' has the core dims in the order 'feat node' but the "
            "per-example annotation says 'node feat'; vmap cannot transpose",
        ),
        (
            (mp, "graph graph node node, graph node feat -> graph node feat"),
            {},
            "mp: the batch name 'graph' appears twice in the layout 'graph graph node node' of parameter 'a'",
        ),
        (
            (mp, "graph node node, graph node feat -> graph time node feat"),
            {},
            "mp: the output batch dim 'time' appears in no input layout, so its size is unknown",
        ),
        (
            (mp, "graph node node -> graph node feat"),
            {},
            "mp: the spec 'graph node node -> graph node feat' has 1 input layout(s) but the function has 2 array "
            "parameter(s) ('a', 'f')",
        ),
        (
            (mp, "graph node node, graph node feat -> graph node feat, graph"),
            {},
            "mp: 2 output layout(s) given but the return annotation says one value",
        ),
        ((mp, "node"), {}, "mp: the batch name 'node' is already a dimension of the per-example annotation"),
        ((mp,), {}, "mp: no batch dims"),
        ((mp, "graph, time"), {}, "mp: invalid spec 'graph, time'"),
        ((mp, "gr-aph"), {}, "mp: invalid spec 'gr-aph'"),
        ((mp, "graph"), {"layouts": ["a"]}, "mp: layouts= must be a dict"),
        ((mp, "graph"), {"out": 3}, "mp: out= must be a layout string, a tuple of them or a layout tree, got int"),
        ((mp, "graph"), {"layouts": {"a": "graph node nod"}}, "lacks the per-example dim(s) 'node'"),
    ],
)
def test_spec_error_messages(args, kwargs, expected):
    assert expected in spec_error(*args, **kwargs)


def test_layout_for_a_static_parameter():
    def scale(x: Float[Array, "n"], factor: int) -> Float[Array, "n"]:
        return x * factor

    text = spec_error(scale, "b", layouts={"factor": "b"})
    assert text.startswith("scale: layouts= gives a layout for 'factor', which is annotated int")


def test_symbolic_dim_with_an_unknown_name():
    def f(x: Float[Array, "n"]) -> Float[Array, "m+1"]:
        return x

    assert "f: the dimension 'm+1' of the return value uses 'm', which no layout binds" in spec_error(f, "b")


def test_symbolic_parameter_dim_used_before_it_is_bound():
    def f(x: Float[Array, "n+1"], y: Float[Array, "n"]) -> Float[Array, "n"]:
        return y

    assert "uses 'n' before any earlier parameter binds it" in spec_error(f, "b")


def test_union_of_several_shapes():
    """A union of shapes of fixed rank batches (tests/test_keys.py); one with a variadic cannot."""

    def f(v: Float[Array, "n"] | Float[Array, "*n 2"], x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x

    message = spec_error(f, "b")
    assert "f: parameter 'v'" in message and "allows several shapes ('n', '*n 2')" in message
    assert "batched by the rank of each example, which a variadic dim ('*name', '...') leaves open" in message


def test_non_array_return_annotation():
    def f(x: Float[Array, "n"]) -> float:
        return x.sum()

    assert "f: the return annotation float is not an array annotation" in spec_error(f, "b")


def test_non_batch_token_where_a_batch_dim_would_be():
    assert "'_' in the spec 'graph _' cannot be a batch dim" in spec_error(mp, "graph _")


def test_two_specs_and_not_a_function():
    with pytest.raises(SpecError, match="batched got two specs, 'a' and 'b'"):
        batched("a", "b")
    with pytest.raises(SpecError, match="batched expects a function, got int 3"):
        batched(3, "b")
