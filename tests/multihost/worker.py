"""One process of the two-process runs of tests/test_multihost.py (a script, not a test module).

``python tests/multihost/worker.py PORT PROCESS_ID SCENARIO...`` joins a JAX runtime of two
processes (the caller gives each 4 CPU devices through ``XLA_FLAGS``), runs each scenario and
prints one JSON line per scenario: what the test process needs to check it. A scenario that does
not finish within ``DEADLINE`` seconds ends the process, with the stack of every thread on stderr.
"""

import faulthandler
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float

from shapedmap import batched

PROCESSES = 2
GRAPHS = 16  # 8 per process, 2 per device
DEADLINE = 30
AXIS_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole batch (a, f) and the shared weight w: every process and the test make the same."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(GRAPHS, 5, 5)).astype(np.float32)
    f = rng.normal(size=(GRAPHS, 5, 3)).astype(np.float32)
    w = rng.normal(size=(3, 2)).astype(np.float32)
    return a, f, w


def centred_step(
    a: Float[Array, "node node"], f: Float[Array, "node feat"], w: Float[Array, "feat out"]
) -> Float[Array, "node out"]:
    """One message-passing step, centred on the mean over the whole batch (a psum across processes)."""
    h = a @ f @ w
    return h - jax.lax.psum(h, "graph") / jax.lax.psum(1, "graph")


def sharded(kind: str):
    mesh = jax.make_mesh((PROCESSES * 4,), ("data",), axis_types=(AXIS_TYPES[kind],))
    return mesh, batched(centred_step, "graph", layouts={"w": "feat out"}, shard={"graph": "data"}, mesh=mesh)


def rows(x: np.ndarray, process: int) -> np.ndarray:
    """This process's share of the batch: process 0 holds graphs 0-7, process 1 graphs 8-15."""
    share = len(x) // PROCESSES
    return x[process * share : (process + 1) * share]


def agree(process: int) -> dict:
    """Global inputs from each process's rows; eager and jit, on Auto and Explicit mesh axes."""
    a, f, w = data()
    runs = {}
    for kind in AXIS_TYPES:
        mesh, step = sharded(kind)
        split = NamedSharding(mesh, P("data"))
        global_a = jax.make_array_from_process_local_data(split, rows(a, process))
        global_f = jax.make_array_from_process_local_data(split, rows(f, process))
        for jit in (False, True):
            if jit:
                with jax.set_mesh(mesh):
                    out = jax.jit(step)(global_a, global_f, w)
            else:
                out = step(global_a, global_f, w)
            runs[f"{kind}-{'jit' if jit else 'eager'}"] = {
                "shape": list(out.shape),
                "spec": list(out.sharding.spec),
                "shards": [
                    {"index": [[s.start, s.stop] for s in shard.index], "data": np.asarray(shard.data).tolist()}
                    for shard in out.addressable_shards
                ],
            }
    return runs


def error_of(call) -> dict:
    try:
        call()
    except Exception as error:
        return {"error": type(error).__name__, "message": str(error)}
    return {"error": None}


def refusals(process: int) -> dict:
    """Errors every process raises alike, so that none is left waiting in a collective."""
    a, f, w = data()
    mesh, step = sharded("auto")
    whole = NamedSharding(mesh, P())  # 12 graphs, a copy on every device: the mesh cannot split them
    a12 = jax.make_array_from_process_local_data(whole, a[:12])
    f12 = jax.make_array_from_process_local_data(whole, f[:12])
    explicit_mesh, explicit_step = sharded("explicit")
    split = NamedSharding(explicit_mesh, P("data"))
    global_a = jax.make_array_from_process_local_data(split, rows(a, process))
    global_f = jax.make_array_from_process_local_data(split, rows(f, process))
    return {
        "indivisible": error_of(lambda: step(a12, f12, w)),
        "explicit_jit_outside_mesh": error_of(lambda: jax.jit(explicit_step)(global_a, global_f, w)),
    }


def local_arrays(process: int) -> dict:
    """Each process passes its own rows as a NumPy array, and as a jax.Array on one of its devices."""
    a, f, w = data()
    _, step = sharded("auto")
    return {
        "numpy": error_of(lambda: step(rows(a, process), rows(f, process), w)),
        "jax": error_of(lambda: step(jnp.asarray(rows(a, process)), jnp.asarray(rows(f, process)), w)),
    }


def disagreeing_shapes(process: int) -> dict:
    """Process 0 passes the whole batch, process 1 only its own rows: their shapes differ."""
    a, f, w = data()
    _, step = sharded("auto")
    mine = (a, f) if process == 0 else (rows(a, process), rows(f, process))
    return error_of(lambda: step(*mine, w))


SCENARIOS = {
    "agree": agree,
    "refusals": refusals,
    "local_arrays": local_arrays,
    "disagreeing_shapes": disagreeing_shapes,
}


def main(port: str, process: str, *scenarios: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=PROCESSES, process_id=int(process)
    )
    for scenario in scenarios:
        faulthandler.dump_traceback_later(DEADLINE, exit=True)
        report = {"scenario": scenario, "process": int(process), "result": SCENARIOS[scenario](int(process))}
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
