"""``python -m benchmarks.chunk_memory``: ``chunk=``'s compiled temporary memory beyond the leading axis.

Deterministic (XLA's ``memory_analysis().temp_size_in_bytes``; compiled, never run, no timing), on
the workload of ``benchmarks.chunks`` (pairwise distances of 64 points in 3-d per graph):

* a batch axis that is not the first (``"p d g -> p g"``) against ``lax.map`` over
  ``jnp.moveaxis(x, 2, 0)``, the program ``explain()`` writes, at 4 096 and 8 192 graphs;
* a batch the chunk does not divide, against ``lax.map(batch_size=k)``;
* in a child process on 8 simulated CPU devices, each device's memory with ``shard=`` against
  ``jax.shard_map(lambda xs: jax.lax.map(f, xs, batch_size=k), ...)`` at 4 096 and 65 536 graphs.

Writes ``benchmarks/results/chunk_memory.json``; ``--docs`` also rewrites its generated block of the
"Chunks" section of ``docs/performance.md``.

Example:
    $ .venv/bin/python -m benchmarks.chunk_memory --docs     # seconds: compiled, never run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from shapedmap import batched

from .__main__ import _commit
from .chunks import DIMENSIONS, DOCS, POINTS, SIZES, _megabytes, nearest_total
from .report import ROOT, replace_block

MEMORY_SIZES = (4096, 65536)
MEMORY_CHUNK = 16
NON_LEADING_CHUNKS = (16, 64, 256)
RESULTS = ROOT / "benchmarks" / "results" / "chunk_memory.json"
START, END = "<!-- chunk-memory:start -->", "<!-- chunk-memory:end -->"


def nearest_points(x: Float[Array, "p d"]) -> Float[Array, "p"]:  # noqa: UP037 (a dim string)
    """Each point's nearest squared distance: a result per point, so a batch axis out that is not the first."""
    distances = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    return jnp.sort(distances, axis=-1)[:, 1]


def _compiled_temp(function: Any, *abstract: Any) -> int:
    return jax.jit(function).lower(*abstract).compile().memory_analysis().temp_size_in_bytes


def non_leading_memory() -> dict[str, Any]:
    """``"p d g -> p g"``: chunked against ``lax.map`` over ``jnp.moveaxis(x, 2, 0)``, per size and k."""
    results: dict[str, Any] = {}
    for size in SIZES:
        abstract = jax.ShapeDtypeStruct((POINTS, DIMENSIONS, size), jnp.float32)
        for k in NON_LEADING_CHUNKS:
            chunked = batched(nearest_points, "p d g -> p g", chunk={"g": k})

            def written_out(x: Any, k: int = k) -> Any:
                return jnp.moveaxis(jax.lax.map(nearest_points, jnp.moveaxis(x, 2, 0), batch_size=k), 0, 1)

            results[f"{size} k={k}"] = {
                "chunked": _compiled_temp(chunked, abstract),
                "lax.map": _compiled_temp(written_out, abstract),
            }
    return results


def remainder_memory() -> dict[str, Any]:
    """A batch ``MEMORY_CHUNK`` does not divide (4 examples over): chunked against ``lax.map(batch_size=)``."""
    results: dict[str, Any] = {}
    for size in (*MEMORY_SIZES, *(size + 4 for size in MEMORY_SIZES)):
        abstract = jax.ShapeDtypeStruct((size, POINTS, DIMENSIONS), jnp.float32)
        results[str(size)] = {
            "chunked": _compiled_temp(batched(nearest_points, "graph", chunk={"graph": MEMORY_CHUNK}), abstract),
            "lax.map": _compiled_temp(lambda x: jax.lax.map(nearest_points, x, batch_size=MEMORY_CHUNK), abstract),
        }
    return results


