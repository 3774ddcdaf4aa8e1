"""Where an eager ``batched`` call spends its time, next to the ``jax.vmap`` it runs.

``python -m benchmarks.profile_eager [--workload NAME] [--calls N] [--pyinstrument]``

Profiles N eager calls each of (a) ``batched``, (b) the same ``jax.vmap`` nest with the same
axis names (``named_vmap``) and (c) the hand-written ``jax.vmap`` without names, with cProfile,
and prints per call:

* the functions whose own time (tottime) grows most from (b) to (a): shapedmap's own cost;
* the same from (c) to (b): what ``axis_name`` costs inside JAX;
* the call counts of JAX's dispatch entry points, which show *why* (a named axis sends the
  ``jnp`` functions inside the map down JAX's Python dispatch path).

cProfile inflates short Python functions about twofold; read the differences, not the totals,
and take the absolute overhead from ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

from .workloads import WORKLOADS, named_vmap

__all__ = ["main", "profile_calls"]

_DISPATCH = ("pjit.py", "cache_miss"), ("pjit.py", "_pjit_call_impl"), ("dispatch.py", "apply_primitive")
_Row = tuple[float, float, float, str]


def profile_calls(call: Callable[[], Any], calls: int) -> dict[tuple[str, int, str], tuple[Any, ...]]:
    """cProfile's raw stats of ``calls`` calls of ``call`` (after one warm-up call)."""
    jax.block_until_ready(call())
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    return pstats.Stats(profiler).stats  # type: ignore[attr-defined]


def _where(key: tuple[str, int, str]) -> str:
    path, line, name = key
    for marker in ("site-packages/", "/shapedmap/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})"


def _diff(more: dict[Any, Any], less: dict[Any, Any], calls: int, top: int) -> list[_Row]:
    """Functions by how much more own time per call ``more`` spends in them than ``less``."""
    rows = []
    for key in set(more) | set(less):
        a, b = more.get(key, (0, 0, 0, 0)), less.get(key, (0, 0, 0, 0))
        rows.append(((a[2] - b[2]) / calls * 1e6, a[1] / calls, b[1] / calls, _where(key)))
    return sorted(rows, reverse=True)[:top]


def _total(stats: dict[Any, Any], calls: int) -> float:
    return sum(entry[2] for entry in stats.values()) / calls * 1e6


def _dispatch_counts(stats: dict[Any, Any], calls: int) -> str:
    counts = []
    for filename, function in _DISPATCH:
        n = sum(entry[1] for key, entry in stats.items() if key[0].endswith(filename) and key[2] == function)
        counts.append(f"{function} {n / calls:.0f}")
    return ", ".join(counts)


def _print_diff(title: str, rows: list[_Row], names: tuple[str, str]) -> None:
    print(f"\n{title}\n  extra own time/call   calls/call {names[0]} vs {names[1]}   function")
    for extra, n_more, n_less, where in rows:
        print(f"  {extra:8.2f} µs          {n_more:6.1f} vs {n_less:6.1f}        {where}")


def main(argv: list[str] | None = None) -> int:
    """Profile and print; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_eager", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="custom_dot_100", choices=list(WORKLOADS))
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--pyinstrument", action="store_true", help="also print a pyinstrument call tree of batched")
    options = parser.parse_args(argv)

    workload = WORKLOADS[options.workload]
    args = workload.make_inputs()
    function = workload.make_batched(workload.per_example)
    candidates = {
        "batched": function,
        "named vmap": named_vmap(function),
        "vmap": workload.make_vmap(workload.per_example),
    }
    stats = {name: profile_calls(lambda f=f: f(*args), options.calls) for name, f in candidates.items()}

    print(f"{options.workload}: {workload.title}; {options.calls} eager calls each, cProfile (inflates ~2x)")
    for name, entry in stats.items():
        print(
            f"  {name:<11} {_total(entry, options.calls):7.1f} µs/call profiled;"
            f" {_dispatch_counts(entry, options.calls)} per call"
        )
    _print_diff(
        "shapedmap's own cost: batched minus the same vmap nest with axis names",
        _diff(stats["batched"], stats["named vmap"], options.calls, options.top),
        ("batched", "named"),
    )
    _print_diff(
        "axis_name's cost inside JAX: named vmap minus plain vmap",
        _diff(stats["named vmap"], stats["vmap"], options.calls, options.top),
        ("named", "plain"),
    )
    if options.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0001)
        with profiler:
            for _ in range(options.calls):
                function(*args)
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
