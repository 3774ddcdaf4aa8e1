"""What ``_compat`` reads of JAX that JAX does not publish: it must hold on every supported JAX.

CI runs this file on the lowest and on the newest supported JAX. If a JAX release changes how
``jax.grad`` or ``jax.value_and_grad`` keep their options, these tests fail there first.
"""

import functools

import jax
import pytest

from shapedmap._compat import Derivative, derivative_of, loaded_jit_function


def loss(w, x, y):
    return ((w * x).sum() - y) ** 2


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (jax.grad(loss), Derivative("jax.grad", 0, False)),
        (jax.grad(loss, argnums=2), Derivative("jax.grad", 2, False)),
        (jax.grad(loss, argnums=(0, 1)), Derivative("jax.grad", (0, 1), False)),
        (jax.grad(loss, has_aux=True), Derivative("jax.grad", 0, True)),
        (jax.grad(loss, argnums=(1,), has_aux=True), Derivative("jax.grad", (1,), True)),
        (jax.value_and_grad(loss), Derivative("jax.value_and_grad", 0, False)),
        (jax.value_and_grad(loss, argnums=(0, 2), has_aux=True), Derivative("jax.value_and_grad", (0, 2), True)),
    ],
)
def test_the_gradient_transforms_and_their_options_are_read(made, expected):
    assert derivative_of(made) == expected


@pytest.mark.parametrize(
    ("made", "transform"),
    [
        (jax.jacrev(loss), "jax.jacrev"),
        (jax.jacfwd(loss), "jax.jacfwd"),
        (jax.hessian(loss), "jax.hessian"),
        (jax.vmap(loss), "jax.vmap"),
    ],
)
def test_transforms_with_an_underivable_result_are_named(made, transform):
    derivative = derivative_of(made)
    assert derivative is not None and derivative.transform == transform and not derivative.readable


@pytest.mark.parametrize(
    "made",
    [loss, jax.checkpoint(loss), functools.wraps(loss)(lambda *a: loss(*a)), jax.named_call(loss)],
    ids=["plain", "checkpoint", "functools.wraps", "named_call"],
)
def test_wrappers_that_keep_the_result_are_not_derivatives(made):
    assert derivative_of(made) is None


def test_objects_are_not_derivatives():
    assert derivative_of(jax.jit(jax.grad(loss))) is None  # the caller unwraps jit first
    assert derivative_of(functools.partial(jax.grad(loss), 1.0)) is None


def test_equinox_filter_transforms_are_read():
    eqx = pytest.importorskip("equinox")
    assert derivative_of(eqx.filter_grad(loss)) == Derivative("equinox.filter_grad", 0, False, filtered=True)
    made = eqx.filter_value_and_grad(loss, has_aux=True)
    assert derivative_of(made) == Derivative("equinox.filter_value_and_grad", 0, True, filtered=True)
    assert derivative_of(made).with_value and not derivative_of(eqx.filter_grad(loss)).with_value


@pytest.mark.parametrize(
    "made",
    [jax.grad(loss, argnums=(0, 2)), jax.grad(loss, has_aux=True), jax.value_and_grad(loss, argnums=1)],
    ids=["grad", "grad has_aux", "value_and_grad"],
)
def test_a_transform_loaded_by_cloudpickle_reads_as_the_original(made):
    """cloudpickle rebuilds JAX's closures by value: new code objects, equal to the originals."""
    cloudpickle = pytest.importorskip("cloudpickle")
    loaded = cloudpickle.loads(cloudpickle.dumps(made))
    assert loaded.__code__ is not made.__code__
    assert derivative_of(loaded) == derivative_of(made)


def test_a_jit_loaded_by_cloudpickle_gives_its_function():
    """cloudpickle restores a jax.jit without the __wrapped__ functools.wraps set; the function is still there."""
    cloudpickle = pytest.importorskip("cloudpickle")
    loaded = cloudpickle.loads(cloudpickle.dumps(jax.jit(jax.grad(loss))))
    assert getattr(loaded, "__wrapped__", None) is None
    assert derivative_of(loaded_jit_function(loaded)) == Derivative("jax.grad", 0, False)
    assert loaded_jit_function(jax.grad(loss)) is None and loaded_jit_function(loss) is None
