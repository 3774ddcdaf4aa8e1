"""``python -m benchmarks.rebuild [--docs]``: what decorating costs, and shapedmap's own cost per eager call.

Three measurements, each against what ``jax.vmap`` costs for the same callable:

* **re-building**: ``batched(fn, "batch")`` for a function decorated before with the same options
  (the memo of ``shapedmap._rebuilt``), for a plain function, a Python bound method, an Equinox bound
  method and an Equinox module; next to ``jax.vmap(fn)`` and to the first decoration (a new function
  object each sample, so the memo misses);
* **inside ``__call__``**: an Equinox module whose ``__call__`` writes ``batched(self.mlp, "batch")(x)``
  (the libraries page's pattern), called eagerly, against the same module writing ``jax.vmap(self.mlp)(x)``;
* **an eager call**: ``batched`` against the same ``jax.vmap`` nest with the same axis names
  (``workloads.named_vmap``) on message passing and ``custom_dot`` 1000², paired per repeat, with the
  number of shapedmap's own Python function calls per call (cProfile's count: exact, unlike times on
  a shared machine).

Writes ``benchmarks/results/rebuild.json``; ``--docs`` also rewrites its block of docs/performance.md.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import pstats
import sys
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from shapedmap import batched

from .__main__ import _commit
from .harness import compare, steady
from .report import DOCS, ROOT, replace_block
from .workloads import WORKLOADS, fresh, named_vmap

__all__ = ["main", "measure", "render"]

RESULTS = ROOT / "benchmarks" / "results" / "rebuild.json"
START, END = "<!-- rebuild-results:start -->", "<!-- rebuild-results:end -->"
EAGER_WORKLOADS = ("message_passing", "custom_dot_1000")
GOAL_REBUILD = 20e-6  # seconds: re-building for the same function and options
GOAL_EAGER = 1.05  # batched / the same named vmap nest, eagerly


def per_example(x: Float[Array, "n"]) -> Float[Array, "n"]:  # noqa: UP037 (a dim string)
    return jnp.tanh(x)


class Scaler:
    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:  # noqa: UP037
        return 2 * x


class MLP(eqx.Module):
    weight: Array

    def mlp(self, x: Float[Array, "n"]) -> Float[Array, "n"]:  # noqa: UP037
        return jnp.tanh(self.weight @ x)

    def __call__(self, x: Float[Array, "n"]) -> Float[Array, "n"]:  # noqa: UP037
        return jnp.tanh(self.weight @ x)


class Batching(eqx.Module):
    """The libraries page's pattern: the batched function built inside ``__call__``."""

    inner: MLP

    def __call__(self, x: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return batched(self.inner.mlp, "batch")(x)


class Vmapping(eqx.Module):
    inner: MLP

    def __call__(self, x: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return jax.vmap(self.inner.mlp)(x)


class NamedVmapping(eqx.Module):
    """What ``batched`` runs: the vmap binds its batch name (which costs inside JAX, eagerly)."""

    inner: MLP

    def __call__(self, x: Float[Array, "batch n"]) -> Float[Array, "batch n"]:
        return jax.vmap(self.inner.mlp, axis_name="batch")(x)


def _returning_none(build: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        build()

    return call


def rebuild_costs(repeat: int, target: float) -> dict[str, Any]:
    """Seconds per ``batched(...)`` (hit), per ``jax.vmap(...)``, and per first decoration."""
    model = MLP(jnp.eye(4))
    method, eqx_method = Scaler().apply, model.mlp
    callables = {
        "function": per_example,
        "bound method": method,
        "Equinox bound method": eqx_method,
        "Equinox module": model,
    }
    results: dict[str, Any] = {}
    for name, fn in callables.items():
        batched(fn, "batch")  # the first decoration: remembered
        comparison = compare(
            {
                "batched again": steady(_returning_none(lambda fn=fn: batched(fn, "batch"))),
                "jax.vmap": steady(_returning_none(lambda fn=fn: jax.vmap(fn))),
            },
            repeat=repeat,
            target=target,
            budget=15.0,
        )
        results[name] = {key: comparison.stats(key).to_dict() for key in ("batched again", "jax.vmap")}
    first = compare(
        {"first decoration": steady(_returning_none(lambda: batched(fresh(per_example), "batch")))},
        repeat=repeat,
        target=target,
        budget=15.0,
    )
    results["function"]["first decoration"] = first.stats("first decoration").to_dict()
    return results


def inside_call(repeat: int, target: float) -> dict[str, Any]:
    """An eager call of a module that builds its batched function in ``__call__``, against ``jax.vmap``."""
    inner = MLP(jnp.eye(16))
    x = jnp.ones((32, 16))
    batching, vmapping, named = Batching(inner), Vmapping(inner), NamedVmapping(inner)
    comparison = compare(
        {
            "batched in __call__": steady(lambda: batching(x)),
            "jax.vmap in __call__": steady(lambda: vmapping(x)),
            "named jax.vmap in __call__": steady(lambda: named(x)),
        },
        repeat=repeat,
        target=target,
        budget=30.0,
    )
    return {
        **{name: comparison.stats(name).to_dict() for name in comparison.samples},
        "ratio": comparison.ratio("batched in __call__", "jax.vmap in __call__").to_dict(),
        "ratio to named": comparison.ratio("batched in __call__", "named jax.vmap in __call__").to_dict(),
    }


def own_calls(function: Callable[..., Any], args: tuple[Any, ...], calls: int = 500) -> float:
    """shapedmap's own Python function calls per eager call (cProfile's count), the body excluded."""
    for _ in range(3):
        jax.block_until_ready(function(*args))
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        function(*args)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    own = sum(entry[1] for (path, _, _), entry in stats.items() if "/shapedmap/_" in path)
    return own / calls


def eager_costs(repeat: int, target: float) -> dict[str, Any]:
    """``batched`` / the named vmap nest per eager call, paired, with shapedmap's calls per call."""
    results: dict[str, Any] = {}
    for name in EAGER_WORKLOADS:
        workload = WORKLOADS[name]
        args = workload.make_inputs()
        function = workload.make_batched(workload.per_example)
        nest = named_vmap(function)
        comparison = compare(
            {"batched": steady(lambda f=function, a=args: f(*a)), "named vmap": steady(lambda f=nest, a=args: f(*a))},
            repeat=repeat,
            target=target,
            budget=30.0,
        )
        results[name] = {
            "batched": comparison.stats("batched").to_dict(),
            "named vmap": comparison.stats("named vmap").to_dict(),
            "ratio": comparison.ratio("batched", "named vmap").to_dict(),
            "shapedmap calls per call": own_calls(function, args),
        }
    return results


def measure(repeat: int = 21, target: float = 0.02) -> dict[str, Any]:
    """Every measurement, with the machine it ran on."""
    return {
        "machine": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(),
            "load": os.getloadavg()[0],
            "jax": jax.__version__,
            "commit": _commit(),
        },
        "rebuild": rebuild_costs(repeat, target / 4),
        "inside __call__": inside_call(repeat, target),
        "eager": eager_costs(repeat, target),
    }


def _time(stats: dict[str, Any], key: str = "median") -> str:
    seconds = stats[key]
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def _best(stats: dict[str, Any]) -> str:
    """The fastest sample, then the median: on a shared machine the fastest is the cost itself."""
    return f"{_time(stats, 'min')} ({_time(stats)})"


def _ratio(stats: dict[str, Any], goal: float | None = None) -> str:
    mark = "" if goal is None else (" ✓" if stats["median"] <= goal else " ✗")
    return f"{stats['median']:.2f} ({stats['q1']:.2f}–{stats['q3']:.2f}){mark}"


def render(results: dict[str, Any]) -> str:
    """Markdown: the three tables, and the machine they were measured on."""
    machine = results["machine"]
    rebuild = results["rebuild"]
    lines = [
        f"Measured {machine['date']} on {machine['cores']} cores (load average {machine['load']:.1f} at the "
        f"start: other work shares them), jax {machine['jax']}, shapedmap at `{machine['commit']}`.",
        "",
        '| callable | `batched(fn, "batch")` again: fastest (median) | `jax.vmap(fn)` | goal ≤ 20 µs |',
        "| --- | --- | --- | --- |",
    ]
    for name, entry in rebuild.items():
        again = entry["batched again"]
        mark = "✓" if again["min"] <= GOAL_REBUILD else "✗"
        lines.append(f"| {name} | {_best(again)} | {_best(entry['jax.vmap'])} | {mark} |")
    lines += [
        "",
        f"The first decoration of a function (annotations read, layouts placed, the Shapes section "
        f"written): {_best(rebuild['function']['first decoration'])}.",
        "",
    ]
    inside = results["inside __call__"]
    lines += [
        "| eager call of a module | fastest (median) | / `jax.vmap` (paired) | / `jax.vmap` with the axis name (paired) |",
        "| --- | --- | --- | --- |",
        f"| `batched(self.inner.mlp, 'batch')(x)` in `__call__` | {_best(inside['batched in __call__'])} "
        f"| {_ratio(inside['ratio'])} | {_ratio(inside['ratio to named'])} |",
        f"| `jax.vmap(self.inner.mlp)(x)` in `__call__` | {_best(inside['jax.vmap in __call__'])} | 1 | |",
        f"| `jax.vmap(self.inner.mlp, axis_name='batch')(x)` in `__call__` "
        f"| {_best(inside['named jax.vmap in __call__'])} | | 1 |",
        "",
        "| eager call | batched: fastest (median) | named vmap nest | batched / named, paired (goal ≤ 1.05) | shapedmap calls per call |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, entry in results["eager"].items():
        lines.append(
            f"| {name} | {_best(entry['batched'])} | {_best(entry['named vmap'])} | "
            f"{_ratio(entry['ratio'], GOAL_EAGER)} | {entry['shapedmap calls per call']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure (or re-render), print, and with ``--docs`` rewrite the block of docs/performance.md."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rebuild", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", action="store_true", help="also rewrite its block of docs/performance.md")
    parser.add_argument("--rerender", action="store_true", help="render the saved results only")
    parser.add_argument("--repeat", type=int, default=21)
    options = parser.parse_args(argv)
    if options.rerender:
        results = json.loads(RESULTS.read_text())
    else:
        results = measure(options.repeat)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    if options.docs:
        replace_block(DOCS, START, END, render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
