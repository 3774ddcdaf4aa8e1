"""``python -m shapedmap demo``: the seed examples, their derived axes, a caught shape bug, timings.

Example:
    $ python -m shapedmap demo
"""

from __future__ import annotations

import statistics
import sys
import timeit
from typing import TextIO

import jax
import jax.numpy as jnp

from ._errors import ShapeError
from .examples import EXAMPLES, Example, message_passing

__all__ = ["main"]


def _median_seconds(call: object, number: int, repeat: int = 5) -> float:
    def run() -> None:
        jax.block_until_ready(call())

    run()  # warm up (compile, caches)
    return statistics.median(t / number for t in timeit.repeat(run, number=number, repeat=repeat))


def _format_time(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.1f} us"


def _show(example: Example, out: TextIO) -> bool:
    """Print one example; returns whether it equals its naive loop."""
    function = example.function
    args = example.make_inputs(jax.random.key(0))
    result = function(*args)
    same = bool(jnp.allclose(result, example.naive(*args), rtol=1e-5, atol=1e-5))
    jitted = jax.jit(function)
    batched_time = _median_seconds(lambda: jitted(*args), number=50)
    loop_time = _median_seconds(lambda: example.naive(*args), number=1, repeat=3)
    print(f"* {example.name}: {example.title}", file=out)
    print(f"    signature   {function.signature}", file=out)
    for name, axes in function.in_axes.items():
        print(f"    vmap over {name!r}: in_axes={axes}, out_axes={function.out_axes[name]}", file=out)
    shapes = ", ".join(str(tuple(arg.shape)) for arg in args)
    print(f"    {shapes} -> {tuple(result.shape)}   equals the naive loop: {same}", file=out)
    print(
        f"    jit(batched) {_format_time(batched_time)}   naive loop {_format_time(loop_time)}"
        f"   ({loop_time / batched_time:,.0f}x faster)",
        file=out,
    )
    return same


def main(out: TextIO = sys.stdout) -> int:
    """Run every seed example, then show the error a shape bug gets. Returns the exit code.

    Skipped as a doctest: it takes half a minute (it times every example against its loop),
    and the timings differ from run to run.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> main(out)  # doctest: +SKIP
        0
        >>> print(out.getvalue())  # doctest: +SKIP
        shapedmap demo on cpu (jax ...)
        <BLANKLINE>
        * square_each: ...
    """
    print(f"shapedmap demo on {jax.devices()[0].platform} (jax {jax.__version__})\n", file=out)
    all_equal = all([_show(example, out) for example in EXAMPLES.values()])
    print("\nA deliberate shape bug: 5 adjacency matrices but 4 feature matrices.", file=out)
    print("    message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))", file=out)
    try:
        message_passing(jnp.ones((5, 7, 7)), jnp.ones((4, 7, 11)))
    except ShapeError as error:
        print(f"ShapeError: {error}", file=out)
    else:
        print("no error: the checks are switched off (SHAPEDMAP_CHECKS=0)", file=out)
    return 0 if all_equal else 1
