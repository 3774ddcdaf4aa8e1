"""A call whose array shapes were seen before is checked exactly as strictly as a fresh call.

shapedmap remembers the argument check of each abstract signature (shapes, dtypes, weak types,
array types, x64) so eager calls stay cheap. Everything that can differ between two calls with
that signature is still checked on every call: static values, argument conversion, and the
results. Each case: a first call that passes, then a second call that must fail as it would on a
freshly decorated function — eagerly and under ``jax.jit``.
"""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Float16, Int, Int32, PyTree

from shapedmap import ShapeError, batched

X = jnp.ones((2, 3))


class Model:
    def __init__(self, width: int) -> None:
        self.width = width
        self.weights = np.zeros(1_000_000)  # big: a cache that kept it alive would show

    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.zeros(self.width)


@pytest.mark.parametrize("jit", [False, True])
def test_mutated_self_changes_the_result_shape(jit):
    model = Model(3)
    call = jax.jit(model.apply) if jit else model.apply
    assert call(X).shape == (2, 3)
    model.width = 4
    call = jax.jit(model.apply) if jit else model.apply
    with pytest.raises(ShapeError, match="dimension 'n' has size 3 in argument 'x'"):
        call(X)


def test_static_objects_are_not_kept_alive():
    model = Model(3)
    model.apply(X)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def tile(x: Float[Array, "n"], reps: tuple[int, int]) -> Float[Array, "n"]:
    return x * reps[0]


def test_static_values_equal_but_of_another_type():
    tiled = batched(tile, "b")
    tiled(X, (1, 2))
    with pytest.raises(
        ShapeError, match=r"^tile: argument 'reps' is annotated tuple\[int, int\], got tuple \(1, 2\.0\)$"
    ):
        tiled(X, (1, 2.0))


def scale(x: Float16[Array, "n"], s: Float[Array, ""]) -> Float16[Array, "n"]:
    return x * s


@pytest.mark.parametrize("jit", [False, True])
def test_weak_then_strong_scalar_changes_the_result_dtype(jit):
    scaled = batched(scale, "b", layouts={"s": ""})
    call = jax.jit(scaled) if jit else scaled
    x = jnp.ones((2, 3), jnp.float16)
    assert call(x, jnp.asarray(2.0)).dtype == jnp.float16  # weakly typed: stays float16
    with pytest.raises(ShapeError, match="the return value has dtype float32"):
        call(x, jnp.float32(2.0))  # strongly typed: promotes to float32


def count(x: Int[Array, "n"]) -> Int32[Array, ""]:
    return jnp.sum(x, dtype=jnp.int64 if jax.config.read("jax_enable_x64") else None)


def test_x64_toggled_between_calls():
    counted = batched(count, "b")
    x = jnp.ones((2, 3), jnp.int32)
    assert counted(x).dtype == jnp.int32
    with jax.enable_x64(True), pytest.raises(ShapeError, match="the return value has dtype int64"):
        counted(x)


def add(x: Int[Array, "n"], k: Int[Array, ""]) -> Int[Array, "n"]:
    return x + k


def test_python_scalars_are_converted_on_every_call():
    added = batched(add, "b", layouts={"k": ""})
    x = jnp.ones((2, 3), jnp.int32)
    np.testing.assert_array_equal(added(x, 1), x + 1)
    with pytest.raises(ShapeError, match=r"add: argument 'k' must be an array .* got int 1099511627776"):
        added(x, 2**40)


