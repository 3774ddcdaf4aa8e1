"""Memory (docs/architecture.md, Guarantees: memory): caches are bounded, decorated closures can be
collected, and many distinct shapes do not grow shapedmap's own memory.

shapedmap has one cache per function, the plan's memo (``Plan.memo``, a ``BoundedCache`` LRU of 512
entries): the abstract signatures already validated, the levels of each shape of call and the built
``jax.vmap`` nests. Annotation classes are shared through one bounded module-level cache, so that
jaxtyping and beartype, which remember every annotation they meet, keep one per layout. Nothing
module-level holds a decorated function. Measured numbers are in the issue's closing note; these
tests pin the properties behind them without timing or RSS thresholds, so they are not flaky.
"""

import gc
import itertools
import tracemalloc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from shapedmap import batched
from shapedmap._plan import plan_of


def scale(x: Float[Array, "n"], y: Float[Array, ""]) -> Float[Array, "n"]:
    return x * y


def shapes(count):
    """``count`` distinct (batch, n) shapes."""
    return [(1 + i // 40, 1 + i % 40) for i in range(count)]


def trace(function, *shapes):
    """Call ``function`` under ``jax.eval_shape``: every check and cache runs, nothing compiles."""
    return jax.eval_shape(function, *(jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes))


def test_validated_signature_cache_stays_within_its_bound():
    scaled = batched(scale, "b")
    cache = plan_of(scaled)._memo
    for b, n in shapes(cache.maxsize + 100):
        trace(scaled, (b, n), (b,))
    assert len(cache) == cache.maxsize == 512


def matvec(x: Float[Array, "n m"], y: Float[Array, "m"]) -> Float[Array, "n"]:
    return x @ y


def test_expansion_cache_stays_within_its_bound():
    """``*batch`` calls with many combinations of leading dims and size-1 broadcasts."""
    broadcast = batched(matvec, "*batch")
    patterns = [pattern for rank in range(4) for pattern in itertools.product((1, 2), repeat=rank)]
    for left in patterns:
        for right in patterns:
            assert trace(broadcast, (*left, 3, 2), (*right, 2)).shape == (*np.broadcast_shapes(left, right), 3)
    memo = plan_of(broadcast)._memo
    for n in range(1, memo.maxsize):  # then more distinct shapes than the memo holds
        trace(broadcast, (2, n, 2), (2,))
    assert len(memo) == memo.maxsize == 512  # levels, nests and checked shapes, all bounded together


def make_closure(factor):
    def closure(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * factor

    return closure


def test_decorated_closure_and_its_wrapper_are_collected():
    closure = make_closure(3.0)
    wrapper = batched(closure, "b")
    jitted = jax.jit(wrapper)
    np.testing.assert_array_equal(wrapper(jnp.ones((2, 3))), 3 * np.ones((2, 3)))
    np.testing.assert_array_equal(jitted(jnp.ones((2, 4))), 3 * np.ones((2, 4)))
    dead_closure, dead_wrapper, dead_runner = (
        weakref.ref(closure),
        weakref.ref(wrapper),
        weakref.ref(wrapper.__shapedmap__),
    )
    del closure, wrapper, jitted
    gc.collect()
    assert dead_closure() is None and dead_wrapper() is None and dead_runner() is None


def test_methods_and_nested_batched_functions_are_collected():
    def build():
        class Model:
            @batched("b")
            def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
                return 2 * x

        inner = batched(make_closure(2.0), "b")
        outer = batched(inner, "c b n -> c b n")
        Model().apply(jnp.ones((2, 3)))
        outer(jnp.ones((2, 2, 3)))
        return weakref.ref(Model), weakref.ref(inner), weakref.ref(outer)

    references = build()
    gc.collect()
    assert all(reference() is None for reference in references)


def test_shapedmap_memory_is_flat_over_many_shapes():
    """Memory allocated by shapedmap's own code stops growing once its caches are full (JAX's own
    caches, which grow with every new shape, are not shapedmap's and are not counted)."""
    scaled = batched(scale, "b")
    ours = [tracemalloc.Filter(True, "*/shapedmap/*")]

    def allocated():
        gc.collect()
        return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(ours).statistics("filename"))

    tracemalloc.start()
    try:
        for b, n in shapes(600):  # fills the 512-entry cache
            trace(scaled, (b, n), (b,))
        full = allocated()
        for b, n in shapes(1300)[600:]:
            trace(scaled, (b, n), (b,))
        later = allocated()
    finally:
        tracemalloc.stop()
    # 700 more shapes, each a new cache key (~300 bytes): a leak would add ~210 KB. What remains is
    # the cache's hash table resizing as keys come and go (measured: ~26 KB).
    assert later - full < 96 * 1024, (full, later)
