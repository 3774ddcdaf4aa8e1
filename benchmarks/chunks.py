"""``python -m benchmarks.chunks``: ``chunk=`` against ``jax.vmap`` and hand-written ``jax.lax.map``.

The workload has a per-example intermediate that grows with the square of the example: for each
graph of 64 points in 3-d, the (64, 64) pairwise squared distances, sorted per row, the nearest
distance summed. Over 4 096 and 8 192 graphs, side by side in one run:

* **compiled temporary memory** (XLA's ``memory_analysis().temp_size_in_bytes``, deterministic) of
  ``jax.vmap``, ``jax.lax.map(f, xs, batch_size=k)`` and ``batched(f, "graph", chunk={"graph": k})``
  for k in 16, 64, 256, 1024;
* **peak RSS** of a fresh process per variant that compiles and runs it once (``VmHWM``; see
  ``run_once_for_rss``), beside a process that only builds the input and runs a trivial program;
* **time** of the jitted call (``block_until_ready``), the candidates interleaved, medians of
  repeated samples with paired ratios (``benchmarks.harness``);
* the cost of a ``Budget``: the first call (search, compile, run) against the first call with the
  chunk it chose, and how many compilations the search took.

Memory beyond the leading axis (a batch axis that is not the first, a remainder, ``shard=``) is
measured by ``python -m benchmarks.chunk_memory``.

Writes ``benchmarks/results/chunks.json``; ``--docs`` also draws ``docs/images/chunks.png`` and
rewrites the generated block of the "Chunks" section of ``docs/performance.md``.

Example:
    $ nice .venv/bin/python -m benchmarks.chunks --docs     # about 25 minutes on 2 shared cores
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from shapedmap import Budget, batched

from .__main__ import _commit
from .harness import compare, steady
from .report import ROOT, _time, replace_block

SIZES = (4096, 8192)
CHUNKS = (16, 64, 256, 1024)
POINTS, DIMENSIONS = 64, 3
BUDGET = 2**22  # 4 MiB of temporary memory
RESULTS = ROOT / "benchmarks" / "results" / "chunks.json"
CHART = ROOT / "docs" / "images" / "chunks.png"
DOCS = ROOT / "docs" / "performance.md"
START, END = "<!-- chunk-results:start -->", "<!-- chunk-results:end -->"


def nearest_total(x: Float[Array, "p d"]) -> Float[Array, ""]:
    """Pairwise squared distances (p, p), sorted per row; the sum of each point's nearest distance."""
    distances = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    return jnp.sort(distances, axis=-1)[:, 1].sum()


def variant(name: str, chunk: int | None) -> Any:
    """The function a variant jits: ``vmap``, ``lax.map`` at ``chunk``, ``chunked`` at ``chunk``, or ``budget``."""
    if name == "vmap":
        return jax.vmap(nearest_total)
    if name == "lax.map":
        return lambda x: jax.lax.map(nearest_total, x, batch_size=chunk)
    if name == "chunked":
        return batched(nearest_total, "graph", chunk={"graph": chunk})
    if name == "budget":
        return batched(nearest_total, "graph", chunk={"graph": Budget(bytes=BUDGET)})
    if name == "input only":
        return jnp.sum
    raise ValueError(f"unknown variant {name!r}")


def inputs(size: int) -> jax.Array:
    """Drawn with NumPy: a JAX random draw would compile a program whose peak memory hides the variants'."""
    return jnp.asarray(np.random.default_rng(0).standard_normal((size, POINTS, DIMENSIONS), dtype=np.float32))


def temporary_bytes(function: Any, size: int) -> int:
    abstract = jax.ShapeDtypeStruct((size, POINTS, DIMENSIONS), jnp.float32)
    return jax.jit(function).lower(abstract).compile().memory_analysis().temp_size_in_bytes


def candidates() -> list[tuple[str, int | None]]:
    return [("vmap", None), *((name, k) for k in CHUNKS for name in ("lax.map", "chunked"))]


