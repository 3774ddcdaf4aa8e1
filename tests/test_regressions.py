"""One test per bug the fuzzers (tests/test_fuzz_*.py, tests/test_threads.py) found, each named in a comment."""

import subprocess
import sys
import textwrap
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, PyTree

from shapedmap import ShapeError, SpecError, batched


# Bug: a parameter annotated ``Callable[[Array], Array]`` was read as a PyTree of arrays (Callable's
# arguments looked like container contents), so passing a function raised "must be an array".
def test_callable_annotation_is_static():
    def apply_op(x: Float[Array, "n"], op: Callable[[Array], Array]) -> Float[Array, ""]:
        return jnp.sum(op(x))

    applied = batched(apply_op, "b")
    assert applied.in_axes == {"b": (0,)}  # op is static: it never reaches jax.vmap
    np.testing.assert_allclose(applied(jnp.zeros((2, 3)), jnp.cos), [3.0, 3.0])


# Bug: a Python int too large for any JAX dtype leaked an OverflowError from jnp.asarray.
def test_huge_python_int_is_a_named_shape_error():
    def scale(x: Float[Array, "n"], factor: Float[Array, ""]) -> Float[Array, "n"]:
        return x * factor

    with pytest.raises(
        ShapeError, match=r"^scale: argument 'factor' must be an array .* got int 1180591620717411303424"
    ):
        batched(scale, "b n, -> b n")(jnp.ones((2, 3)), 2**70)


