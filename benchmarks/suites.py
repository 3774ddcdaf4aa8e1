"""The measurements: per workload (batched vs the alternatives) and the scaling sweeps.

Each function returns plain JSON-able dicts; ``report`` turns them into tables and the plot.

* ``eager``: a call without ``jax.jit`` (``jax.vmap`` re-traces on every such call);
* ``jit``: the steady-state call of a jitted function (compiled once, before timing);
* ``first_call``: ``jax.jit(f)(*args)`` on a function built around a *fresh copy* of the
  per-example function, so trace and compile are both paid (and no cache hides them);
* ``loop``: the naive Python loop over the batch (eager, one example at a time).

Times are seconds per call; ratios are paired per repeat (see ``harness``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from .harness import Comparison, compare, first_call, steady
from .workloads import (
    Fn,
    Scaled,
    Workload,
    fresh,
    jaxtyped_vmap,
    named_vmap,
    scaling_args,
    scaling_leaves,
    scaling_names,
)

__all__ = ["Settings", "run_scaling", "run_workload"]


@dataclass(frozen=True)
class Settings:
    """How hard to measure.

    Attributes:
        repeat: samples per candidate for steady calls.
        eager_repeat: samples per candidate for eager calls: shapedmap's own cost is a few % of an
            eager call, so telling 1.03 from 1.06 in their paired ratio takes more samples than jit's.
        first_repeat: samples per candidate for first calls (each one a trace and a compile).
        target: seconds one steady sample lasts (calls per sample calibrated to it).
        budget: seconds one comparison may take, roughly (fewer repeats, at least 3, past it).
        loop_max: the largest batch the naive Python loop is run at.
    """

    repeat: int = 15
    eager_repeat: int = 45
    first_repeat: int = 7
    target: float = 0.02
    budget: float = 30.0
    loop_max: int = 10000


def _bound(fn: Fn, args: tuple[Any, ...]) -> Callable[[], Any]:
    return lambda: fn(*args)


def _fresh_jit(make: Callable[[Fn], Fn], per_example: Fn, args: tuple[Any, ...]) -> Callable[[], Callable[[], Any]]:
    """A builder of first calls: jit of ``make(fresh copy of per_example)``, bound to ``args``."""

    def build() -> Callable[[], Any]:
        return _bound(jax.jit(make(fresh(per_example))), args)

    return build


def _summary(comparison: Comparison, baseline: str, names: list[str]) -> dict[str, Any]:
    """Stats of every candidate and ratios to ``baseline``."""
    return {
        "times": {name: comparison.stats(name).to_dict() for name in names},
        "ratios": {name: comparison.ratio(name, baseline).to_dict() for name in names if name != baseline},
    }


def _modes(
    per_example: Fn,
    make_batched: Callable[[Fn], Fn],
    make_vmap: Callable[[Fn], Fn],
    args: tuple[Any, ...],
    settings: Settings,
    extra: dict[str, Fn] | None = None,
) -> dict[str, Any]:
    """Eager, jitted and first calls of ``batched`` vs ``vmap`` (and ``extra`` candidates)."""
    candidates = {"vmap": make_vmap(per_example), "batched": make_batched(per_example), **(extra or {})}
    names = list(candidates)
    repeat, target, budget = settings.repeat, settings.target, settings.budget
    # eager only: the same nest with its axis names, to tell shapedmap's cost from axis_name's;
    # sampled between vmap and batched, so each of batched's paired ratios compares neighbours in time
    eager_candidates = {"vmap": candidates["vmap"], "vmap_named": named_vmap(candidates["batched"]), **candidates}
    eager = compare(
        {n: steady(_bound(f, args)) for n, f in eager_candidates.items()},
        repeat=settings.eager_repeat,
        target=target,
        budget=budget,
    )
    jitted = compare(
        {n: steady(_bound(jax.jit(f), args)) for n, f in candidates.items()},
        repeat=repeat,
        target=target,
        budget=budget,
    )
    first = compare(
        {
            "jaxtyped_vmap": first_call(_fresh_jit(jaxtyped_vmap(make_vmap), per_example, args)),
            "batched": first_call(_fresh_jit(make_batched, per_example, args)),
        },
        repeat=settings.first_repeat,
        target=target,
        budget=budget,
    )
    eager_summary = _summary(eager, "vmap", [*names, "vmap_named"])
    eager_summary["ratios_to_named"] = {"batched": eager.ratio("batched", "vmap_named").to_dict()}
    return {
        "eager": eager_summary,
        "jit": _summary(jitted, "vmap", names),
        "first_call": _summary(first, "jaxtyped_vmap", ["jaxtyped_vmap", "batched"]),
    }


def run_workload(workload: Workload, settings: Settings) -> dict[str, Any]:
    """Every mode of one workload, with ``jnp.vectorize``, einx and the naive loop beside it."""
    args = workload.make_inputs()
    extra = {"vectorize": workload.vectorize}
    if workload.einx is not None:
        extra["einx"] = workload.einx
    result: dict[str, Any] = {"title": workload.title, "batch": int(args[0].shape[0])}
    result.update(_modes(workload.per_example, workload.make_batched, workload.make_vmap, args, settings, extra))
    if result["batch"] <= settings.loop_max:
        loop = compare(
            {"loop": steady(_bound(workload.naive, args))},
            repeat=settings.repeat,
            target=settings.target,
            budget=settings.budget,
        )
        result["loop"] = loop.stats("loop").to_dict()
    else:
        result["loop"] = None
    return result


SCALING: dict[str, tuple[Callable[[int], Scaled], tuple[int, ...]]] = {
    "arguments": (scaling_args, (1, 2, 4, 8, 16, 32, 64)),
    "batch names": (scaling_names, (1, 2, 3, 4)),
    "PyTree leaves": (scaling_leaves, (1, 10, 100, 1000)),
}


def run_scaling(axis: str, counts: tuple[int, ...], settings: Settings) -> list[dict[str, Any]]:
    """``batched`` vs ``vmap`` as one thing grows (``axis`` is a key of ``SCALING``)."""
    make = SCALING[axis][0]
    rows = []
    for count in counts:
        scaled = make(count)
        row = {"count": count}
        row.update(_modes(scaled.per_example, scaled.make_batched, scaled.make_vmap, scaled.inputs, settings))
        rows.append(row)
    return rows
