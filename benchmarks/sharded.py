"""``python -m benchmarks.sharded``: a sharded workload, 8 host devices against 1.

Message passing over 64 graphs of 128 nodes with 64 features, ``jax.jit`` of
``batched(..., shard={"graph": "data"})`` on a mesh of 8 simulated CPU devices, against the same
function unsharded on one device; also against hand-written ``jit(vmap(..., spmd_axis_name="data"))``
with the same shardings (the zero-cost check, timed). XLA_FLAGS must ask for the 8 devices before
JAX starts, so this runs as its own process.

Caveat, printed with the numbers: the 8 "devices" are threads sharing this machine's cores, so the
ratio measures the sharding machinery and partitioning, not a speed-up a real 8-device mesh gives.

Example:
    $ .venv/bin/python -m benchmarks.sharded            # prints the table, writes results/sharded.json
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json
import sys
from pathlib import Path

import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from shapedmap import batched

from .harness import compare, steady

GRAPHS, NODES, FEATURES = 64, 128, 64
RESULTS = Path(__file__).parent / "results" / "sharded.json"


def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    """Two rounds of message passing on one graph."""
    return a @ (a @ f)


def measure(repeat: int = 15, target: float = 0.05) -> dict[str, object]:
    """Time the three candidates interleaved; returns medians, spreads and ratios."""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    key_a, key_f = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (GRAPHS, NODES, NODES))
    f = jax.random.normal(key_f, (GRAPHS, NODES, FEATURES))
    one_device = jax.jit(batched(message_passing, "graph"))
    sharded = jax.jit(batched(message_passing, "graph", shard={"graph": "data"}, mesh=mesh))
    placed = NamedSharding(mesh, P("data"))
    a8, f8 = jax.device_put(a, placed), jax.device_put(f, placed)
    hand_written = jax.jit(jax.vmap(message_passing, axis_name="graph", spmd_axis_name="data"))
    comparison = compare(
        {
            "1 device": steady(lambda: one_device(a, f)),
            "8 devices (batched, shard=)": steady(lambda: sharded(a8, f8)),
            "8 devices (hand-written)": steady(lambda: hand_written(a8, f8)),
        },
        repeat=repeat,
        target=target,
    )
    names = list(comparison.samples)
    return {
        "workload": f"message passing, {GRAPHS} graphs x {NODES} nodes x {FEATURES} features, 2 rounds, jit",
        "devices": len(jax.devices()),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "seconds": {name: comparison.stats(name).to_dict() for name in names},
        "ratios": {
            "8 devices / 1 device": comparison.ratio(names[1], names[0]).to_dict(),
            "batched / hand-written (8 devices)": comparison.ratio(names[1], names[2]).to_dict(),
        },
    }


def main() -> int:
    """Measure, print a table, write ``benchmarks/results/sharded.json``."""
    results = measure()
    print(f"{results['workload']}; {results['devices']} simulated devices on {results['cores']} cores\n")
    print("| candidate | median | IQR |")
    print("| --- | --- | --- |")
    for name, stats in results["seconds"].items():
        print(f"| {name} | {stats['median'] * 1e3:.2f} ms | {stats['q1'] * 1e3:.2f}–{stats['q3'] * 1e3:.2f} ms |")
    print()
    for name, stats in results["ratios"].items():
        print(f"{name}: {stats['median']:.2f} ({stats['q1']:.2f}–{stats['q3']:.2f})")
    print(
        "\nCaveat: the 8 devices are host threads sharing this machine's cores; the ratio shows what"
        "\nsharding costs or saves here, not the speed-up of a real 8-device mesh."
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