def sharded_memory() -> dict[str, Any]:
    """Each device's temporary memory with ``shard=`` on 8 simulated CPU devices (in a child process)."""
    command = [sys.executable, "-m", "benchmarks.chunk_memory", "--child"]
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    output = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def sharded_memory_child() -> None:
    """In the child: per size, the per-device temp of vmap, chunk= and hand-written shard_map(lax.map)."""
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    variants = {
        "vmap": batched(nearest_total, "graph", shard={"graph": "data"}, mesh=mesh),
        "chunked": batched(nearest_total, "graph", shard={"graph": "data"}, mesh=mesh, chunk={"graph": MEMORY_CHUNK}),
        "shard_map(lax.map)": jax.shard_map(
            lambda xs: jax.lax.map(nearest_total, xs, batch_size=MEMORY_CHUNK),
            mesh=mesh,
            in_specs=PartitionSpec("data"),
            out_specs=PartitionSpec("data"),
        ),
    }
    results: dict[str, Any] = {"devices": len(jax.devices())}
    for size in MEMORY_SIZES:
        abstract = jax.ShapeDtypeStruct(
            (size, POINTS, DIMENSIONS), jnp.float32, sharding=NamedSharding(mesh, PartitionSpec("data"))
        )
        with jax.set_mesh(mesh):
            results[str(size)] = {name: _compiled_temp(function, abstract) for name, function in variants.items()}
    print(json.dumps(results))


def _temp_ratio(entry: dict[str, int], reference: str) -> str:
    return f"{entry['chunked'] / entry[reference]:.2f}" if entry[reference] else "–"


def render(memory: dict[str, Any]) -> str:
    """Markdown: a non-leading axis, a remainder, per device with ``shard=``."""
    lines = [
        '**A batch axis that is not the first** — `batched(nearest_points, "p d g -> p g", chunk={"g": k})` '
        "against the program `explain()` writes for it, `lax.map` over `jnp.moveaxis(x, 2, 0)`:",
        "",
        "| graphs | k | temp: lax.map (moved axis) | temp: chunked | chunked / lax.map |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, entry in memory["non_leading"].items():
        size, k = key.split(" k=")
        lines.append(
            f"| {int(size):,} | {k} | {_megabytes(entry['lax.map'])} | {_megabytes(entry['chunked'])} "
            f"| {_temp_ratio(entry, 'lax.map')} |"
        )
    lines += [
        "",
        f"**A batch the chunk does not divide** — k = {MEMORY_CHUNK}, per-point results, against "
        f"`lax.map(f, xs, batch_size={MEMORY_CHUNK})`, which copies the full slices' examples:",
        "",
        "| graphs | temp: lax.map | temp: chunked | chunked / lax.map |",
        "| --- | --- | --- | --- |",
    ]
    for size, entry in memory["remainder"].items():
        lines.append(
            f"| {int(size):,} | {_megabytes(entry['lax.map'])} | {_megabytes(entry['chunked'])} "
            f"| {_temp_ratio(entry, 'lax.map')} |"
        )
    sharded = memory["sharded"]
    lines += [
        "",
        f"**With `shard=`**, on {sharded['devices']} simulated CPU devices: each device's compiled temporary "
        f'memory, `jax.vmap` with `spmd_axis_name`, `chunk={{"graph": {MEMORY_CHUNK}}}`, and the hand-written '
        f"`jax.shard_map(lambda xs: jax.lax.map(f, xs, batch_size={MEMORY_CHUNK}), ...)`:",
        "",
        "| graphs | temp: vmap | temp: shard_map(lax.map) | temp: chunked | chunked / shard_map(lax.map) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size in map(str, MEMORY_SIZES):
        entry = sharded[size]
        lines.append(
            f"| {int(size):,} | {_megabytes(entry['vmap'])} | {_megabytes(entry['shard_map(lax.map)'])} "
            f"| {_megabytes(entry['chunked'])} | {_temp_ratio(entry, 'shard_map(lax.map)')} |"
        )
    return "\n".join(lines)


def measure() -> dict[str, Any]:
    """Every comparison, with the machine it ran on."""
    return {
        "machine": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(),
            "jax": jax.__version__,
            "commit": _commit(),
        },
        "non_leading": non_leading_memory(),
        "remainder": remainder_memory(),
        "sharded": sharded_memory(),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure (or, with ``--child``, be the process on 8 simulated devices)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chunk_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", action="store_true", help="also rewrite its block of docs/performance.md")
    parser.add_argument("--rerender", action="store_true", help="render the saved results only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        sharded_memory_child()
        return 0
    if options.rerender:
        results = json.loads(RESULTS.read_text())
    else:
        results = measure()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(render(results))
    if options.docs:
        replace_block(DOCS, START, END, render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
