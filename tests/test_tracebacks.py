"""The traceback of an error raised through a batched function ends at the user's call, eagerly and
under ``jax.jit``: shapedmap's own frames are cut (JAX and Equinox hide theirs), the body's frames
are kept, and ``config.full_tracebacks`` / ``SHAPEDMAP_FULL_TRACEBACKS=1`` keep everything.
"""

import os
import subprocess
import sys
import traceback

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array, Float

import shapedmap
from shapedmap import ShapeError, batched, config

PACKAGE = os.path.dirname(shapedmap.__file__)


@batched("b")
def product(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return x @ y


class BodyFailed(Exception):
    pass


@batched("b")
def fails(x: Float[Array, "n"]) -> Float[Array, "n"]:
    raise BodyFailed("in the body")


def frames(error):
    return traceback.extract_tb(error.__traceback__)


def internal(frame):
    return frame.filename.startswith(PACKAGE) and os.path.basename(frame.filename).startswith("_")


def call_product(transform):
    return transform(product)(jnp.ones((7, 3, 5)), jnp.ones((7, 2, 5)))  # the user's line


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_a_shape_error_ends_at_the_callers_line(transform):
    with pytest.raises(ShapeError, match="dimension 'm' has size 5 in argument 'x'") as caught:
        call_product(transform)
    stack = frames(caught.value)
    assert not any(internal(frame) for frame in stack), [frame.filename for frame in stack]
    assert stack[-1].name == "call_product" and "the user's line" in stack[-1].line


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_an_error_of_the_body_keeps_the_bodys_frame(transform):
    with pytest.raises(BodyFailed) as caught:
        transform(fails)(jnp.ones((2, 3)))
    stack = frames(caught.value)
    assert stack[-1].name == "fails"
    assert not any(internal(frame) for frame in stack)


def test_full_tracebacks_keep_shapedmap_frames():
    saved, config.full_tracebacks = config.full_tracebacks, True
    try:
        with pytest.raises(ShapeError) as caught:
            call_product(lambda f: f)
    finally:
        config.full_tracebacks = saved
    stack = frames(caught.value)
    assert internal(stack[-1])  # raised inside shapedmap's binding
    assert [frame.name for frame in stack if not internal(frame)][-1] == "call_product"


def test_the_environment_variable_sets_full_tracebacks():
    code = "import shapedmap; print(shapedmap.config.full_tracebacks)"
    environment = {**os.environ, "SHAPEDMAP_FULL_TRACEBACKS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


def test_a_cause_is_kept():
    class Wrapped(Exception):
        pass

    @batched("b")
    def chained(x: Float[Array, "n"]) -> Float[Array, "n"]:
        try:
            raise KeyError("inner")
        except KeyError as error:
            raise Wrapped("outer") from error

    with pytest.raises(Wrapped) as caught:
        chained(jnp.ones((2, 3)))
    assert isinstance(caught.value.__cause__, KeyError)
