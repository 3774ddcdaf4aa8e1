"""Broadcasting dims bind the same way whatever the order of the parameters.

jaxtyping's rule for a variadic ``*foo``: the shapes of plain ``*foo`` tokens are equal, and the
shapes of ``*#foo`` tokens broadcast to them (or, with no plain token, with each other). A single
``#n`` of size 1 is skipped. Neither depends on which argument comes first, so neither may in
shapedmap: a later plain binding widens an earlier broadcasting one, and a real conflict is a
``ShapeError`` naming both arguments and both shapes (docs/architecture.md, Guarantees: loop,
messages). The oracles are jaxtyping's own verdict on the unbatched function and the
hand-written ``jax.vmap``.
"""

from __future__ import annotations

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from beartype import beartype
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import Array, Float, TypeCheckError, jaxtyped

from shapedmap import ShapeError, batched

BATCH = 2
FAMILIES = {"variadic": ("*foo", "*#foo"), "single": ("n", "#n")}


def make_function(parameters: list[tuple[str, str]], result: str) -> object:
    """``def f(<name>: Float[Array, <token>], ...) -> Float[Array, result]``: the sum of its arguments."""
    signature = ", ".join(f"{name}: Float[Array, {token!r}]" for name, token in parameters)
    names = ", ".join(name for name, _ in parameters)
    source = f"def f({signature}) -> Float[Array, {result!r}]:\n    return functools.reduce(jnp.add, ({names},))\n"
    namespace = {"Array": Array, "Float": Float, "functools": functools, "jnp": jnp}
    exec(source, namespace)
    return namespace["f"]


def example_values(shapes: list[tuple[int, ...]]) -> list[jax.Array]:
    """Batched arrays of distinct whole numbers (sums are exact, in any order)."""
    values = []
    for index, shape in enumerate(shapes):
        size = int(np.prod((BATCH, *shape)))
        values.append(jnp.arange(size, dtype=jnp.float32).reshape((BATCH, *shape)) + 100 * index)
    return values


@st.composite
def parameters(draw: st.DrawFn, family: str) -> list[tuple[str, str, tuple[int, ...]]]:
    """2-3 parameters of one family; most agree with one target shape, some conflict."""
    plain, broadcasting = FAMILIES[family]
    sizes = st.integers(1, 3)
    target = tuple(draw(st.lists(sizes, max_size=3))) if family == "variadic" else (draw(sizes),)
    drawn = []
    for index in range(draw(st.integers(2, 3))):
        token = draw(st.sampled_from((plain, broadcasting)))
        shape = target
        if token == broadcasting:  # what broadcasts to the target: axes of 1, leading axes dropped
            dropped = draw(st.integers(0, len(target))) if family == "variadic" else 0
            shape = tuple(1 if draw(st.booleans()) else size for size in target[dropped:])
        if draw(st.integers(0, 3)) == 0:  # any shape at all: often a conflict
            rank = draw(st.integers(0, 3)) if family == "variadic" else 1
            shape = tuple(draw(st.lists(sizes, min_size=rank, max_size=rank)))
        drawn.append((f"x{index}", token, shape))
    return drawn


def jaxtyping_accepts(function: object, values: list[jax.Array]) -> bool:
    """jaxtyping's verdict on one example (the unbatched function, its arguments' first entries)."""
    try:
        jaxtyped(typechecker=beartype)(function)(*(value[0] for value in values))
    except TypeCheckError:
        return False
    return True


def assert_names_both_sides(message: str, names: list[str], values: list[jax.Array]) -> None:
    """The message names two different arguments, each with its own array."""
    described = {name: f"f32[{','.join(map(str, value.shape))}]" for name, value in zip(names, values, strict=True)}
    named = re.findall(r"in argument '(x\d)' \(ax[a-z]+ [\d.]+ of (f32\[[\d,]*\])\)", message)
    assert len({name for name, _ in named}) == 2, message
    for name, array in named:
        assert array == described[name], message


