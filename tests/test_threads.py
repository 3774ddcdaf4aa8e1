"""Thread safety (docs/architecture.md, Guarantees: threads): concurrent calls and traces never mix
their bindings or their errors.

Findings behind these tests:

* jaxtyping keeps its per-call memo (the sizes bound so far, ``jaxtyping/_storage.py``) in a
  ``threading.local`` stack, pushed and popped by the ``jaxtyped`` wrapper on the calling thread;
  the ``?n`` tree-path and tree-flatten memos are thread-local too. JAX traces a ``vmap``/``jit``
  body on the calling thread, so every per-example check uses its own thread's memo: no guard is
  needed. ``test_per_example_memos_do_not_mix`` holds eight checks open at once to prove it.
* shapedmap's own state: the plan's memo (a ``BoundedCache``) writes under a lock and reads with
  single atomic dict operations; a miss may compute twice, never store a wrong value. The plan is
  built under the function's own (reentrant) lock and published last, so a forward reference
  resolved by the first calls of eight threads at once yields one plan. ``Bindings`` and errors
  are per call.
"""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, PyTree

from shapedmap import ShapeError, batched
from shapedmap._cache import BoundedCache
from shapedmap._plan import plan_of

THREADS = 8


def run_in_threads(task, count=THREADS):
    """Run ``task(i)`` for i in range(count) on ``count`` threads started together; return the results."""
    start = threading.Barrier(count, timeout=120)

    def started(index):
        start.wait()
        return task(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(started, range(count)))


@batched("graph")
def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    return a @ f


def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
    return jnp.concatenate([u, v])


pairwise = batched(concat, "i f, j f -> i j 2*f")


def matmat(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return x @ y


broadcast_matmat = batched(matmat, "*batch")


@batched("b")
def scale_tree(params: PyTree[Float[Array, "n"]], factor: float) -> PyTree[Float[Array, "n"]]:
    return jax.tree.map(lambda leaf: leaf * factor, params)


JITTED = {fn: jax.jit(fn) for fn in (message_passing, pairwise, broadcast_matmat)}


def workload(index):
    """Calls with shapes of this thread's own (sizes from ``index``), eager and jit, good and bad.

    Returns (what, got, expected) triples; bad calls give the error text as ``got`` and the sizes
    the message must quote (this call's, never another thread's) as ``expected``.
    """
    rng = np.random.default_rng(index)
    graph, node, feat = 2 + index, 3 + index % 3, 4 + index
    a = rng.normal(size=(graph, node, node)).astype(np.float32)
    f = rng.normal(size=(graph, node, feat)).astype(np.float32)
    u = rng.normal(size=(index + 1, feat)).astype(np.float32)
    v = rng.normal(size=(2, feat)).astype(np.float32)
    x = rng.normal(size=(index % 3 + 1, 2, 3)).astype(np.float32)
    y = rng.normal(size=(3, 5)).astype(np.float32)
    tree = {"w": rng.normal(size=(graph, feat)).astype(np.float32)}
    outcomes = []
    for _ in range(3):
        for mode, call in (("eager", lambda fn: fn), ("jit", lambda fn: JITTED[fn])):
            outcomes.append((f"message_passing {mode}", call(message_passing)(a, f), a @ f))
            pairs = np.concatenate(np.broadcast_arrays(u[:, None], v[None, :]), axis=-1)
            outcomes.append((f"pairwise {mode}", call(pairwise)(u, v), pairs))
            outcomes.append((f"matmat {mode}", call(broadcast_matmat)(x, y), x @ y))
            try:
                call(message_passing)(a, f[:, :, :-1].repeat(2, axis=0))
            except ShapeError as error:
                outcomes.append((f"bad message_passing {mode}", str(error), (graph, 2 * graph, node, feat - 1)))
        outcomes.append(("tree", scale_tree(tree, float(index))["w"], tree["w"] * index))
    return outcomes


def test_concurrent_calls_and_traces_get_their_own_results_and_errors():
    for index, outcomes in enumerate(run_in_threads(workload)):
        assert len(outcomes) == 3 * (2 * 4 + 1)
        for what, got, expected in outcomes:
            if what.startswith("bad"):
                graph, doubled, node, feat = expected
                assert got.startswith(
                    f"message_passing: dimension 'graph' has size {graph} in argument 'a' "
                    f"(axis 0 of f32[{graph},{node},{node}])\nbut size {doubled} in argument 'f' "
                    f"(axis 0 of f32[{doubled},{node},{feat}])"
                ), (index, what, got)
            else:
                np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5, err_msg=f"{index} {what}")


