"""What the views show a new user: ``explain`` text that pastes into the module of a function
decorated in place and maps it once (docs/architecture.md, Guarantees: shown); the name help() and
describe() give a batched callable object or partial; a scalar's empty layout in a signature; the
public import path of a class in generated tables.
"""

import functools
import pydoc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

from shapedmap import batched, describe, explain

eqx = pytest.importorskip("equinox")


@batched("b")
def norm(x: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.sqrt(x @ x)


def test_explain_pastes_into_the_module_of_a_decorated_function():
    x = jnp.arange(12.0).reshape(4, 3)
    text = explain(norm, x)
    assert "norm_per_example = norm.fn  # the per-example function, under @batched" in text
    assert "jax.vmap(norm_per_example, in_axes=0" in text
    assert "`norm` is the batched function (@batched rebinds the name)" in text
    namespace = dict(globals())  # this module, where `norm` is the batched function
    exec(text, namespace)
    np.testing.assert_allclose(namespace["batched_norm"](x), jax.vmap(norm.fn)(x))
    np.testing.assert_allclose(namespace["batched_norm"](x), norm(x))


class Attention(eqx.Module):
    weight: Array

    def __call__(self, x: Float[Array, "n"], scale: float = 1.0) -> Float[Array, "n"]:
        return scale * (self.weight @ x)


@pytest.mark.parametrize(
    "make", [lambda m: m, lambda m: functools.partial(m, scale=2.0), lambda m: jax.tree_util.Partial(m, scale=2.0)]
)
def test_a_batched_object_or_partial_is_named_as_the_user_named_it(make):
    model = Attention(jnp.eye(3))
    mapped = batched(make(model), "b")
    assert mapped.__name__ == "Attention" and mapped.__qualname__ == "Attention"
    assert describe(mapped).name == "Attention"
    page = pydoc.render_doc(mapped, renderer=pydoc.plaintext)
    assert page.splitlines()[0] == f"Python Library Documentation: function Attention in module {__name__}"
    assert "Attention(x: " in page and "wrapper" not in page
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(mapped(x), jax.vmap(make(model))(x))


def test_a_partial_of_a_function_keeps_the_functions_name():
    def scaled(x: Float[Array, "n"], factor: float) -> Float[Array, "n"]:
        return x * factor

    mapped = batched(functools.partial(scaled, factor=2.0), "b")
    assert mapped.__name__ == "scaled" and describe(mapped).name == "scaled"


def displacement(ra: Float[Array, "d"], rb: Float[Array, "d"], box: Float[Array, ""]) -> Float[Array, "d"]:
    return (ra - rb) % box


def test_a_scalars_empty_layout_keeps_one_space():
    mapped = batched(displacement, "i d, j d, -> j i d")
    assert mapped.signature == "i d, j d, -> j i d"
    assert describe(mapped).signature == "i d, j d, -> j i d"
    assert batched(displacement, mapped.signature).signature == mapped.signature  # it reads back
    ra, rb = jnp.arange(6.0).reshape(2, 3), jnp.arange(12.0).reshape(4, 3)
    expected = jax.vmap(jax.vmap(displacement, (0, None, None)), (None, 0, None))(ra, rb, 5.0)
    np.testing.assert_array_equal(mapped(ra, rb, jnp.float32(5.0)), expected)


def test_generated_tables_name_a_class_by_its_public_path():
    def apply(x: Float[Array, "n"], dropout: eqx.nn.Dropout) -> Float[Array, "n"]:
        return x

    contract = describe(batched(apply, "b"))
    assert [p.annotation for p in contract.parameters] == ["Float[Array, 'n']", "equinox.nn.Dropout"]
    assert "equinox.nn.Dropout" in contract.to_markdown() and "_dropout" not in contract.to_markdown()
