"""``python -m shapedmap demo``: the seed examples, their derived axes, a caught shape bug, timings.

Made to be quick (a few seconds on a laptop CPU): most of the time left is JAX's import and
compiling the naive loops' operations once, which the loop has to pay anyway. To get there:

* inputs have the shapes and dtypes each example's ``make_inputs`` gives (found with
  ``jax.eval_shape``, so nothing is compiled) and standard-normal values drawn with NumPy;
  running ``jax.random`` eagerly would compile it for every shape, which took most of the time;
* the result checked against the naive loop is the one ``jax.jit(batched)`` computes, so each
  example is compiled once, and the comparison is done in NumPy;
* the timings repeat each call only as often as fits in a few milliseconds.

Example:
    $ python -m shapedmap demo
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import ShapeError
from .examples import EXAMPLES, Example, message_passing

__all__ = ["main"]

_REPEAT = 3  # the median of this many timings
_TARGET_SECONDS = 0.005  # each timing runs the call as often as fits in about this long


def _median_seconds(call: Callable[[], Any]) -> float:
    """The median seconds per call, over ``_REPEAT`` timings of ``number`` calls each.

    ``call`` has been run once already (compiled, caches warm); ``number`` is chosen from
    one more run so that a timing takes about ``_TARGET_SECONDS``.
    """
    start = time.perf_counter()
    jax.block_until_ready(call())
    once = time.perf_counter() - start
    number = max(1, min(1000, int(_TARGET_SECONDS / max(once, 1e-7))))
    timings = []
    for _ in range(_REPEAT):
        start = time.perf_counter()
        for _ in range(number):
            jax.block_until_ready(call())
        timings.append((time.perf_counter() - start) / number)
    return sorted(timings)[len(timings) // 2]


def _format_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


def _inputs(example: Example, rng: np.random.Generator) -> tuple[Any, ...]:
    """Standard-normal inputs of the shapes and dtypes the example's ``make_inputs`` gives."""
    shapes = jax.eval_shape(example.make_inputs, jax.random.key(0))
    return tuple(jnp.asarray(rng.standard_normal(s.shape).astype(s.dtype)) for s in shapes)


def _show(example: Example, rng: np.random.Generator, out: TextIO) -> tuple[bool, str, float, float]:
    """Print one example; returns whether it equals its naive loop, its input shapes and timings."""
    function = example.function
    args = _inputs(example, rng)
    jitted = jax.jit(function)
    result = jax.block_until_ready(jitted(*args))
    expected = jax.block_until_ready(example.naive(*args))  # also compiles the loop's operations
    same = bool(np.allclose(np.asarray(result), np.asarray(expected), rtol=1e-5, atol=1e-5))
    batched_time = _median_seconds(lambda: jitted(*args))
    loop_time = _median_seconds(lambda: example.naive(*args))
    print(f"* {example.name}: {example.title}", file=out)
    print(f"    signature   {function.signature}", file=out)
    for name, axes in function.in_axes.items():
        print(f"    vmap over {name!r}: in_axes={axes}, out_axes={function.out_axes[name]}", file=out)
    shapes = ", ".join(str(tuple(arg.shape)) for arg in args)
    print(f"    {shapes} -> {tuple(result.shape)}   equals the naive loop: {same}", file=out)
    return same, shapes, batched_time, loop_time


def main(out: TextIO = sys.stdout) -> int:
    """Run every seed example, then show the error a shape bug gets. Returns the exit code.

    Skipped as a doctest: it takes a few seconds (it compiles and times every example against
    its loop), and the timings differ from run to run.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> main(out)  # doctest: +SKIP
        0
        >>> print(out.getvalue())  # doctest: +SKIP
        shapedmap demo on cpu (jax ...)
        ...
        * square: square over a vector
        ...
    """
    print(f"shapedmap demo on {jax.devices()[0].platform} (jax {jax.__version__})", file=out)
    print(
        "Every seed example with the in_axes/out_axes derived for it, on standard-normal inputs\n"
        "of the sizes its make_inputs gives; jax.jit(batched) is checked against the naive Python loop.\n",
        file=out,
    )
    rng = np.random.default_rng(0)
    rows = [(example.name, *_show(example, rng, out)) for example in EXAMPLES.values()]
    print(
        f"\nTimings at those sizes: median of {_REPEAT} timings, each repeating the call for about "
        f"{_TARGET_SECONDS * 1e3:g} ms,\nafter a first call that compiles.\n",
        file=out,
    )
    name_width = max(len(name) for name, *_ in rows)
    shapes_width = max(len(shapes) for _, _, shapes, _, _ in rows)
    print(
        f"    {'example':<{name_width}}  {'inputs':<{shapes_width}}  jit(batched)   naive loop   speedup",
        file=out,
    )
    for name, _, shapes, batched_time, loop_time in rows:
        print(
            f"    {name:<{name_width}}  {shapes:<{shapes_width}}  {_format_time(batched_time)}  "
            f"{_format_time(loop_time)}  {loop_time / batched_time:7,.0f}x",
            file=out,
        )
    all_equal = all(same for _, same, _, _, _ in rows)
    print("\nA deliberate shape bug: 5 adjacency matrices but 4 feature matrices.", file=out)
    print("    message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))", file=out)
    try:
        message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    except ShapeError as error:
        print(f"ShapeError: {error}", file=out)
    else:
        print("no error: the checks are switched off (SHAPEDMAP_CHECKS=0)", file=out)
    return 0 if all_equal else 1