@pytest.mark.parametrize("family", sorted(FAMILIES))
@given(data=st.data())
def test_every_parameter_order_gives_jaxtypings_verdict_and_the_vmap_value(family: str, data: st.DataObject) -> None:
    drawn = data.draw(parameters(family))
    result = FAMILIES[family][0]
    outcomes = []
    for order in itertools.permutations(drawn):
        names = [name for name, _, _ in order]
        function = make_function([(name, token) for name, token, _ in order], result)
        values = example_values([shape for _, _, shape in order])
        accepted = jaxtyping_accepts(function, values)
        if accepted:
            got = batched(function, "batch")(*values)
            expected = jax.vmap(function)(*values)
            assert got.shape == expected.shape
            np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
            outcomes.append(np.asarray(got))
        else:
            with pytest.raises(ShapeError, match=r"^f: ") as raised:
                batched(function, "batch")(*values)
            assert_names_both_sides(str(raised.value), names, values)
            outcomes.append(None)
    first = outcomes[0]
    for outcome in outcomes[1:]:  # one verdict, and one value, for every order
        assert (outcome is None) == (first is None)
        if first is not None:
            np.testing.assert_array_equal(outcome, first)


def add_broadcast_first(x: Float[Array, "*#foo"], y: Float[Array, "*foo"]) -> Float[Array, "*foo"]:
    return x + y


def add_plain_first(y: Float[Array, "*foo"], x: Float[Array, "*#foo"]) -> Float[Array, "*foo"]:
    return x + y


def test_a_plain_variadic_widens_an_earlier_broadcasting_one() -> None:
    x, y = jnp.arange(12.0).reshape(4, 1, 3), jnp.arange(24.0).reshape(4, 2, 3)
    expected = jax.vmap(add_broadcast_first)(x, y)
    got_first = batched(add_broadcast_first, "batch")(x, y)
    got_second = batched(add_plain_first, "batch")(y, x)
    assert got_first.shape == got_second.shape == (4, 2, 3)
    np.testing.assert_array_equal(got_first, expected)
    np.testing.assert_array_equal(got_second, expected)


@pytest.mark.parametrize("function", [add_broadcast_first, add_plain_first])
def test_a_broadcasting_shape_that_does_not_fit_the_plain_one_is_named_the_same_in_either_order(function) -> None:
    x, y = jnp.ones((4, 2, 3)), jnp.ones((4, 3, 3))
    arguments = (x, y) if function is add_broadcast_first else (y, x)
    expected = (
        rf"^{function.__name__}: the dims '\*foo' are \(2, 3\) in argument 'x' \(axes 1..2 of f32\[4,2,3\]\), "
        r"which does not broadcast to \(3, 3\) in argument 'y' \(axes 1..2 of f32\[4,3,3\]\)$"
    )
    with pytest.raises(ShapeError, match=expected):
        batched(function, "batch")(*arguments)


def both_broadcasting(x: Float[Array, "*#foo"], y: Float[Array, "*#foo"], scale: float) -> Float[Array, "*foo"]:
    return (x + y) * scale


def test_broadcasting_shapes_that_do_not_broadcast_with_each_other_are_named() -> None:
    with pytest.raises(ShapeError, match=r"the dims '\*foo' do not broadcast: \(2, 1\) in argument 'x'.*\n"):
        batched(both_broadcasting, "batch")(jnp.ones((4, 2, 1)), jnp.ones((4, 3, 1)), 1.0)


def test_a_remembered_call_binds_its_result_as_the_first_call_did() -> None:
    """A static argument makes every call check its results, from the remembered bindings."""
    function = batched(both_broadcasting, "batch")
    x, y = jnp.arange(8.0).reshape(4, 2, 1), jnp.arange(12.0).reshape(4, 1, 3)
    expected = jax.vmap(both_broadcasting, in_axes=(0, 0, None))(x, y, 2.0)
    for _ in range(2):
        np.testing.assert_array_equal(function(x, y, 2.0), expected)
