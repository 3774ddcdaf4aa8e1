"""Wrappers that keep the per-example contract are seen through (``_wrappers.contract_function``).

``batched(jax.jit(f), "b")`` reads ``f``'s annotations but still calls the ``jax.jit`` object, so
``jit``, ``custom_jvp`` and ``custom_vjp`` semantics apply inside the map: every case here equals
``jax.vmap`` of the same wrapper, and the custom derivatives (deliberately twice the true ones)
show in the batched gradient.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

from shapedmap import ShapeError, SpecError, batched
from shapedmap._wrappers import contract_function, function_name


def f(x: Float[Array, "n"], w: Float[Array, "n m"]) -> tuple[Float[Array, "m"], Float[Array, ""]]:
    """One example: a projection and a squared norm."""
    return x @ w, jnp.sum(x**2)


def _doubled_vjp() -> jax.custom_vjp:
    """``f`` with a VJP that is twice the true one."""
    wrapped = jax.custom_vjp(f)

    def fwd(x, w):
        return f(x, w), (x, w)

    def bwd(residuals, cotangents):
        x, w = residuals
        gy, gs = cotangents
        return 2 * (w @ gy + 2 * x * gs), 2 * jnp.outer(x, gy)

    wrapped.defvjp(fwd, bwd)
    return wrapped


def _doubled_jvp() -> jax.custom_jvp:
    """``f`` with a JVP that is twice the true one."""
    wrapped = jax.custom_jvp(f)

    @wrapped.defjvp
    def jvp(primals, tangents):
        (x, w), (dx, dw) = primals, tangents
        out = f(x, w)
        return out, (2 * (dx @ w + x @ dw), 2 * (2 * jnp.sum(x * dx)))

    return wrapped


def _wraps_decorator(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        return fn(*args, **kwargs)

    return inner


def _filter_jit(fn):
    eqx = pytest.importorskip("equinox")
    return eqx.filter_jit(fn)


X = jnp.arange(12.0).reshape(4, 3) / 10
W = jnp.arange(6.0).reshape(3, 2) / 10

# name -> (make the wrapper, the gradient factor its derivative rule gives)
WRAPPERS = {
    "jit": (lambda: jax.jit(f), 1),
    "custom_vjp": (_doubled_vjp, 2),
    "custom_jvp": (_doubled_jvp, 2),
    "jit(custom_jvp)": (lambda: jax.jit(_doubled_jvp()), 2),
    "jit(custom_vjp)": (lambda: jax.jit(_doubled_vjp()), 2),
    "checkpoint": (lambda: jax.checkpoint(f), 1),
    "wraps decorator": (lambda: _wraps_decorator(f), 1),
    "filter_jit": (lambda: _filter_jit(f), 1),
}


def _same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert left.shape == right.shape and left.dtype == right.dtype
        np.testing.assert_allclose(left, right, rtol=1e-6)


@pytest.mark.parametrize("name", WRAPPERS)
def test_equals_vmap_of_the_wrapper(name):
    wrapper = WRAPPERS[name][0]()
    mapped = batched(wrapper, "b", layouts={"w": "n m"})
    expected = jax.vmap(wrapper, in_axes=(0, None))(X, W)
    assert mapped.fn is wrapper
    _same(mapped(X, W), expected)
    _same(jax.jit(mapped)(X, W), expected)
    assert str(mapped.signature) == "b n, n m -> b m, b"


@pytest.mark.parametrize("name", ["custom_vjp", "custom_jvp", "jit(custom_jvp)", "jit(custom_vjp)", "jit"])
def test_gradient_uses_the_custom_rule(name):
    make, factor = WRAPPERS[name]
    wrapper = make()
    mapped = batched(wrapper, "b", layouts={"w": "n m"})
    vmapped = jax.vmap(wrapper, in_axes=(0, None))

    def loss(fn):
        return lambda x, w: sum(jnp.sum(leaf) for leaf in jax.tree.leaves(fn(x, w)))

    expected = jax.grad(loss(vmapped), argnums=(0, 1))(X, W)
    true = jax.grad(loss(jax.vmap(f, in_axes=(0, None))), argnums=(0, 1))(X, W)
    _same(expected, jax.tree.map(lambda g: factor * g, true))  # the rule differs from the truth
    _same(jax.grad(loss(mapped), argnums=(0, 1))(X, W), expected)
    _same(jax.jit(jax.grad(loss(mapped), argnums=(0, 1)))(X, W), expected)


def test_the_jit_is_called_inside_the_map():
    mapped = batched(jax.jit(f), "b", layouts={"w": "n m"})
    primitives = {eqn.primitive.name for eqn in jax.make_jaxpr(mapped)(X, W).jaxpr.eqns}
    assert primitives & {"jit", "pjit"}


def test_partial():
    wrapper = functools.partial(f, w=W)
    mapped = batched(wrapper, "b", layouts={"w": "n m"})
    expected = jax.vmap(wrapper)(X)
    _same(mapped(X), expected)
    _same(jax.jit(mapped)(X), expected)
    jitted = jax.jit(functools.partial(f, w=W))
    _same(batched(jitted, "b", layouts={"w": "n m"})(X), jax.vmap(jitted)(X))


def test_equinox_bound_method_and_filter_jit_of_it():
    eqx = pytest.importorskip("equinox")

    class Scale(eqx.Module):
        w: jax.Array

        def apply(self, x: Float[Array, "n"]) -> Float[Array, "m"]:
            return x @ self.w

    model = Scale(W)
    for wrapper in (model.apply, eqx.filter_jit(model.apply)):
        mapped = batched(wrapper, "b")
        _same(mapped(X), jax.vmap(wrapper)(X))
        _same(jax.jit(mapped)(X), jax.vmap(wrapper)(X))


def test_names_come_from_the_wrapped_function():
    stacked = jax.jit(_doubled_jvp())
    assert contract_function(stacked) is f
    assert function_name(stacked) == "f"
    with pytest.raises(ShapeError, match=r"^f: dimension 'n' has size 2 in argument 'x'"):
        batched(stacked, "b", layouts={"w": "n m"})(X[:, :2], W)


def test_callable_object_and_batched_function_keep_their_own_annotations():
    class Doubler:
        def __call__(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return 2 * x

    doubler = Doubler()
    assert contract_function(doubler) is doubler
    _same(batched(doubler, "b")(X), 2 * X)
    inner = batched(f, "b", layouts={"w": "n m"})
    assert contract_function(jax.jit(inner)) is inner  # the batched annotations, not f's
    outer = batched(jax.jit(inner), "c", layouts={"w": "n m"})
    _same(outer(X[None], W), jax.vmap(inner, in_axes=(0, None))(X[None], W))


def _unannotated(x, w):
    return x @ w


@pytest.mark.parametrize(
    ("make", "wrappers"),
    [
        (lambda: jax.jit(_unannotated), "jax.jit"),
        (lambda: jax.custom_jvp(_unannotated), "jax.custom_jvp"),
        (lambda: jax.custom_vjp(_unannotated), "jax.custom_vjp"),
        (lambda: jax.jit(jax.custom_jvp(_unannotated)), "jax.custom_jvp inside jax.jit"),
    ],
)
def test_unannotated_inner_function_says_what_to_annotate(make, wrappers):
    with pytest.raises(SpecError) as caught:
        batched(make(), "b")
    message = str(caught.value)
    assert message.startswith(f"_unannotated: the function that {wrappers} wraps has no annotations")
    assert "so 'x' and 'w' are held static (never mapped): give them layouts" in message
    assert "layouts={'x': 'b ...', 'w': 'b ...'}" in message
    assert "or annotate the parameters and the return value of _unannotated itself" in message
    assert "x: Float[Array, 'n']" in message
