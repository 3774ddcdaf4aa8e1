"""``python -m benchmarks``: batched vs jax.vmap, jnp.vectorize, einx and the naive loop, in one run.

Measures every seed workload (eager, jitted steady state, first call under jit) and the
scaling sweeps (arguments, batch names, PyTree leaves), prints the tables, and writes the
results as JSON (``benchmarks/results/latest.json`` by default). ``--docs`` also redraws
docs/images/seed001.png and the generated block of docs/performance.md.

Example:
    $ .venv/bin/python -m benchmarks --quick          # about a minute, small sizes
    $ nice .venv/bin/python -m benchmarks --docs      # the full run behind docs/performance.md
    $ nice .venv/bin/python -m benchmarks.chunks --docs   # chunk=: memory and time (benchmarks/chunks.py)
    $ .venv/bin/python -m benchmarks.chunk_memory --docs  # chunk=: memory of other axes, remainders, shard=
    $ .venv/bin/python -m benchmarks.sharded          # 8 host devices against 1 (its own process)

The shapedmap measured is the one imported; to measure a clean commit while the checkout has
work in progress, run from an export of it (``git archive HEAD shapedmap | tar -x -C DIR``,
then in DIR ``PYTHONPATH=DIR:REPO SHAPEDMAP_BENCH_COMMIT=$(git rev-parse --short HEAD) python -m
benchmarks``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

import shapedmap

from .report import ROOT, chart, render, update_docs
from .suites import SCALING, Settings, run_scaling, run_workload
from .workloads import CUSTOM_DOT_SIZES, WORKLOADS

QUICK = Settings(repeat=5, eager_repeat=5, first_repeat=3, target=0.005, budget=5.0, loop_max=1000)
QUICK_SKIP = {f"custom_dot_{n}" for n in CUSTOM_DOT_SIZES if n > 1000}
QUICK_COUNTS = {"arguments": (1, 8, 64), "batch names": (1, 4), "PyTree leaves": (1, 100, 1000)}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def _commit() -> str:
    """The commit of the shapedmap measured (``+dirty`` with uncommitted changes, ``snapshot`` if imported elsewhere)."""
    if os.environ.get("SHAPEDMAP_BENCH_COMMIT"):  # measuring a clean export of a commit elsewhere
        return os.environ["SHAPEDMAP_BENCH_COMMIT"]
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    source = Path(shapedmap.__file__).resolve().parent
    if source != ROOT / "shapedmap":
        return f"{commit} (imported from {source})"
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no", "--", "shapedmap") else "")


def machine(settings: Settings) -> dict[str, Any]:
    """Where and with what the numbers are taken."""
    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "device": f"{device.platform}: {device.device_kind}",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "einx": _version("einx"),
        "jaxtyping": _version("jaxtyping"),
        "beartype": _version("beartype"),
        "commit": _commit(),
        "load_before": os.getloadavg()[0],
        "settings": ", ".join(f"{key}={value}" for key, value in asdict(settings).items()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, sizes up to 1000 (a smoke run)")
    parser.add_argument("--only", default="workloads,scaling", help="comma-separated: workloads, scaling")
    parser.add_argument("--workloads", default=None, help=f"comma-separated subset of {', '.join(WORKLOADS)}")
    parser.add_argument("--loop-max", type=int, default=None, help="largest batch the naive loop runs at")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json")
    parser.add_argument("--docs", action="store_true", help="also redraw the chart and docs/performance.md")
    parser.add_argument(
        "--merge", type=Path, default=None, help="start from these results: re-measure only what --only names"
    )
    options = parser.parse_args(argv)

    settings = QUICK if options.quick else Settings()
    if options.loop_max is not None:
        settings = Settings(**{**asdict(settings), "loop_max": options.loop_max})
    sections = set(options.only.split(","))
    names = options.workloads.split(",") if options.workloads else list(WORKLOADS)
    if options.quick and not options.workloads:
        names = [name for name in names if name not in QUICK_SKIP]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")

    results: dict[str, Any] = {"workloads": {}, "scaling": {}}
    if options.merge is not None:
        results = json.loads(options.merge.read_text())
        results.setdefault("earlier_machines", []).append(results["machine"])
    results["machine"] = machine(settings)
    results["machine"]["sections"] = ", ".join(sorted(sections))
    if "workloads" in sections:
        results["workloads_measured"] = results["machine"]["date"]
    started = time.perf_counter()
    if "workloads" in sections:
        for name in names:
            print(f"[{time.perf_counter() - started:6.0f} s] {name}", file=sys.stderr, flush=True)
            results["workloads"][name] = run_workload(WORKLOADS[name], settings)
    if "scaling" in sections:
        for axis, (_, counts) in SCALING.items():
            counts = QUICK_COUNTS[axis] if options.quick else counts
            print(f"[{time.perf_counter() - started:6.0f} s] scaling: {axis} {counts}", file=sys.stderr, flush=True)
            results["scaling"][axis] = run_scaling(axis, counts, settings)
    results["machine"]["load_after"] = os.getloadavg()[0]
    results["machine"]["seconds"] = round(time.perf_counter() - started)

    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    print(f"results: {options.json}", file=sys.stderr)
    if options.docs:
        print(f"chart: {chart(results)}", file=sys.stderr)
        update_docs(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
