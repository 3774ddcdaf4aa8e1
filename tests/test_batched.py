"""How ``@batched`` behaves: spec forms, binding, static parameters, composition with JAX."""

import inspect
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Int

import shapedmap
from shapedmap import ShapeError, SpecError, batched


def loop(fn, *arrays, axis=0):
    """The naive loop: call ``fn`` on slices along ``axis`` and stack."""
    size = arrays[0].shape[axis]
    return jnp.stack([fn(*(jnp.take(a, i, axis=axis) for a in arrays)) for i in range(size)])


def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"], *, scale: float = 1.0) -> Float[Array, "out"]:
    """A linear layer for one example."""
    return scale * (x @ w)


X = jnp.arange(15.0).reshape(5, 3)
W = jnp.arange(6.0).reshape(3, 2)


# -- spec forms ------------------------------------------------------------------------------


def test_call_form_and_decorator_form_agree():
    direct = batched(linear, "batch", layouts={"w": "feat out"})

    @batched("batch", layouts={"w": "feat out"})
    def decorated(x: Float[Array, "feat"], w: Float[Array, "feat out"], *, scale: float = 1.0) -> Float[Array, "out"]:
        return scale * (x @ w)

    np.testing.assert_array_equal(direct(X, W), decorated(X, W))
    np.testing.assert_allclose(direct(X, W), X @ W)


def test_spec_as_keyword_and_layouts_only():
    by_keyword = batched(linear, spec="batch feat, feat out -> batch out")
    by_layouts = batched(linear, layouts={"x": "batch feat"}, out="batch out")
    np.testing.assert_array_equal(by_keyword(X, W), by_layouts(X, W))
    assert by_layouts.in_axes == {"batch": (0, None)}  # what jax.vmap gets: array parameters only


def test_two_batch_names_nest_outermost_first():
    def add(x: Float[Array, ""], y: Float[Array, ""]) -> Float[Array, ""]:
        return x + 10 * y

    grid = batched(add, "graph time")
    x = jnp.arange(6.0).reshape(2, 3)
    y = jnp.ones((2, 3))
    np.testing.assert_array_equal(grid(x, y), x + 10)
    assert list(grid.in_axes) == ["graph", "time"]


def test_out_layout_moves_the_batch_dim():
    moved = batched(linear, "batch", layouts={"w": "feat out"}, out="out batch")
    np.testing.assert_allclose(moved(X, W), (X @ W).T)
    assert moved.out_axes == {"batch": 1}


