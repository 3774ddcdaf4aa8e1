"""Results that came back wrong without an error, and the class checks beside them.

* Symbolic sizes: a result size JAX cannot prove equal to its annotation is a ``ShapeError``
  (docs/scaling.md, "Exporting with symbolic shapes"), as ``jax.vmap(jaxtyped(fn))`` refuses it.
* An object that states its own shape (distrax#239): after batching, its stated shape must
  account for the batch dims its arrays gained (docs/architecture.md, Guarantees: results).
* A ``PyTree[Params]`` argument that is not made of ``Params``, a result that is not its
  annotated class.

The silent ones are tested eagerly and under ``jax.jit``; every message by its text.
"""

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from beartype import beartype
from jax import export
from jaxtyping import Array, Float, PyTree, jaxtyped

from shapedmap import ShapeError, batched


def raises_message(message: str) -> Any:
    """``pytest.raises(ShapeError)`` of exactly ``message`` (under a trace JAX may add its traceback line)."""
    return pytest.raises(ShapeError, match=f"^{re.escape(message)}(\n-+\nFor simplicity.*)?$")


JIT = [pytest.param(False, id="eager"), pytest.param(True, id="jit")]


def maybe_jit(fn: Callable[..., Any], jit: bool) -> Callable[..., Any]:
    return jax.jit(fn) if jit else fn


# -- symbolic sizes -------------------------------------------------------------------------------


def transposed(x: Float[Array, "n m"]) -> Float[Array, "n m"]:
    return x.T


def turned(x: Float[Array, "n 2"]) -> Float[Array, "n 2"]:
    return x.T


def dropped(x: Float[Array, "n"]) -> Float[Array, "n-3"]:
    return x[3:]  # JAX's size: n - min(n, 3); with the constraint n >= 3, n - 3


def specs(text: str, constraints: tuple[str, ...] = ()) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(export.symbolic_shape(text, constraints=constraints), jnp.float32)


# How a batched function meets symbolic shapes: traced as it is (eager code under eval_shape), and
# under jax.jit (eval_shape, and jax.export, which is what exports it).
TRACES: dict[str, Callable[[Callable[..., Any], Any], Any]] = {
    "eager": lambda fn, spec: jax.eval_shape(fn, spec),
    "jit": lambda fn, spec: jax.eval_shape(jax.jit(fn), spec),
    "export": lambda fn, spec: export.export(jax.jit(fn))(spec).out_avals[0],
}


def refused_by_jaxtyping(fn: Callable[..., Any], spec: Any) -> bool:
    """Does ``jax.vmap(jaxtyped(typechecker=beartype)(fn))`` refuse these symbolic shapes?"""
    try:
        jax.eval_shape(jax.vmap(jaxtyped(typechecker=beartype)(fn)), spec)
    except TypeError:  # jaxtyping's TypeCheckError
        return True
    return False


SWAPPED_OR_FIXED = {
    "dims swapped": (
        transposed,
        "b, n, m",
        "transposed: dimension 'n' has size n in argument 'x' (axis 1 of f32[b,n,m])\n"
        "but size m in the return value (axis 1 of f32[b,m,n])\n"
        "  the return value has layout 'b n m': expected (b=b, n=n, m=m), got f32[b,m,n]\n"
        "  (JAX cannot prove these symbolic sizes equal, and jax.vmap and jaxtyping take sizes as equal only "
        "where it can: distinct symbols are distinct sizes. If m and n are one size, export them as one symbol, "
        "or say so: jax.export.symbolic_shape(..., constraints=('m == n',)))",
    ),
    "a symbol for a fixed size": (
        turned,
        "b, n, 2",
        "turned: dimension 'n' has size n in argument 'x' (axis 1 of f32[b,n,2])\n"
        "but size 2 in the return value (axis 1 of f32[b,2,n])\n"
        "  the return value has layout 'b n 2': expected (b=b, n=n, 2), got f32[b,2,n]\n"
        "  (JAX cannot prove these symbolic sizes equal, and jax.vmap and jaxtyping take sizes as equal only "
        "where it can: a symbol is not a fixed size. If n is always 2, export it as 2, "
        "or say so: jax.export.symbolic_shape(..., constraints=('n == 2',)))",
    ),
}


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize(("fn", "shape", "message"), SWAPPED_OR_FIXED.values(), ids=SWAPPED_OR_FIXED.keys())
def test_a_result_with_dims_swapped_or_a_symbol_for_a_fixed_size_is_refused(fn, shape, message, trace):
    spec = specs(shape)
    assert refused_by_jaxtyping(fn, spec)
    with raises_message(message):
        TRACES[trace](batched(fn, "b"), spec)