def test_config_toggled_between_calls(monkeypatch):
    import shapedmap

    def wrong(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.concatenate([x, x])

    function = batched(wrong, "b")
    monkeypatch.setattr(shapedmap.config, "checks", False)
    assert function(X).shape == (2, 6)
    monkeypatch.setattr(shapedmap.config, "checks", True)
    with pytest.raises(ShapeError, match="but size 6 in the return value"):
        function(X)


def test_results_are_rechecked_when_static_values_may_change_them():
    """With a static argument the result can change between calls with the same shapes: checked again."""

    def flaky(x: Float[Array, "n"], label: str) -> Float[Array, "n"]:
        return x if label == "first" else jnp.concatenate([x, x])

    function = batched(flaky, "b")
    function(X, "first")
    with pytest.raises(ShapeError, match="but size 6 in the return value"):
        function(X, "second")


def test_without_static_arguments_results_are_checked_once_per_signature():
    """Without statics, result shapes follow from the argument shapes (JAX's purity contract, as jit's
    cache assumes): an impure function that changes them is not re-checked, as under jax.jit."""
    state = {"double": False}

    def impure(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return jnp.concatenate([x, x]) if state["double"] else x

    function = batched(impure, "b")
    assert function(X).shape == (2, 3)
    state["double"] = True
    assert function(X).shape == (2, 6)  # impure: JAX's own caches would not notice either
    with pytest.raises(ShapeError, match="but size 6 in the return value"):
        function(jnp.ones((4, 3)))  # new shapes: checked in full


# A third call with the shapes of the last two replays them: no binding, conversion or check.
# Whatever differs from them still takes the checked path, exactly as on a fresh function.


def twice_replayed(function, *args):
    """``function`` called twice on ``args``: the second call sets up the replay of the third."""
    first, second = function(*args), function(*args)
    np.testing.assert_array_equal(first, second)
    return function


def test_a_replayed_call_binds_converts_and_checks_nothing(monkeypatch):
    from shapedmap import _pipeline

    def mv(m: Float[Array, "n k"], v: Float[Array, "k"]) -> Float[Array, "n"]:
        return m @ v

    m, v = jnp.arange(24.0).reshape(2, 3, 4), jnp.arange(8.0).reshape(2, 4)
    function = twice_replayed(batched(mv, "b"), m, v)
    calls = {"bind": 0, "convert_arguments": 0, "check_arguments": 0}

    def counting(name, original):
        def counted(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return counted

    for name in calls:
        monkeypatch.setattr(_pipeline, name, counting(name, getattr(_pipeline, name)))
    np.testing.assert_array_equal(function(m, v), jax.vmap(mv)(m, v))
    assert calls == {"bind": 0, "convert_arguments": 0, "check_arguments": 0}
    function(m, v=v)  # a keyword: bound, as any call that does not look like the last
    function(np.asarray(m), v)  # NumPy: converted
    function(jnp.ones((5, 3, 4)), jnp.ones((5, 4)))  # new shapes: checked in full
    assert calls == {"bind": 3, "convert_arguments": 3, "check_arguments": 1}


def test_after_a_replay_new_shapes_are_checked():
    def mv(m: Float[Array, "n k"], v: Float[Array, "k"]) -> Float[Array, "n"]:
        return m @ v

    function = twice_replayed(batched(mv, "b"), jnp.ones((2, 3, 4)), jnp.ones((2, 4)))
    with pytest.raises(ShapeError, match=r"(?s)dimension 'k' has size 4 in argument 'm'.*but size 5 in argument 'v'"):
        function(jnp.ones((2, 3, 4)), jnp.ones((2, 5)))
    with pytest.raises(ShapeError, match=r"mv: argument 'v' has dtype int32 .*Float"):
        function(jnp.ones((2, 3, 4)), jnp.ones((2, 4), jnp.int32))


@pytest.mark.parametrize("jit", [False, True])
def test_after_a_replay_a_strong_scalar_is_checked(jit):
    scaled = batched(scale, "b", layouts={"s": ""})
    call = jax.jit(scaled) if jit else scaled
    x = jnp.ones((2, 3), jnp.float16)
    twice_replayed(call, x, jnp.asarray(2.0))
    with pytest.raises(ShapeError, match="the return value has dtype float32"):
        call(x, jnp.float32(2.0))


def test_after_a_replay_x64_is_checked():
    counted = twice_replayed(batched(count, "b"), jnp.ones((2, 3), jnp.int32))
    with jax.enable_x64(True), pytest.raises(ShapeError, match="the return value has dtype int64"):
        counted(jnp.ones((2, 3), jnp.int32))


def test_after_a_replay_python_scalars_are_converted():
    added = twice_replayed(batched(add, "b", layouts={"k": ""}), jnp.ones((2, 3), jnp.int32), jnp.asarray(1))
    with pytest.raises(ShapeError, match=r"add: argument 'k' must be an array .* got int 1099511627776"):
        added(jnp.ones((2, 3), jnp.int32), 2**40)


def test_after_a_replay_an_error_inside_the_body_is_named():
    state = {"fail": False}

    def fragile(x: Float[Array, "n"]) -> Float[Array, "n"]:
        if state["fail"]:
            raise ValueError("the body's own error")
        return x

    function = twice_replayed(batched(fragile, "b"), X)
    state["fail"] = True
    with pytest.raises(ValueError, match="the body's own error") as raised:
        function(X)
    assert any("(raised inside the map of fragile over 'b' (size 2)" in note for note in raised.value.__notes__), (
        raised.value.__notes__
    )


def tree_sum(leaves: PyTree[Float[Array, "n"]]) -> Float[Array, "n"]:
    return sum(leaves)


def test_a_pytree_call_is_replayed_and_other_leaves_are_checked(monkeypatch):
    from shapedmap import _pipeline

    leaves = [jnp.arange(6.0).reshape(2, 3), jnp.ones((2, 3))]
    function = twice_replayed(batched(tree_sum, "b"), leaves)
    calls = []
    for name in ("bind", "check_arguments"):
        original = getattr(_pipeline, name)
        monkeypatch.setattr(
            _pipeline, name, lambda *a, _name=name, _original=original, **k: calls.append(_name) or _original(*a, **k)
        )
    np.testing.assert_array_equal(function(leaves), jax.vmap(tree_sum)(leaves))
    assert calls == []  # replayed
    np.testing.assert_array_equal(function([np.asarray(leaf) for leaf in leaves]), jax.vmap(tree_sum)(leaves))
    assert calls == ["bind"]  # NumPy leaves: bound and converted; their shapes were checked before
    with pytest.raises(ShapeError, match=r"(?s)dimension 'n' has size 3 .*but size 4"):
        function([jnp.ones((2, 3)), jnp.ones((2, 4))])
    assert calls == ["bind", "bind", "check_arguments"]


@pytest.mark.parametrize("calls_before", [1, 2])
def test_static_data_equal_but_of_another_type_is_checked(calls_before):
    """A PyTree's static data compares with == (2 == 2.0), but its type can change the results."""
    import equinox as eqx

    class Scaled(eqx.Module):
        w: Int[Array, "i"]
        scale: object = eqx.field(static=True)

    def scaled(s, x: Int[Array, "i"]) -> Int[Array, "i"]:
        return s.w * s.scale + x

    function = batched(scaled, "b", layouts={"s": None})
    x = jnp.ones((4, 3), jnp.int32)
    for _ in range(calls_before):  # one call: remembered; two: replayed
        function(Scaled(jnp.ones(3, jnp.int32), 2), x)
    with pytest.raises(ShapeError, match="the return value has dtype float32"):
        function(Scaled(jnp.ones(3, jnp.int32), 2.0), x)


class Layer:
    def __init__(self, w):
        self.w = w

    def apply(self, x: Float[Array, "i"]) -> Float[Array, "i"]:
        return self.w @ x

    def __call__(self, x: Float[Array, "i"]) -> Float[Array, "i"]:
        return self.w @ x


@pytest.mark.parametrize("bound", ["method", "callable object"])
def test_a_bound_objects_state_is_checked_on_every_call(bound):
    """A bound method or callable object reads its object's state, which can change between calls
    with the same shapes: its results are checked on every (eager) call, from its first decoration
    on. (Under one jax.jit the state is baked into the compiled call: JAX's own caching.)"""
    layer = Layer(jnp.ones((3, 3)))
    function = batched(layer.apply if bound == "method" else layer, "b")
    x = jnp.ones((4, 3))
    for _ in range(3):
        assert function(x).shape == (4, 3)
    layer.w = jnp.ones((5, 3))
    with pytest.raises(ShapeError, match=r"(?s)dimension 'i' has size 3 in argument 'x'.*but size 5"):
        function(x)


def test_a_partial_of_a_bound_method_is_checked_on_every_call():
    import functools

    layer = Layer(jnp.ones((3, 3)))
    function = batched(functools.partial(layer.apply), "b")
    x = jnp.ones((4, 3))
    for _ in range(3):
        function(x)
    layer.w = jnp.ones((5, 3))
    with pytest.raises(ShapeError, match=r"(?s)dimension 'i' has size 3 in argument 'x'.*but size 5"):
        function(x)


def test_an_equinox_module_is_immutable_so_its_calls_are_replayed(monkeypatch):
    import equinox as eqx

    from shapedmap import _pipeline

    mlp = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))
    function = batched(mlp, "batch")
    x = jnp.ones((5, 3))
    twice_replayed(function, x)
    bound = []
    original = _pipeline.bind
    monkeypatch.setattr(_pipeline, "bind", lambda *a, **k: bound.append(1) or original(*a, **k))
    np.testing.assert_allclose(function(x), jax.vmap(mlp)(x), rtol=1e-6)
    assert bound == []
