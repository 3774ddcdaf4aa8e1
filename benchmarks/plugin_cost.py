"""``python -m benchmarks.plugin_cost``: the pytest plugin's wall time on a module of 50 batched functions.

Writes a module of 50 batched functions (ten per-example functions of the kinds people batch —
reductions, a matrix-vector product, softmax, message passing, pairwise distances, a cross
product, a norm over ``*rest``, a PyTree, a dim expression, a PRNG key — each under five specs:
``"batch"``, ``"graph time"``, ``"*batch"``, one argument shared and ``"b"`` under ``jax.jit``),
then runs ``pytest --shapedmap-modules=<it>`` on it in a child process, on ``--workers`` cores
(pytest-xdist), once per number of examples asked (the plugin's default, 20, and the Hypothesis
default, 100), and records the wall time of each run, the CPU time of pytest and its workers
(user + system: what the run costs whatever else the machine runs) and the load average of the
machine before it. On a shared machine, the CPU time divided by the workers is the wall time
the run would take on that many idle cores. Writes ``benchmarks/results/plugin_cost.json``.

Example:
    $ .venv/bin/python -m benchmarks.plugin_cost                      # 50 functions at 20 and 100 examples
    $ .venv/bin/python -m benchmarks.plugin_cost --examples 20 --workers 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .__main__ import _commit
from .report import ROOT

BODIES = {
    "total": ('x: Float[Array, "n"]', 'Float[Array, ""]', "return x.sum()"),
    "matvec": ('m: Float[Array, "n k"], v: Float[Array, "k"]', 'Float[Array, "n"]', "return m @ v"),
    "softmax": ('x: Float[Array, "n"]', 'Float[Array, "n"]', "return jax.nn.softmax(x)"),
    "message": (
        'a: Float[Array, "node node"], f: Float[Array, "node feat"]',
        'Float[Array, "node feat"]',
        "return jnp.tanh(a @ f)",
    ),
    "distances": (
        'p: Float[Array, "point d"]',
        'Float[Array, "point point"]',
        "return jnp.sqrt(jnp.sum((p[:, None] - p[None]) ** 2, -1) + 1e-6)",
    ),
    "cross": ('u: Float[Array, "3"], v: Float[Array, "3"]', 'Float[Array, "3"]', "return jnp.cross(u, v)"),
    "norm": ('x: Float[Array, "*rest"]', 'Float[Array, ""]', "return jnp.sqrt(jnp.sum(x**2))"),
    "tree": (
        'tree: PyTree[Float[Array, "n"]]',
        'Float[Array, ""]',
        "return sum((leaf.sum() for leaf in jax.tree.leaves(tree)), start=jnp.float32(0))",
    ),
    "padded": (
        'x: Float[Array, "n"], y: Float[Array, "n+1"]',
        'Float[Array, "2*n+1"]',
        "return jnp.concatenate([x, y])",
    ),
    "noisy": (
        'x: Float[Array, "n"], key: PRNGKeyArray',
        'Float[Array, "n"]',
        "return x + jax.random.normal(key, x.shape)",
    ),
}


def _specs(name: str, parameters: str) -> list[tuple[str, str]]:
    """Five ways to batch one per-example function: ``(suffix, expression)``."""
    first = parameters.split(":")[0]
    broadcast = "sample" if "*" in parameters or "PRNGKeyArray" in parameters else "*batch"  # one variadic
    shared = f', layouts={{"{first}": None}}' if parameters.count(":") > 1 else ""
    return [
        ("batch", f'batched({name}, "batch")'),
        ("graph_time", f'batched({name}, "graph time")'),
        ("broadcast", f'batched({name}, "{broadcast}")'),
        ("shared", f'batched({name}, "batch"{shared})'),
        ("jit", f'batched(jax.jit({name}), "b")'),
    ]


def module_text() -> str:
    """The source of a module of 50 batched functions."""
    lines = [
        "import jax",
        "import jax.numpy as jnp",
        "from jaxtyping import Array, Float, PRNGKeyArray, PyTree",
        "",
        "from shapedmap import batched",
        "",
    ]
    for name, (parameters, result, body) in BODIES.items():
        lines += ["", f"def {name}({parameters}) -> {result}:", f"    {body}", ""]
        lines += [f"{name}_{suffix} = {expression}" for suffix, expression in _specs(name, parameters)]
    return "\n".join(lines) + "\n"


def run(examples: str, workers: int) -> dict[str, object]:
    """One pytest run of the plugin over the module, in a child process: its wall time and outcome."""
    with tempfile.TemporaryDirectory() as here:
        Path(here, "plugin_cost_module.py").write_text(module_text())
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            here,
            here,
            "--shapedmap-modules=plugin_cost_module",
            f"--shapedmap-examples={examples}",
            *(["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]),
        ]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([here, str(ROOT), *sys.path[1:]])}
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=here, check=False)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else finished.stderr[-500:]
    return {
        "examples": examples,
        "workers": workers,
        "functions": 5 * len(BODIES),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_per_function": round(cpu / (5 * len(BODIES)), 2),
        "load_average_before": round(load, 1),
        "outcome": summary,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", default=["20", "100"], help="examples per function, one run each")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (1: none)")
    options = parser.parse_args()
    runs = []
    for examples in options.examples:
        result = run(examples, options.workers)
        print(json.dumps(result), flush=True)
        runs.append(result)
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    out = ROOT / "benchmarks" / "results" / "plugin_cost.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