# Bug: when every argument mapped over a batch dim was a PyTree without leaves (None, (None,),
# {"u": None}), jax.vmap raised a bare ValueError ("must be passed at least one argument containing
# an array") instead of a ShapeError naming the parameter.
@pytest.mark.parametrize("tree", [None, {"u": None}, ()])
def test_batch_dim_with_no_array_is_a_named_shape_error(tree):
    def double(params: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
        return jax.tree.map(lambda leaf: 2 * leaf, params)

    with pytest.raises(ShapeError, match=r"^double: nothing gives the size of the batch dim 'b': argument 'params'"):
        batched(double, "b")(tree)


def run_optimized(code: str) -> str:
    """Run ``code`` under ``python -O`` (beartype off) and return what it printed."""
    header = "import jax.numpy as jnp\nfrom jaxtyping import Array, Float\nfrom shapedmap import ShapeError, batched\n"
    completed = subprocess.run(
        [sys.executable, "-O", "-c", header + textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


# Bug: under ``python -O`` beartype switches itself off, so a bad static value ("three" for
# ``factor: int``) reached the function body and came out as a bare JAX TypeError that did not name
# the parameter. shapedmap now checks static values itself where beartype does not run.
def test_bad_static_value_is_named_under_python_O():
    printed = run_optimized("""
        def scale(x: Float[Array, "n"], factor: int) -> Float[Array, "n"]:
            return x * factor

        try:
            batched(scale, "b")(jnp.ones((2, 3)), "three")
        except ShapeError as error:
            print(error)
        print(batched(scale, "b")(jnp.ones((2, 3)), 2).shape)
    """)
    assert printed.splitlines() == ["scale: argument 'factor' is annotated int, got str 'three'", "(2, 3)"]


def total(*xs: Float[Array, "n"]) -> Float[Array, ""]:
    return sum((x.sum() for x in xs), start=jnp.float32(0))


# Bug: an annotated ``*xs`` was checked as one PyTree, so an entry that was None or a list passed
# shapedmap's check (None is an empty PyTree) and, under ``python -O``, reached the body as an
# AttributeError. Each entry of an array-annotated ``*args``/``**kwargs`` must be one array.
@pytest.mark.parametrize("entry", [None, [jnp.ones((2, 3))], {"a": jnp.ones((2, 3))}])
def test_each_star_args_entry_must_be_an_array(entry):
    with pytest.raises(ShapeError, match=r"^total: argument 'xs' at \[1\] must be an array matching"):
        batched(total, "b")(jnp.ones((2, 3)), entry)
    np.testing.assert_allclose(batched(total, "b")(jnp.ones((2, 3)), jnp.ones((2, 3))), [6.0, 6.0])


def test_each_star_args_entry_must_be_an_array_under_python_O():
    printed = run_optimized("""
        def total(*xs: Float[Array, "n"]) -> Float[Array, ""]:
            return sum(x.sum() for x in xs)

        try:
            batched(total, "b")(jnp.ones((2, 3)), None)
        except ShapeError as error:
            print(str(error).split(" matching")[0])
    """)
    assert printed.strip() == "total: argument 'xs' at [1] must be an array"


class FakeArray:
    """Has a shape and a dtype, but JAX cannot convert it."""

    shape = (2, 3)
    dtype = np.dtype("float32")


def double(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return 2 * x


# Bug: an object with a tuple ``shape`` and a ``dtype`` that is no array (nor convertible) passed the
# check untouched and died inside jax.vmap with "... is not a valid JAX type", naming no parameter.
def test_unconvertible_array_like_is_a_named_shape_error():
    with pytest.raises(ShapeError, match=r"^double: argument 'x' must be an array .* got FakeArray f32\[2,3\]"):
        batched(double, "b")(FakeArray())


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


# Bug: writing the error message called repr() on the bad value; an object whose repr raises turned
# the ShapeError into that object's RuntimeError.
def test_value_whose_repr_raises_is_described_by_its_type():
    with pytest.raises(ShapeError, match=r"^double: argument 'x' must be an array .* got RaisingRepr object$"):
        batched(double, "b")(RaisingRepr())


class RaisingShape:
    @property
    def shape(self) -> tuple[int, ...]:
        raise RuntimeError("no shape")


# Bug (input fuzzer; fixed in batched.py by its owner, 7efa7e7): _PerCall.abstract_key read every
# argument's shape and flattened every PyTree before any check, so an object whose ``shape`` raises,
# or a dict whose keys cannot be sorted, escaped as a RuntimeError/ValueError. abstract_key now gives
# up on such values and check.py names them.
@pytest.mark.parametrize(
    ("make_call", "message"),
    [
        (lambda: batched(double, "b")(RaisingShape()), r"^double: argument 'x' must be an array"),
        (
            lambda: batched(tree_double, "b")({1: jnp.ones((2, 3)), "a": jnp.ones((2, 3))}),
            r"^tree_double: argument 'params' is not a PyTree JAX can flatten",
        ),
    ],
    ids=["shape raises", "unsortable dict keys"],
)
def test_unreadable_arguments_are_named_before_the_cache_key(make_call, message):
    with pytest.raises(ShapeError, match=message):
        make_call()


def tree_double(params: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
    return jax.tree.map(lambda leaf: 2 * leaf, params)


# Bug (input fuzzer; fixed in check.py and batched.py, 7efa7e7): a jax.ShapeDtypeStruct passed to a
# real call was accepted by the check (explain() and partition_specs() need it) and died inside vmap
# with "Argument 'args[0]' ... is not a valid JAX type". A call now checks with abstract=False.
def test_shape_dtype_struct_in_a_call_is_a_named_shape_error():
    with pytest.raises(ShapeError, match=r"^double: argument 'x' must be an array .* jax.ShapeDtypeStruct f32\[2,3\]"):
        batched(double, "b")(jax.ShapeDtypeStruct((2, 3), jnp.float32))


# Bug: a batch dim sized only by the output layout (``out="b=3 n"``) was checked against the
# arguments only at the very end, so an argument with another size got an error blaming
# "the return value" instead of naming the argument. Result layouts' sizes now bind first.
def test_batch_size_fixed_by_the_output_layout_names_the_argument():
    fixed = batched(double, "b", out="b=3 n")
    assert fixed(jnp.ones((3, 2))).shape == (3, 2)
    with pytest.raises(ShapeError) as info:
        fixed(jnp.ones((2, 2)))
    assert str(info.value).startswith(
        "double: dimension 'b' has size 3 in the layout 'b=3 n' of the return value, which fixes it\n"
        "but size 2 in argument 'x' (axis 0 of f32[2,2])"
    )


def add(x: Float[Array, ""], y: Float[Array, ""]) -> Float[Array, ""]:
    return x + y


# Bug (spec fuzzer): with "*batch" and an output layout without it (out=""), the result varies over
# the broadcast dims, which have no axis name; jax.vmap then says "at vmap out_axes, got axis spec
# None but output was batched on axis 0", a bare ValueError that was not translated.
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_result_varying_over_star_batch_without_it_in_the_layout_is_a_shape_error(jit):
    broadcast = batched(add, "*batch", out="")
    call = jax.jit(broadcast) if jit else broadcast
    with pytest.raises(
        ShapeError, match=r"^add: the return value varies over the batch dim '\*batch', but its layout has no"
    ):
        call(jnp.ones(2), jnp.arange(2.0))


def run_briefly(code: str) -> str:
    """Run ``code`` in a fresh interpreter that must finish within a minute; return what it printed."""
    header = "import jax.numpy as jnp\nfrom jaxtyping import Array, Float\nfrom shapedmap import ShapeError, SpecError, batched\n"
    completed = subprocess.run(
        [sys.executable, "-c", header + textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


# Bug (spec fuzzer): symbolic dims were eval()'d without bound, so an annotation like '9**9**9'
# decorated fine and the first call never finished (Python computing 9**387420489). Expressions are
# now interpreted with every step within 2**63, and a constant one that can never be a size
# (too large, negative, a division by zero) is a SpecError at decoration.
@pytest.mark.parametrize(
    ("dims", "reason"),
    [
        ("9**9**9", "is larger than 2**63"),
        ("0-5", "a dimension cannot be negative"),
        ("1//0", "divides by zero"),
        ("n//0", "divides by zero"),  # (spec fuzzer, later) with a name too: a literal zero divisor
        ("n%0", "divides by zero"),
        ("-n", "a dimension cannot be negative"),  # (spec fuzzer, later) negative for every positive n
    ],
)
def test_constant_expression_that_can_never_be_a_size_is_a_spec_error(dims, reason):
    printed = run_briefly(f"""
        def f(x: Float[Array, "n"]) -> Float[Array, {dims!r}]:
            return x

        try:
            batched(f, "b")
        except SpecError as error:
            print(error)
    """)
    assert printed.startswith(f"f: the return annotation Float[Array, {dims!r}]: the dimension expression {dims!r}")
    assert reason in printed


# Same bug, with names: 'n**(10**9)' can only be evaluated at the call, and jaxtyping's per-example
# check would compute it without bound inside the map; shapedmap now evaluates result expressions
# as soon as the arguments bind their names, and refuses this one by name.
def test_result_expression_too_large_for_the_arguments_is_a_shape_error_not_a_hang():
    printed = run_briefly("""
        def f(x: Float[Array, "n"]) -> Float[Array, "n**(10**9)"]:
            return x

        try:
            batched(f, "b")(jnp.ones((2, 3)))
        except ShapeError as error:
            print(error)
    """)
    assert printed.strip() == (
        "f: the dimension 'n**(10**9)' of the return value cannot be a size for these arguments (n=3): "
        "n**(10**9) is larger than 2**63, which no dimension can be"
    )


# Bug (spec fuzzer): a per-example result dim computed from a batch name ('2*n' where n is only a
# batch dim, "n k -> n 2*n") decorated, then every call died inside the map with jaxtyping's
# AnnotationError (not a TypeError, naming nothing): per example, a batch dim has no size. It is now
# a SpecError at decoration.
def test_result_expression_over_a_batch_name_is_a_spec_error():
    def f(x: Float[Array, "k"]) -> Float[Array, "2*n"]:
        return jnp.zeros(4)

    with pytest.raises(
        SpecError, match=r"^f: the dimension '2\*n' of the return value uses 'n', which only a batched layout"
    ):
        batched(f, "n k -> n 2*n")


# Bug (spec fuzzer): an output batch dim named like a core dim's label ('n' of 'n=3') or like an
# input's variadic ('rest' of '*rest') passed the "appears in no input layout" check, though neither
# gives it one size; every call then died in jax.vmap ("must have at least one non-None value in
# in_axes"). Only plain names and batch labels size an output batch dim now; the rest is a SpecError.
@pytest.mark.parametrize(
    ("dims", "spec"), [("n=3 m", "n=3 m -> n"), ("n *rest", "n *rest -> rest")], ids=["label", "variadic"]
)
def test_output_batch_dim_sized_by_no_input_is_a_spec_error(dims, spec):
    def total(x: Float[Array, dims]) -> Float[Array, ""]:
        return jnp.sum(x)

    name = spec.split("-> ")[1].split()[0]
    with pytest.raises(SpecError, match=rf"^total: the output batch dim '{name}' gets no size from the input layouts"):
        batched(total, spec)


# Bug (found in review): a per-example result of the wrong rank reached jax.vmap's out_axes first
# (bare "ValueError: axis 1 is out of bounds" for a non-leading output batch dim; for a leading one,
# a message blaming a missing batch dim); a non-array result was JAX's "not a valid JAX type".
@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("spec, shape", [("n b -> n b", (3, 4)), ("b n -> b n", (4, 3)), ("b", (4, 3))])
def test_wrong_rank_result_is_named_inside_the_map(jit, spec, shape):
    def total(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x.sum()  # the bug: one number per example, not a vector

    function = batched(total, spec)
    with pytest.raises(ShapeError) as info:
        (jax.jit(function) if jit else function)(jnp.ones(shape))
    assert str(info.value) == (
        "total: the return value of one example is f32[] (0 dims), but its per-example layout 'n' needs 1 "
        "(the map adds the batch dims to it)"
    )
    assert "raised inside the map of total over 'b' (size 4)" in "".join(info.value.__notes__)


def test_non_array_results_are_named_inside_the_map():
    def label(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return "s"

    def pair(x: Float[Array, "n"]) -> PyTree[Float[Array, "n"]]:
        return {"a": x, "b": object()}

    def first(x: Float[Array, "n"]) -> tuple[Float[Array, "n"], Float[Array, ""]]:
        return x

    with pytest.raises(ShapeError, match=r"^label: the return value should be an array, got str 's'"):
        batched(label, "b")(jnp.ones((4, 3)))
    with pytest.raises(ShapeError, match=r"^pair: the return value at \['b'\] should be an array, got object"):
        batched(pair, "b")(jnp.ones((4, 3)))
    with pytest.raises(
        ShapeError, match=r"^first: the return value should be a tuple of 2 \(its annotation\), got f32\[3\]"
    ):
        batched(first, "b")(jnp.ones((4, 3)))


def test_results_of_a_function_with_statics_are_checked_inside_the_map_on_every_call():
    class Model:
        def __init__(self) -> None:
            self.reduce = False

        def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return x.sum() if self.reduce else x

    model = Model()
    apply = batched(Model.apply, "n b -> n b")
    np.testing.assert_array_equal(apply(model, jnp.ones((3, 4))), jnp.ones((3, 4)))
    model.reduce = True  # same shapes, a different result: the cached call must still name it
    with pytest.raises(ShapeError, match=r"^Model.apply: the return value of one example is f32\[\]"):
        apply(model, jnp.ones((3, 4)))


# Bugs (result fuzzer, tests/test_fuzz_results.py): (1) a result with a shape and a dtype that JAX
# cannot hold (a NumPy str or object array, a ShapeDtypeStruct, a duck-typed object) passed the result
# check into JAX's bare "not a valid JAX type" (or came back to the caller unchanged); (2) a Python int
# too large for int32 leaked an OverflowError.
@pytest.mark.parametrize("jit", [False, True])
def test_results_jax_cannot_hold_are_named(jit):
    class Duck:
        shape, dtype = (3,), np.dtype("float32")

    bodies = {
        "a NumPy str array": (lambda x: np.full(x.shape, "a"), "ndarray"),
        "a NumPy object array": (lambda x: np.full(x.shape, None, dtype=object), "ndarray"),
        "a ShapeDtypeStruct": (lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), "ShapeDtypeStruct"),
        "a duck": (lambda x: Duck(), "Duck"),
    }
    for spec in ("b", "*batch"):
        for body, kind in bodies.values():

            def returns(x: Float[Array, "n"], body=body) -> Float[Array, "n"]:
                return body(x)

            function = batched(returns, spec)
            argument = jnp.ones((2, 3)) if spec == "b" else jnp.ones(3)
            with pytest.raises(ShapeError, match=rf"^returns: the return value should be an array, got {kind}"):
                (jax.jit(function) if jit else function)(argument)

    def huge(x: Float[Array, "n"]) -> Float[Array, ""]:
        return 2**70

    with pytest.raises(
        ShapeError,
        match=r"^huge: the return value should be an array, got int 1180591620717411303424, which does not fit int32",
    ):
        batched(huge, "b")(jnp.ones((2, 3)))


# Bug (result fuzzer): a result varying over a batch dim its layout lacks was "the result varies",
# naming no result of a tuple.
def test_a_result_that_varies_is_named():
    def stats(x: Float[Array, "n"], w: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
        return x.sum(), w + x.sum()

    with pytest.raises(ShapeError, match=r"^stats: result 1 varies over the batch dim 'b', but its layout has no 'b'"):
        batched(stats, "b n, n -> b, n")(jnp.ones((2, 3)), jnp.ones(3))


# Bug (result fuzzer): a nested tuple returned for a tuple annotation was described by a tracer's repr.
def test_a_nested_tuple_result_is_described_by_shapes():
    def stats(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
        return ((x.mean(), x),)

    with pytest.raises(ShapeError) as info:
        batched(stats, "b")(jnp.ones((2, 3)))
    assert str(info.value) == (
        "stats: the return value should be a tuple of 2 (its annotation), got tuple ((f32[], f32[3]),)"
    )


# Bug (result fuzzer): a Python or NumPy number for a result no batch dim maps (or for a call with
# no batch dim to map) came back as the body returned it: refused as "not an array" by the check,
# a NumPy float64 eagerly but float32 under jit. vmap makes the results it maps JAX arrays: so do these.
@pytest.mark.parametrize("jit", [False, True])
def test_unmapped_number_results_are_jax_arrays(jit):
    def constant(x: Float[Array, "n"], w: Float[Array, "n"]) -> Float[Array, ""]:
        return 1.5

    def numpy_constant(x: Float[Array, "n"], w: Float[Array, "n"]) -> Float[Array, ""]:
        return np.ones((), np.float64)

    for body in (constant, numpy_constant):
        for spec, args in [("b n, n -> ", (jnp.ones((2, 3)), jnp.ones(3))), ("*batch", (jnp.ones(3), jnp.ones(3)))]:
            function = batched(body, spec)
            for _ in range(2):  # checked, then cached
                out = (jax.jit(function) if jit else function)(*args)
                assert isinstance(out, jax.Array) and out.shape == () and out.dtype == jnp.float32, (body, spec)