@pytest.mark.parametrize("trace", TRACES)
def test_a_result_size_jax_cannot_decide_is_refused_with_the_constraint_that_decides_it(trace):
    spec = specs("b, n")
    assert refused_by_jaxtyping(dropped, spec)
    with pytest.raises(ShapeError) as raised:
        TRACES[trace](batched(dropped, "b"), spec)
    message = str(raised.value)
    # How JAX prints n - min(n, 3) is its own business: the parts of ours are checked, not its rendering.
    assert message.startswith(
        "dropped: dimension 'n-3' of layout 'b n-3' should be n - 3 (n=n from argument 'x' (axis 1 of f32[b,n])),\n"
        "but the return value (axis 1 of f32[b,"
    ), message
    assert "JAX cannot prove these symbolic sizes equal" in message
    assert "With jax.export.symbolic_shape(..., constraints=('n >= 3',)) JAX reduces " in message
    assert "to n - 3, and the sizes agree)" in message


@pytest.mark.parametrize("trace", TRACES)
def test_the_constraints_that_decide_a_size_make_it_accepted(trace):
    """With the constraints the hints give, JAX proves the sizes equal, and jaxtyping accepts them too."""
    n_at_least_3 = specs("b, n", ("n >= 3",))
    assert not refused_by_jaxtyping(dropped, n_at_least_3)
    assert str(TRACES[trace](batched(dropped, "b"), n_at_least_3).shape) == "(b, n - 3)"
    square = specs("b, n, m", ("m == n",))
    assert not refused_by_jaxtyping(transposed, square)
    assert str(TRACES[trace](batched(transposed, "b"), square).shape) == "(b, n, n)"