def test_per_example_memos_do_not_mix():
    """Eight per-example checks are open at once (a barrier inside the body, which runs while tracing),
    each having bound ``n`` to its own size: every return check must see its own ``n`` only."""
    inside = threading.Barrier(THREADS, timeout=120)

    def widen(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "2*n"]:
        inside.wait()  # all eight threads are now within jaxtyping's memo scope
        return jnp.concatenate([x, y])

    widened = batched(widen, "b")

    def task(index):
        n = index + 1
        ones = jnp.ones((2, n))
        return widened(ones, 2 * ones)

    for index, result in enumerate(run_in_threads(task)):
        n = index + 1
        expected = np.concatenate([np.ones((2, n)), 2 * np.ones((2, n))], axis=1)
        np.testing.assert_array_equal(result, expected)


def test_per_example_errors_while_others_succeed():
    """Half the threads break the per-example check (a result of the wrong size) while the other half
    pass, all with checks open at once: each error quotes its own call's sizes."""
    inside = threading.Barrier(THREADS, timeout=120)

    def grow(x: Float[Array, "n"]) -> Float[Array, "n"]:
        inside.wait()
        return jnp.concatenate([x, x]) if x.shape[0] % 2 else x

    grown = batched(grow, "b")

    def task(index):
        try:
            return grown(jnp.ones((3, index + 1)))
        except ShapeError as error:
            return str(error)

    for index, outcome in enumerate(run_in_threads(task)):
        n = index + 1
        if n % 2:  # the result check names this thread's own sizes (with or without python -O)
            assert outcome.startswith(
                f"grow: dimension 'n' has size {n} in argument 'x' (axis 1 of f32[3,{n}])\n"
                f"but size {2 * n} in the return value (axis 1 of f32[3,{2 * n}])"
            ), outcome
        else:
            np.testing.assert_array_equal(outcome, np.ones((3, n)))


def norm(x: "Vector") -> "Scalar":  # Vector and Scalar are defined below: forward references
    return jnp.sqrt(jnp.sum(x**2))


deferred = batched(norm, "b")
Vector = Float[Array, "n"]
Scalar = Float[Array, ""]


def test_first_calls_from_many_threads_build_one_plan(monkeypatch):
    """The plan of a function with a forward reference is built at the first call; eight first
    calls at once build it once and all succeed."""
    module = sys.modules["shapedmap._batched"]
    builds = []

    def counting_make_plan(*args, **kwargs):
        builds.append(1)
        return make_plan(*args, **kwargs)

    make_plan = module.make_plan
    monkeypatch.setattr(module, "make_plan", counting_make_plan)
    described = deferred.__shapedmap__
    assert "_plan" not in vars(described)  # not built yet: a forward reference

    def first_call(index):
        result = deferred(jnp.full((2, index + 1), 2.0))
        return result, id(described.plan)

    results = run_in_threads(first_call)
    for index, (result, _) in enumerate(results):
        np.testing.assert_allclose(result, [2 * np.sqrt(index + 1)] * 2, rtol=1e-6)
    assert len(builds) == 1 and len({plan_id for _, plan_id in results}) == 1


def test_bounded_cache_under_contention_stays_bounded_and_right():
    cache = BoundedCache(maxsize=16)

    def task(index):
        wrong = []
        for step in range(2000):
            key = (index * 7 + step) % 40
            if cache.get_or_compute(key, lambda key=key: key * key) != key * key:
                wrong.append(key)
            cache.add(("own", index, step % 5), index)
        return wrong, len(cache)

    for wrong, size in run_in_threads(task):
        assert wrong == [] and size <= 16
    assert len(cache) <= 16


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_validated_signature_cache_is_shared_safely(jit):
    """Many threads hit the same function with a few shapes: the validated-signature cache is read
    and filled concurrently, and a bad call among good ones is still refused."""

    def double(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return 2 * x

    doubled = batched(double, "b")
    call = jax.jit(doubled) if jit else doubled

    def task(index):
        outcomes = []
        for step in range(20):
            n = 1 + (index + step) % 3
            outcomes.append((n, call(jnp.ones((2, n)))))
            if step % 5 == index % 5:
                with pytest.raises(ShapeError, match=r"^double: argument 'x' has 1 dim \(f32\[4\]\)"):
                    call(jnp.ones(4))
        return outcomes

    for outcomes in run_in_threads(task):
        for n, result in outcomes:
            np.testing.assert_array_equal(result, 2 * np.ones((2, n)))
    memo = plan_of(doubled)._memo
    assert sum(key[0] == "arguments" for key in memo.held_keys()) == 3  # one entry per shape, however many threads
