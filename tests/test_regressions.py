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

from shapedmap import ShapeError, batched


# Bug: a parameter annotated ``Callable[[Array], Array]`` was read as a PyTree of arrays (Callable's
# arguments looked like container contents), so passing a function raised "must be an array".
def test_callable_annotation_is_static():
    def apply_op(x: Float[Array, "n"], op: Callable[[Array], Array]) -> Float[Array, ""]:
        return jnp.sum(op(x))

    applied = batched(apply_op, "b")
    assert applied.in_axes == {"b": (0, None)}
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
