"""``python -m shapedmap demo``: the seed examples, their derived axes, a caught shape bug, timings.

Each example's ``jax.jit(batched)`` is compared with ``jax.jit`` of its hand-written ``jax.vmap``
(the same values, and the same lowered program) and with the naive Python loop. The timings put
``jit(batched)`` beside ``jit(vmap)``, which is shapedmap's own cost (none: the same program), and
beside the loop, which is what ``jit`` and ``vmap`` save (not shapedmap).

Made to be quick (a few seconds on a laptop CPU): most of the time left is JAX's import and
compiling the naive loops' operations once, which the loop has to pay anyway. To get there:

* inputs have the shapes and dtypes each example's ``make_inputs`` gives (found with
  ``jax.eval_shape``, so nothing is compiled) and standard-normal values drawn with NumPy;
  running ``jax.random`` eagerly would compile it for every shape, which took most of the time;
* each function is compiled once, and the comparisons are done in NumPy;
* the timings repeat each call only as often as fits in a few milliseconds, ``jit(batched)`` and
  ``jit(vmap)`` in turn, so that a slower moment of the machine slows both.

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

_REPEAT = 7  # the fastest of this many timings
_TARGET_SECONDS = 0.005  # each timing runs the call as often as fits in about this long


def _fastest_seconds(*calls: Callable[[], Any]) -> list[float]:
    """The seconds per call of each of ``calls``: the fastest of ``_REPEAT`` timings of ``number`` calls.

    Each call has been run once already (compiled, caches warm); ``number`` is chosen from one
    more run so that a timing takes about ``_TARGET_SECONDS``. The calls are timed in turn (in
    alternate orders), so that they share the machine's slower and faster moments, and the fastest
    timing is kept: on a busy machine other work only ever adds time.
    """
    numbers = []
    for call in calls:
        start = time.perf_counter()
        jax.block_until_ready(call())
        once = time.perf_counter() - start
        numbers.append(max(1, min(1000, int(_TARGET_SECONDS / max(once, 1e-7)))))
    timings: list[list[float]] = [[] for _ in calls]
    for repeat in range(_REPEAT):
        turns = list(zip(calls, numbers, timings, strict=True))
        for call, number, times in turns if repeat % 2 == 0 else reversed(turns):  # neither always first
            start = time.perf_counter()
            for _ in range(number):
                jax.block_until_ready(call())
            times.append((time.perf_counter() - start) / number)
    return [min(times) for times in timings]


def _format_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


def _inputs(example: Example, rng: np.random.Generator) -> tuple[Any, ...]:
    """Standard-normal inputs of the shapes and dtypes the example's ``make_inputs`` gives."""
    shapes = jax.eval_shape(example.make_inputs, jax.random.key(0))
    return tuple(jnp.asarray(rng.standard_normal(s.shape).astype(s.dtype)) for s in shapes)


def _close(result: Any, expected: Any) -> bool:
    return bool(np.allclose(np.asarray(result), np.asarray(expected), rtol=1e-5, atol=1e-5))


def _vmaps(function: Any, names: dict[int, str], out: TextIO, indent: str = "    ") -> None:
    """Print the vmaps of ``function``, outermost first, then those of a per-example function that
    is itself batched (``mm``'s inner vmap is ``mv``'s own), indented under them."""
    for name, axes in function.in_axes.items():
        print(f"{indent}vmap over {name!r}: in_axes={axes}, out_axes={function.out_axes[name]}", file=out)
    inner = function.fn
    if hasattr(inner, "__shapedmap__"):
        who = names.get(id(inner), "the per-example function")
        print(f"{indent}  inside it, {who} = batched(..., {inner.signature!r}), with its own vmap:", file=out)
        _vmaps(inner, names, out, indent + "  ")


def _show(
    example: Example, rng: np.random.Generator, names: dict[int, str], out: TextIO
) -> tuple[bool, str, list[float]]:
    """Print one example; returns whether it equals jax.vmap and the loop, its input shapes and timings."""
    function = example.function
    args = _inputs(example, rng)
    jitted, hand_written = jax.jit(function), jax.jit(example.hand_written)
    result = jax.block_until_ready(jitted(*args))
    by_vmap = jax.block_until_ready(hand_written(*args))
    expected = jax.block_until_ready(example.naive(*args))  # also compiles the loop's operations
    same_program = _program(jitted, args) == _program(hand_written, args)
    same_as_vmap, same_as_loop = _close(result, by_vmap), _close(result, expected)
    timings = _fastest_seconds(lambda: jitted(*args), lambda: hand_written(*args), lambda: example.naive(*args))
    print(f"* {example.name}: {example.title}", file=out)
    print(f"    signature   {function.signature}", file=out)
    _vmaps(function, names, out)
    shapes = ", ".join(str(tuple(arg.shape)) for arg in args)
    print(f"    {shapes} -> {tuple(result.shape)}", file=out)
    print(
        f"    equals the hand-written jax.vmap: {same_as_vmap}   the same program: {same_program}   "
        f"equals the naive loop: {same_as_loop}",
        file=out,
    )
    return same_as_vmap and same_program and same_as_loop, shapes, timings


def _program(jitted: Any, args: tuple[Any, ...]) -> str:
    """The program ``jitted`` lowers to for ``args``, without its name and source locations."""
    text: str = jitted.lower(*args).as_text(debug_info=False)
    return text.split("\n", 1)[1]  # the first line names the module after the function


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
        "of the sizes its make_inputs gives. jax.jit(batched) is checked against jax.jit of the\n"
        "hand-written jax.vmap (the same values, and the same program once lowered) and against\n"
        "the naive Python loop.\n",
        file=out,
    )
    rng = np.random.default_rng(0)
    names = {id(example.function): example.name for example in EXAMPLES.values()}
    rows = [(example.name, *_show(example, rng, names, out)) for example in EXAMPLES.values()]
    print(
        f"\nTimings at those sizes: the fastest of {_REPEAT} timings, each repeating the call for about "
        f"{_TARGET_SECONDS * 1e3:g} ms,\nafter a first call that compiles. batched/vmap is shapedmap's own cost "
        "under jit (1x but for\nnoise: the same program); loop/jit is what jax.jit and jax.vmap save over "
        "a Python loop.\n",
        file=out,
    )
    name_width = max(len(name) for name, *_ in rows)
    shapes_width = max(len(shapes) for _, _, shapes, _ in rows)
    print(
        f"    {'example':<{name_width}}  {'inputs':<{shapes_width}}  jit(batched)    jit(vmap)  batched/vmap"
        "   naive loop   loop/jit",
        file=out,
    )
    for name, _, shapes, (batched_time, vmap_time, loop_time) in rows:
        print(
            f"    {name:<{name_width}}  {shapes:<{shapes_width}}  {_format_time(batched_time)}  "
            f"{_format_time(vmap_time)}  {batched_time / vmap_time:11.2f}x  {_format_time(loop_time)}  "
            f"{loop_time / batched_time:8,.0f}x",
            file=out,
        )
    all_equal = all(same for _, same, _, _ in rows)
    print("\nA deliberate shape bug: 5 adjacency matrices but 4 feature matrices.", file=out)
    print("    message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))", file=out)
    try:
        message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    except ShapeError as error:
        print(f"ShapeError: {error}", file=out)
    else:
        print("no error: the checks are switched off (SHAPEDMAP_CHECKS=0)", file=out)
    return 0 if all_equal else 1