def test_tuple_results_each_get_a_layout():
    def stats(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
        return x.mean(), x - x.mean()

    per_column = batched(stats, "n b -> b, n b")
    m = jnp.arange(12.0).reshape(3, 4)
    mean, centred = per_column(m)
    np.testing.assert_allclose(mean, m.mean(axis=0))
    np.testing.assert_allclose(centred, m - m.mean(axis=0))
    assert per_column.out_axes == {"b": (0, 1)}


def test_non_leading_batch_dims_in_and_out():
    def step(x: Float[Array, "batch feat"]) -> Float[Array, "batch feat"]:
        return jnp.cumsum(x, axis=1)

    per_time = batched(step, "batch time feat -> batch time feat")
    y = jax.random.normal(jax.random.key(0), (2, 10, 4))
    np.testing.assert_allclose(per_time(y), loop(step, y, axis=1).transpose(1, 0, 2), rtol=1e-6)
    assert per_time.in_axes == {"time": (1,)} and per_time.out_axes == {"time": 1}


def test_variadic_before_batch_dim_uses_negative_axes():
    def project(x: Float[Array, "*lead feat"], w: Float[Array, "feat"]) -> Float[Array, "*lead"]:
        return x @ w

    per_time = batched(project, "*lead time feat, feat -> *lead time")
    assert per_time.in_axes == {"time": (-2, None)} and per_time.out_axes == {"time": -1}
    w = jnp.arange(4.0)
    for lead in [(), (2,), (2, 3)]:
        x = jax.random.normal(jax.random.key(1), (*lead, 5, 4))
        np.testing.assert_allclose(per_time(x, w), x @ w, rtol=1e-5)


def test_repeated_dims_work():
    def trace(a: Float[Array, "n n"]) -> Float[Array, ""]:
        return jnp.trace(a)

    traces = batched(trace, "g")
    a = jax.random.normal(jax.random.key(2), (4, 3, 3))
    np.testing.assert_allclose(traces(a), jnp.trace(a, axis1=1, axis2=2), rtol=1e-6)


def test_output_batch_dim_sized_by_a_core_dim_of_another_argument():
    def first(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
        return x[0] + y[0]

    # 'a' is a core dim of both inputs, but the output maps over it too: a broadcast.
    outer = batched(first, "b a, a -> a b")
    x = jnp.arange(6.0).reshape(2, 3)
    y = jnp.arange(3.0)
    np.testing.assert_array_equal(outer(x, y), jnp.broadcast_to(x[:, 0] + y[0], (3, 2)))


def test_output_only_batch_dim_with_a_size():
    def ones(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.ones_like(x) * x.sum()

    repeated = batched(ones, "n -> copies=4 n")
    assert repeated(jnp.arange(3.0)).shape == (4, 3)


# -- binding ---------------------------------------------------------------------------------


def test_keyword_arguments_follow_their_layouts():
    """Plain jax.vmap would map a keyword argument on axis 0; here it follows its layout."""
    per_column = batched(linear, "feat batch, feat out -> batch out")
    xt = X.T
    np.testing.assert_allclose(per_column(x=xt, w=W), X @ W)
    np.testing.assert_allclose(per_column(xt, w=W, scale=2.0), 2 * (X @ W))


def test_keyword_argument_mapped_on_a_non_leading_axis():
    def scaled(x: Float[Array, "n"], *, s: Float[Array, ""]) -> Float[Array, "n"]:
        return x * s

    per_column = batched(scaled, "b n, b -> b n")
    s = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(per_column(X, s=s), X * s[:, None])


def test_defaults_apply_and_static_values_are_never_mapped():
    def shift(x: Float[Array, "n"], offset: int = 1, name: str = "x", fn=jnp.abs) -> Float[Array, "n"]:
        return fn(x) + offset + len(name)

    shifted = batched(shift, "b")
    np.testing.assert_allclose(shifted(-X), X + 2)
    np.testing.assert_allclose(shifted(-X, 3, "abc", fn=jnp.negative), X + 6)
    assert shifted.in_axes == {"b": (0,)}  # static parameters never reach jax.vmap


ZEROS = jnp.zeros(3)


def test_array_default_is_checked_and_used():
    def add(x: Float[Array, "n"], bias: Float[Array, "n"] = ZEROS) -> Float[Array, "n"]:
        return x + bias

    added = batched(add, "b", layouts={"bias": "n"})
    np.testing.assert_array_equal(added(X), X)


def test_unannotated_array_argument_is_closed_over_not_mapped():
    def add(x: Float[Array, "n"], table) -> Float[Array, "n"]:
        return x + table

    added = batched(add, "b")
    np.testing.assert_array_equal(added(X, jnp.ones(3)), X + 1)


def test_numpy_and_python_scalars_are_converted():
    def scale(x: Float[Array, "n"], s: Float[Array, ""]) -> Float[Array, "n"]:
        return x * s

    scaled = batched(scale, "b", layouts={"s": ""})
    np.testing.assert_allclose(scaled(np.asarray(X), 2.0), 2 * X)
    np.testing.assert_allclose(scaled(X, np.float32(3.0)), 3 * X)


def test_methods_hold_self_static():
    class Scaler:
        def __init__(self, factor):
            self.factor = factor

        @batched("b")
        def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x * self.factor

    np.testing.assert_array_equal(Scaler(3.0).apply(X), 3 * X)


def test_binding_errors_name_the_function():
    batched_linear = batched(linear, "batch", layouts={"w": "feat out"})
    with pytest.raises(TypeError, match="linear: missing a required argument: 'w'"):
        batched_linear(X)
    with pytest.raises(TypeError, match="linear: got an unexpected keyword argument 'v'"):
        batched_linear(X, W, v=1)


# -- metadata ---------------------------------------------------------------------------------


def test_metadata_and_batched_signature():
    batched_linear = batched(linear, "batch", layouts={"w": "feat out"})
    assert batched_linear.__name__ == "linear"
    assert batched_linear.__wrapped__ is linear
    assert batched_linear.fn is linear
    assert batched_linear.signature == "batch feat, feat out -> batch out"
    assert batched_linear.__doc__.startswith("A linear layer for one example.")
    assert "Shapes\n------" in batched_linear.__doc__
    signature = inspect.signature(batched_linear)
    assert signature.parameters["x"].annotation.dim_str == "batch feat"
    assert signature.parameters["w"].annotation.dim_str == "feat out"
    assert signature.parameters["scale"].annotation is float
    assert signature.return_annotation.dim_str == "batch out"
    assert "jaxlib" not in str(signature)
    assert batched_linear.__annotations__["x"].dim_str == "batch feat"


def test_batching_a_batched_function_again():
    def add(x: Float[Array, ""], y: Float[Array, ""]) -> Float[Array, ""]:
        return x + y

    inner = batched(add, "a")
    outer = batched(inner, "b")
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(outer(x, x), 2 * x)
    assert outer.signature == "b a, b a -> b a"


def test_jaxtyped_outside_checks_the_batched_annotations():
    from beartype import beartype
    from jaxtyping import jaxtyped

    checked = jaxtyped(typechecker=beartype)(batched(linear, "batch", layouts={"w": "feat out"}))
    assert checked(X, W).shape == (5, 2)


# -- composition with JAX ---------------------------------------------------------------------


@batched("graph")
def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    return a @ f


A = jax.random.normal(jax.random.key(3), (4, 5, 5))
F = jax.random.normal(jax.random.key(4), (4, 5, 2))


def test_under_jit_grad_scan_and_vmap():
    expected = jnp.einsum("gij,gjk->gik", A, F)
    np.testing.assert_allclose(jax.jit(message_passing)(A, F), expected, rtol=1e-5)
    grad = jax.grad(lambda f: message_passing(A, f).sum())(F)
    np.testing.assert_allclose(grad, jax.grad(lambda f: jnp.einsum("gij,gjk->gik", A, f).sum())(F), rtol=1e-5)

    def body(carry, f):
        return carry + message_passing(A, f).sum(), None

    total, _ = jax.lax.scan(body, 0.0, jnp.stack([F, F]))
    np.testing.assert_allclose(total, 2 * expected.sum(), rtol=1e-4)
    stacked = jax.vmap(message_passing)(jnp.stack([A, A]), jnp.stack([F, F]))
    np.testing.assert_allclose(stacked[1], expected, rtol=1e-5)


def test_collectives_by_batch_name():
    @batched("graph")
    def centred(f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
        return f - jax.lax.pmean(f, "graph")

    np.testing.assert_allclose(centred(F), F - F.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_reduced_batch_dim_may_be_left_out_of_the_output():
    def total(f: Float[Array, "node feat"]) -> Float[Array, "feat"]:
        return jax.lax.psum(f.sum(axis=0), "graph")

    summed = batched(total, "graph node feat -> feat")
    np.testing.assert_allclose(summed(F), F.sum(axis=(0, 1)), rtol=1e-5)
    assert summed.out_axes == {"graph": None}


def test_per_example_body_traced_once_under_jit():
    traces = []

    @batched("b")
    def counted(x: Float[Array, "n"]) -> Float[Array, "n"]:
        traces.append(x.shape)
        return x * 2

    jitted = jax.jit(counted)
    for _ in range(5):
        jitted(X)
    assert traces == [(3,)]


def test_integer_dtypes_and_int_annotations():
    def count(x: Int[Array, "n"]) -> Int[Array, ""]:
        return x.sum()

    counts = batched(count, "b")
    np.testing.assert_array_equal(counts(jnp.arange(6).reshape(2, 3)), jnp.array([3, 12]))


# -- switching checks off ------------------------------------------------------------------


def test_check_false_still_maps():
    unchecked = batched(linear, "batch", layouts={"w": "feat out"}, check=False)
    np.testing.assert_allclose(unchecked(X, W), X @ W)


def test_config_checks_off_skips_checks(monkeypatch):
    def wrong(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.concatenate([x, x])  # contradicts its annotation

    checked = batched(wrong, "b")
    with pytest.raises(ShapeError):
        checked(X)
    monkeypatch.setattr(shapedmap.config, "checks", False)
    assert checked(X).shape == (5, 6)


def run_python(code, *flags, env=None):
    result = subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
        timeout=120,
    )
    return result


WRONG_OUTPUT = """
    import jax.numpy as jnp
    from jaxtyping import Array, Float
    from shapedmap import ShapeError, batched

    def wrong(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.concatenate([x, x])

    try:
        print(batched(wrong, "b")(jnp.ones((2, 3))).shape)
    except ShapeError as error:
        print("ShapeError:", error)
"""


def test_environment_variable_switches_checks_off():
    result = run_python(WRONG_OUTPUT, env={"SHAPEDMAP_CHECKS": "0"})
    assert result.stdout.strip() == "(2, 6)", result.stderr


def test_python_dash_o_still_catches_a_wrong_result():
    """beartype is a no-op under -O; shapedmap's own result check is not."""
    result = run_python(WRONG_OUTPUT, "-O")
    assert "ShapeError: wrong:" in result.stdout, result.stderr
    assert "dimension 'n' has size 3" in result.stdout
    assert "but size 6 in the return value (axis 1 of f32[2,6])" in result.stdout


def test_bad_environment_variable_is_refused_at_import():
    result = run_python("import shapedmap", env={"SHAPEDMAP_CHECKS": "maybe"})
    assert "Unrecognised value 'maybe' for the environment variable SHAPEDMAP_CHECKS" in result.stderr


def test_spec_error_at_decoration_not_at_call():
    with pytest.raises(SpecError):
        batched(linear, "batch", layouts={"nope": "x"})


def test_scalar_layouts_in_a_full_signature():
    def offset(x: Float[Array, "n"], c: Float[Array, ""]) -> Float[Array, ""]:
        return jax.lax.psum(x.sum(), "b") + c

    total = batched(offset, "b n, -> ")
    np.testing.assert_allclose(total(X, jnp.float32(1.0)), X.sum() + 1.0)


def test_nothing_before_the_arrow_is_the_one_scalar_parameter():
    def ramp(x: Float[Array, ""]) -> Float[Array, "n"]:
        return x * jnp.arange(3.0)

    repeated = batched(ramp, " -> k=5 n")  # like "b n, -> b n" for the second of two parameters
    assert repeated.in_axes == {"k": (None,)} and repeated.out_axes == {"k": 0}
    np.testing.assert_allclose(repeated(jnp.float32(2.0)), jnp.stack([2.0 * jnp.arange(3.0)] * 5))
    with pytest.raises(SpecError, match=r"^linear: the spec ' -> b out' has 0 input layout\(s\) but"):
        batched(linear, " -> b out")  # two array parameters: nothing is no layout at all


def test_package_import_is_light_and_names_stay_functions():
    code = textwrap.dedent(
        """
        import sys
        import shapedmap
        light = 'jax' not in sys.modules
        import shapedmap._explain, shapedmap._decorator, shapedmap._describe  # the submodules first...
        from shapedmap import batched, describe, explain  # ...the names are still the functions
        print(light, callable(batched) and not hasattr(batched, '__path__'), explain.__module__, describe.__name__)
        shapedmap.config.checks = False
        from shapedmap._config import config
        print(config.checks, shapedmap.config is config)
        """
    )
    result = run_python(code)
    assert result.stdout.split() == ["True", "True", "shapedmap._explain", "describe", "False", "True"], result.stderr


def test_misspelt_config_setting_is_refused():
    with pytest.raises(AttributeError, match="'Config' object has no attribute 'check'"):
        shapedmap.config.check = False


# -- axis names: every level binds its batch name, and the body runs once per call --------------


def test_every_call_binds_the_batch_names_and_runs_the_body_once():
    traces = []

    def plain(x: Float[Array, "n"]) -> Float[Array, "n"]:
        traces.append(1)
        return 2 * x

    def centred(x: Float[Array, "n"]) -> Float[Array, "n"]:
        traces.append(1)
        return x - jax.lax.pmean(x, "b")

    def in_a_cond(x: Float[Array, "n"]) -> Float[Array, "n"]:
        traces.append(1)
        return jax.lax.cond(x[0] > 0, lambda y: y - jax.lax.psum(y, "b"), lambda y: y, x)

    def in_a_scan(x: Float[Array, "n"]) -> Float[Array, "n"]:
        traces.append(1)
        return jax.lax.scan(lambda carry, y: (carry + jax.lax.axis_index("b"), y), 0, x)[1] * 1.0

    for function in [plain, centred, in_a_cond, in_a_scan]:
        mapped = batched(function, "b")
        reference = jax.vmap(function, axis_name="b")(X)
        for _ in range(3):
            before = len(traces)
            np.testing.assert_allclose(mapped(X), reference, rtol=1e-6)
            assert len(traces) - before == 1, function.__name__  # no probe trace, no retry
        np.testing.assert_allclose(jax.jit(mapped)(X), reference, rtol=1e-6)
    np.testing.assert_allclose(batched(centred, "b")(X), X - X.mean(axis=0), rtol=1e-6)


def test_a_misspelt_batch_name_is_still_named_in_the_error():
    def typo(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x - jax.lax.psum(x, "batch")

    with pytest.raises(NameError) as info:
        batched(typo, "b")(X)
    assert "the batch names bound there: 'b'" in "".join(info.value.__notes__)


def test_an_inner_batch_name_shadows_an_outer_one_of_the_same_name():
    # The arguments are constants here, not tracers of the outer vmap: the names must be bound anyway.
    def total(x: Float[Array, "n"], reduce: bool = False) -> Float[Array, "n"]:
        return jax.lax.psum(x, "graph") if reduce else x

    def scaled(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * jax.lax.axis_size("graph")

    summed, sized = batched(total, "graph"), batched(scaled, "graph")
    x = jnp.ones((3, 2))
    summed(x)  # remembered eagerly: the body uses no name for reduce=False
    outer = jax.vmap(lambda i: summed(x, reduce=True), axis_name="graph")(jnp.arange(5))
    np.testing.assert_allclose(outer[0], 3 * x)  # the inner 'graph' (3), not the outer (5)
    np.testing.assert_allclose(jax.vmap(lambda i: sized(x), axis_name="graph")(jnp.arange(5))[0], 3 * x)


def test_a_name_no_equation_shows_is_bound_and_the_body_runs_once_per_call():
    traces = []

    def scaled(x: Float[Array, "n"]) -> Float[Array, "n"]:
        traces.append(1)
        return x * jax.lax.axis_size("b")  # no equation names 'b'

    mapped = batched(scaled, "b")
    per_call = []
    for _ in range(3):
        before = len(traces)
        np.testing.assert_allclose(mapped(X), 5 * X)
        per_call.append(len(traces) - before)
    assert per_call == [1, 1, 1]


def test_functions_without_a_shapes_cache_do_not_trace_their_jaxpr_per_call():
    class Model:
        size = 3

        def apply(self, x: Float[Array, "{self.size}"]) -> Float[Array, "{self.size}"]:
            traces.append(1)
            return 2 * x

    traces = []
    apply = batched(Model.apply, "b")
    apply(Model(), X)
    before = len(traces)
    apply(Model(), X)
    assert len(traces) - before == 1


def test_checks_off_also_binds_the_names():
    def centred(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x - jax.lax.pmean(x, "b")

    unchecked = batched(centred, "b", check=False)
    np.testing.assert_allclose(unchecked(X), X - X.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(unchecked)(X), X - X.mean(axis=0), rtol=1e-6)