def test_batch_sizes_of_distinct_symbols_get_the_constraint_that_makes_them_one():
    def add(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + y

    scope = export.SymbolicScope()
    x, y = (jax.ShapeDtypeStruct(export.symbolic_shape(text, scope=scope), jnp.float32) for text in ("a, 3", "b, 3"))
    with pytest.raises(ShapeError) as raised:
        jax.eval_shape(batched(add, "batch"), x, y)
    assert str(raised.value).endswith(
        "distinct symbols are distinct sizes. If a and b are one size, export them as one symbol, "
        "or say so: jax.export.symbolic_shape(..., constraints=('b == a',)))"
    )


# -- distrax#239: an object result that states one example's shape --------------------------------


@jax.tree_util.register_pytree_node_class
class Cached:
    """States its shape as static data fixed when it is built, as distrax's distributions keep theirs."""

    def __init__(self, mean: Any, shape: tuple[int, ...] | None = None) -> None:
        self.mean = mean
        self.shape = tuple(mean.shape) if shape is None else shape

    def tree_flatten(self) -> tuple[tuple[Any], tuple[int, ...]]:
        return (self.mean,), self.shape

    @classmethod
    def tree_unflatten(cls, shape: tuple[int, ...], children: tuple[Any]) -> "Cached":
        return cls(*children, shape=shape)


@jax.tree_util.register_pytree_node_class
class Reading:
    """States its shape by reading its array: after batching it states the batch dims too."""

    def __init__(self, mean: Any) -> None:
        self.mean = mean

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    def tree_flatten(self) -> tuple[tuple[Any], None]:
        return (self.mean,), None

    @classmethod
    def tree_unflatten(cls, _: None, children: tuple[Any]) -> "Reading":
        return cls(*children)


def summary(x: Float[Array, "n"]) -> Any:
    return {"total": x.sum(), "stats": Cached(x - x.mean())}


def read_summary(x: Float[Array, "n"]) -> Any:
    return {"total": x.sum(), "stats": Reading(x - x.mean())}


@pytest.mark.parametrize("jit", JIT)
def test_an_object_stating_one_examples_shape_is_refused(jit):
    x = jnp.arange(12.0).reshape(4, 3)
    by_hand = jax.vmap(summary)(x)["stats"]
    assert by_hand.mean.shape == (4, 3) and by_hand.shape == (3,)  # what vmap (and a stacking loop) return
    message = (
        "summary: the return value at ['stats'] is a Cached whose shape is (3,), but its arrays gained the batch dim "
        "b=4, so it should be (4, 3). The object keeps the shape one example built it with as static data, which "
        "jax.vmap does not batch (stacking the examples in a loop would not either): what reads it (.sample(), "
        ".log_prob(), .entropy(), ...) would compute with one example's shape. Return arrays (what the object is "
        "built from) and build it from the batched arrays after the call, or compute what you need of it "
        "(.sample(), .log_prob(x), ...) inside the function"
    )
    with raises_message(message):
        maybe_jit(batched(summary, "b"), jit)(x)


@pytest.mark.parametrize("jit", JIT)
def test_an_object_whose_shape_reads_its_arrays_is_accepted(jit):
    x = jnp.arange(12.0).reshape(4, 3)
    got = maybe_jit(batched(read_summary, "b"), jit)(x)
    expected = jax.vmap(read_summary)(x)
    assert got["stats"].shape == expected["stats"].shape == (4, 3)
    np.testing.assert_array_equal(got["stats"].mean, expected["stats"].mean)
    np.testing.assert_array_equal(got["total"], expected["total"])


@pytest.mark.parametrize("jit", JIT)
def test_a_distrax_distribution_built_per_example_is_refused(jit):
    """distrax#239: batch_shape + event_shape (1,) while loc is (4, 1); .sample() would give (4, 4)."""
    distrax = pytest.importorskip("distrax")

    def apply(x: Float[Array, "1"], s: Float[Array, "1"]) -> distrax.MultivariateNormalDiag:
        return distrax.MultivariateNormalDiag(x, s)

    x, s = jnp.zeros((4, 1)), jnp.ones((4, 1))
    assert jax.vmap(apply)(x, s).batch_shape == ()  # the bug, silent under jax.vmap
    message = (
        "apply: the return value is a MultivariateNormalDiag whose batch_shape + event_shape is (1,), but its "
        "arrays gained the batch dim b=4, so it should be (4, 1). The object keeps the shape"
    )
    with pytest.raises(ShapeError, match=f"^{re.escape(message)}"):
        maybe_jit(batched(apply, "b"), jit)(x, s)


@pytest.mark.parametrize("jit", JIT)
def test_a_distrax_distribution_whose_shape_reads_its_arrays_is_accepted(jit):
    distrax = pytest.importorskip("distrax")

    def apply(x: Float[Array, "3"], s: Float[Array, "3"]) -> distrax.Normal:
        return distrax.Normal(x, jnp.exp(s))

    x, s = jnp.zeros((4, 3)), jnp.ones((4, 3))
    got = maybe_jit(batched(apply, "b"), jit)(x, s)
    assert got.batch_shape == (4, 3) and got.event_shape == ()
    np.testing.assert_array_equal(got.entropy(), jax.vmap(apply)(x, s).entropy())


def test_a_distrax_distribution_that_does_not_hold_together_once_batched_is_refused():
    distrax = pytest.importorskip("distrax")

    def apply(x: Float[Array, "3"]) -> distrax.Normal:
        return distrax.Normal(x, 1.0)  # the scale batches to (4,), which (4, 3) does not broadcast with

    message = (
        "apply: the return value is a Normal whose batch_shape + event_shape cannot be read once its arrays gained "
        "the batch dim b=4 (ValueError: Incompatible shapes for broadcasting: shapes=[(4, 3), (4,)]); it should be "
        "(4, 3). Built for one example, it does not hold together once jax.vmap puts the batch dims in front of each "
        "of its arrays."
    )
    with pytest.raises(ShapeError, match=f"^{re.escape(message)}"):
        batched(apply, "b")(jnp.zeros((4, 3)))


# -- a PyTree of a class, a result of a class ------------------------------------------


class Params(NamedTuple):
    w: Float[Array, "n"]
    b: Float[Array, ""]


def apply(params: PyTree[Params], x: Float[Array, "n"]) -> Float[Array, ""]:
    return params.w @ x + params.b


@pytest.mark.parametrize("jit", JIT)
def test_a_dict_where_a_pytree_of_a_class_is_annotated_is_refused(jit):
    params, x = {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}, jnp.ones((4, 3))
    with pytest.raises(TypeError):  # what jaxtyping says of it
        jax.vmap(jaxtyped(typechecker=beartype)(apply))(params, x)
    message = (
        "apply: argument 'params' should be a Params (or a PyTree of them: it is annotated PyTree[Params]), got dict "
        "{'b': f32[4], 'w': f32[4,3]}. JAX flattens both into the same arrays, but the function reads a Params (its "
        "fields, its methods): pass one, e.g. Params(**params)"
    )
    with raises_message(message):
        maybe_jit(batched(apply, "b"), jit)(params, x)
    got = maybe_jit(batched(apply, "b"), jit)(Params(**params), x)  # what it asks for
    np.testing.assert_array_equal(got, jnp.full(4, 4.0))


def make(x: Float[Array, "n"]) -> Params:
    return (x, x.sum())


def made(x: Float[Array, "n"]) -> Params:
    return Params(x, x.sum())


@pytest.mark.parametrize("jit", JIT)
def test_a_tuple_returned_where_a_named_tuple_is_annotated_is_refused(jit):
    x = jnp.ones((4, 3))
    assert type(jax.vmap(make)(x)) is tuple  # what jax.vmap returns, silently
    message = (
        "make: the return value should be a Params, got tuple (f32[4,3], f32[4]). JAX flattens both into the same "
        "arrays, but its caller reads a Params (its fields, its methods): return one, e.g. Params(*values)"
    )
    with raises_message(message):
        maybe_jit(batched(make, "b"), jit)(x)
    assert type(maybe_jit(batched(made, "b"), jit)(x)) is Params


def test_results_of_any_or_no_annotation_are_not_held_to_a_class():
    def anything(x: Float[Array, "n"]) -> Any:
        return (x, x.sum())

    def unannotated(x: Float[Array, "n"]):
        return (x, x.sum())

    for fn in (anything, unannotated):
        assert type(batched(fn, "b")(jnp.ones((4, 3)))) is tuple