def label(name: str, chunk: int | None) -> str:
    return name if chunk is None else f"{name} k={chunk}"


def peak_rss(name: str, chunk: int | None, size: int) -> dict[str, int]:
    """Peak resident memory (bytes) of a fresh process that compiles one variant, then runs it once."""
    command = [sys.executable, "-m", "benchmarks.chunks", "--rss", name, str(size), str(chunk or 0)]
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    compiled, ran = map(int, output.strip().splitlines()[-1].split())
    return {"compiled": compiled, "ran": ran}


def run_once_for_rss(name: str, size: int, chunk: int) -> None:
    """In the child process: print the peak resident memory in bytes after compiling, then after running.

    Linux's ``ru_maxrss`` keeps the parent's resident size across fork and exec (the benchmark's own
    hundreds of MB), so the peak of this process's own memory, ``VmHWM``, is read where there is one.
    """
    x = inputs(size)
    compiled = jax.jit(variant(name, chunk or None)).lower(x).compile()
    after_compiling = _peak_resident_bytes()
    jax.block_until_ready(compiled(x))
    print(after_compiling, _peak_resident_bytes())


def _peak_resident_bytes() -> int:
    status = Path("/proc/self/status")
    if status.exists():
        (line,) = [line for line in status.read_text().splitlines() if line.startswith("VmHWM:")]
        return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS


def budget_cost(size: int, repeat: int) -> dict[str, Any]:
    """First calls with ``Budget`` (search + compile + run) against the chosen chunk's; the search's compilations."""
    from shapedmap import explain

    x = inputs(size)
    traces: list[int] = []

    def counted(x: Float[Array, "p d"]) -> Float[Array, ""]:
        traces.append(1)
        return nearest_total(x)

    chosen = batched(counted, "graph", chunk={"graph": Budget(bytes=BUDGET)})
    jax.block_until_ready(jax.jit(chosen)(x))
    traces_with_search = len(traces)
    text = explain(chosen, x)
    chunk = int(text.split("batch_size=", 1)[1].split(")", 1)[0]) if "batch_size=" in text else size
    seconds: dict[str, list[float]] = {"budget": [], "chunk": []}
    for _ in range(repeat):  # a fresh function each time: nothing cached
        for kind in seconds:
            spec = Budget(bytes=BUDGET) if kind == "budget" else chunk
            function = batched(_fresh_copy(), "graph", chunk={"graph": spec})
            start = time.perf_counter()
            jax.block_until_ready(jax.jit(function)(x))
            seconds[kind].append(time.perf_counter() - start)
    first = {kind: sorted(values)[len(values) // 2] for kind, values in seconds.items()}
    return {
        "budget_bytes": BUDGET,
        "chosen_chunk": chunk,
        "chosen_temp_bytes": temporary_bytes(variant("chunked", chunk), size),
        "double_temp_bytes": temporary_bytes(variant("chunked", 2 * chunk), size) if 2 * chunk < size else None,
        "compilations": traces_with_search - 1,  # every trace but the call's own is one compilation of the search
        "first_call_seconds": first,
    }


def _fresh_copy() -> Any:
    """A new function object with ``nearest_total``'s code and annotations (JAX and shapedmap cache by function)."""

    def nearest(x: Float[Array, "p d"]) -> Float[Array, ""]:
        return nearest_total(x)

    return nearest


def measure(repeat: int, target: float, budget: float) -> dict[str, Any]:
    """Every measurement, for every size; ``budget``: seconds the timing of one size may take, roughly."""
    results: dict[str, Any] = {
        "machine": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(),
            "jax": jax.__version__,
            "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}",
            "commit": _commit(),
            "load_before": os.getloadavg()[0],
        },
        "workload": f"{POINTS} points in {DIMENSIONS}-d per graph: ({POINTS}, {POINTS}) distances, sorted per row",
        "sizes": {},
    }
    started = time.perf_counter()
    for size in SIZES:
        print(f"[{time.perf_counter() - started:5.0f} s] n={size}", file=sys.stderr, flush=True)
        x = inputs(size)
        entry: dict[str, Any] = {"temp_bytes": {}, "peak_rss_bytes": {}, "seconds": {}, "ratios": {}}
        for name, chunk in candidates():
            entry["temp_bytes"][label(name, chunk)] = temporary_bytes(variant(name, chunk), size)
        entry["peak_rss_bytes"]["input only"] = peak_rss("input only", None, size)
        for name, chunk in candidates():
            entry["peak_rss_bytes"][label(name, chunk)] = peak_rss(name, chunk, size)
        jitted = {label(name, chunk): jax.jit(variant(name, chunk)) for name, chunk in candidates()}
        comparison = compare(
            {key: steady(lambda function=function, x=x: function(x)) for key, function in jitted.items()},
            repeat=repeat,
            target=target,
            budget=budget,
        )
        entry["seconds"] = {key: comparison.stats(key).to_dict() for key in jitted}
        for k in CHUNKS:
            entry["ratios"][f"k={k}"] = {
                "time chunked / lax.map": comparison.ratio(f"chunked k={k}", f"lax.map k={k}").to_dict(),
                "temp chunked / lax.map": entry["temp_bytes"][f"chunked k={k}"] / entry["temp_bytes"][f"lax.map k={k}"],
            }
        print(f"[{time.perf_counter() - started:5.0f} s] n={size}: budget", file=sys.stderr, flush=True)
        entry["budget"] = budget_cost(size, repeat=3)
        results["sizes"][str(size)] = entry
    results["machine"]["load_after"] = os.getloadavg()[0]
    results["machine"]["seconds"] = round(time.perf_counter() - started)
    return results


def _megabytes(count: int | None) -> str:
    return "–" if count is None else f"{count / 1e6:.2f} MB"


def _rss(peaks: dict[str, int]) -> str:
    """The process's peak after running, and how much running added to the peak after compiling."""
    return f"{peaks['ran'] / 1e6:.0f} MB (+{(peaks['ran'] - peaks['compiled']) / 1e6:.1f})"


def render(results: dict[str, Any]) -> str:
    """Markdown: one table per batch size, and the budget's cost."""
    machine = results["machine"]
    lines = [
        f"Measured {machine['date']}, JAX device `{machine['device']}` ({machine['cores']} cores shared with other "
        f"work: load average {machine['load_before']:.2f} before, {machine['load_after']:.2f} after), jax "
        f"{machine['jax']}, shapedmap at `{machine['commit']}`. Times are medians of interleaved samples of "
        "the jitted call (how many: under each table), ratios medians of the paired samples (IQR in brackets).",
        "",
    ]
    for size, entry in results["sizes"].items():
        vmap_seconds = entry["seconds"]["vmap"]["median"]
        lines += [
            f"**{int(size):,} graphs** — `jax.vmap`: temp {_megabytes(entry['temp_bytes']['vmap'])}, "
            f"peak RSS {_rss(entry['peak_rss_bytes']['vmap'])} (a process with the input only: "
            f"{_rss(entry['peak_rss_bytes']['input only'])}), {_time(entry['seconds']['vmap'])} per call.",
            "",
            "| k | temp: lax.map | temp: chunked | chunked / lax.map | peak RSS (+ running): lax.map | chunked "
            "| time: lax.map | time: chunked | chunked / lax.map (time) | chunked / vmap (time) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for k in CHUNKS:
            ratio = entry["ratios"][f"k={k}"]
            time_ratio = ratio["time chunked / lax.map"]
            lines.append(
                f"| {k} | {_megabytes(entry['temp_bytes'][f'lax.map k={k}'])} "
                f"| {_megabytes(entry['temp_bytes'][f'chunked k={k}'])} | {ratio['temp chunked / lax.map']:.2f} "
                f"| {_rss(entry['peak_rss_bytes'][f'lax.map k={k}'])} "
                f"| {_rss(entry['peak_rss_bytes'][f'chunked k={k}'])} "
                f"| {_time(entry['seconds'][f'lax.map k={k}'])} | {_time(entry['seconds'][f'chunked k={k}'])} "
                f"| {time_ratio['median']:.2f} ({time_ratio['q1']:.2f}–{time_ratio['q3']:.2f}) "
                f"| {entry['seconds'][f'chunked k={k}']['median'] / vmap_seconds:.2f} |"
            )
        budget = entry["budget"]
        first = budget["first_call_seconds"]
        lines += [
            "",
            f"Timed with {entry['seconds']['vmap']['repeats']} samples per candidate.",
            "",
            f"`Budget(bytes={budget['budget_bytes']})` chose k = {budget['chosen_chunk']} (temp "
            f"{_megabytes(budget['chosen_temp_bytes'])}; k = {2 * budget['chosen_chunk']} would need "
            f"{_megabytes(budget['double_temp_bytes'])}) with {budget['compilations']} compilations; its first call "
            f"took {first['budget']:.2f} s against {first['chunk']:.2f} s for `chunk={{'graph': "
            f"{budget['chosen_chunk']}}}` (median of 3).",
            "",
        ]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path = CHART) -> Path:
    """Temporary memory and time against k, for lax.map and chunked, with jax.vmap as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, seconds) = plt.subplots(2, 1, figsize=(8, 9), dpi=110)
    colours = dict(zip(results["sizes"], ("tab:blue", "tab:orange"), strict=False))
    for size, entry in results["sizes"].items():
        colour = colours[size]
        for name, style in (("lax.map", dict(marker="o", linestyle="--")), ("chunked", dict(marker="x", markersize=9))):
            memory.plot(
                CHUNKS,
                [entry["temp_bytes"][f"{name} k={k}"] / 1e6 for k in CHUNKS],
                color=colour,
                label=f"{name}, n={size}",
                **style,
            )
            stats = [entry["seconds"][f"{name} k={k}"] for k in CHUNKS]
            spread = [[s["median"] - s["q1"] for s in stats], [s["q3"] - s["median"] for s in stats]]
            seconds.errorbar(
                CHUNKS,
                [s["median"] * 1e3 for s in stats],
                yerr=[[v * 1e3 for v in side] for side in spread],
                color=colour,
                capsize=3,
                label=f"{name}, n={size}",
                **style,
            )
        memory.axhline(entry["temp_bytes"]["vmap"] / 1e6, color=colour, linestyle=":", label=f"jax.vmap, n={size}")
        seconds.axhline(
            entry["seconds"]["vmap"]["median"] * 1e3, color=colour, linestyle=":", label=f"jax.vmap, n={size}"
        )
    for axes, title, unit in ((memory, "compiled temporary memory", "MB"), (seconds, "time per jitted call", "ms")):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("k (examples per slice)")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=9)
    machine = results["machine"]
    figure.suptitle(f"chunk= vs lax.map(batch_size=k) vs vmap\nCPU, {machine['cores']} cores, jax {machine['jax']}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def update_docs(results: dict[str, Any], path: Path = DOCS) -> None:
    """Replace the generated block of the "Chunks" section of ``docs/performance.md``."""
    replace_block(path, START, END, render(results))


def main(argv: list[str] | None = None) -> int:
    """Measure (or, with ``--rss``, be the child process of one variant)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chunks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", action="store_true", help="also draw the chart and rewrite docs/performance.md")
    parser.add_argument("--repeat", type=int, default=15, help="interleaved timing samples per candidate, at most")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds the timing of one size may take")
    parser.add_argument("--rerender", action="store_true", help="render the saved results only")
    parser.add_argument("--rss", nargs=3, metavar=("VARIANT", "SIZE", "CHUNK"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.rss:
        name, size, chunk = options.rss
        run_once_for_rss(name, int(size), int(chunk))
        return 0
    if options.rerender:
        results = json.loads(RESULTS.read_text())
    else:
        results = measure(options.repeat, target=0.05, budget=options.budget)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    if options.docs:
        print(f"chart: {chart(results)}", file=sys.stderr)
        update_docs(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
