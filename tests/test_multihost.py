"""shard= over a mesh that spans two processes (one per simulated host, 4 CPU devices each).

Each launch starts tests/multihost/worker.py twice, joined by ``jax.distributed.initialize`` on a
free localhost port; both are killed if either is still running at the deadline, so a hang fails
the test instead of stalling the suite. The reference values come from this process: the naive
loop in NumPy and the unsharded batched function. Holds docs/architecture.md, Guarantees: sharding
(across processes) and reliability (processes that disagree get a ShapeError each, not a hang).
"""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shapedmap import batched

WORKER = Path(__file__).parent / "multihost" / "worker.py"
LAUNCH_TIMEOUT = 120  # seconds for a whole launch: JAX's start-up on a loaded machine, then the scenarios


def load_worker():
    spec = importlib.util.spec_from_file_location("multihost_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: beartype reads a function's module there
    spec.loader.exec_module(module)
    return module


worker = load_worker()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def launch(*scenarios: str) -> dict[str, list]:
    """Run the scenarios in two processes; {scenario: [result of process 0, result of process 1]}."""
    environment = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    port = str(free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), port, str(process), *scenarios],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for process in range(worker.PROCESSES)
    ]
    outputs = []
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=max(deadline - time.monotonic(), 0)))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the workers were still running after {LAUNCH_TIMEOUT} s (scenarios {scenarios})")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()  # SIGKILL: JAX's distributed runtime catches SIGTERM
                process.communicate()
    results: dict[str, list] = {scenario: [None] * len(processes) for scenario in scenarios}
    for process, (stdout, stderr) in enumerate(outputs):
        for line in stdout.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
                results[report["scenario"]][report["process"]] = report["result"]
        for scenario in scenarios:
            assert results[scenario][process] is not None, (
                f"process {process} did not finish {scenario!r} (exit code {processes[process].returncode}):\n"
                + stderr[-4000:]
            )
    return results


@pytest.fixture(scope="module")
def agreeing():
    return launch("agree", "refusals")


def assembled(shards: list[list[dict]], shape: list[int]) -> np.ndarray:
    """The global array from the addressable shards of every process; every element filled once."""
    out = np.full(shape, np.nan, dtype=np.float32)
    filled = np.zeros(shape, dtype=int)
    for shard in (shard for process in shards for shard in process):
        index = tuple(slice(start, stop) for start, stop in shard["index"])
        out[index] = shard["data"]
        filled[index] += 1
    assert (filled == 1).all(), "shards overlap or leave a gap"
    return out


def naive_loop(a, f, w):
    h = np.stack([a[g] @ f[g] @ w for g in range(len(a))])
    return h - h.mean(axis=0)


@pytest.mark.parametrize("run", ["auto-eager", "auto-jit", "explicit-eager", "explicit-jit"])
def test_two_processes_equal_the_single_process_call_and_the_loop(agreeing, run):
    a, f, w = worker.data()
    per_process = [agreeing["agree"][process][run] for process in range(worker.PROCESSES)]
    assert all(result["shape"] == [worker.GRAPHS, 5, 2] for result in per_process)
    for result in per_process:  # the batch dim split over 'data', the rest replicated: 2 graphs on each device
        assert result["spec"][0] == "data" and all(entry is None for entry in result["spec"][1:]), result["spec"]
        assert len(result["shards"]) == 4
        assert all(stop - start == 2 for start, stop in (shard["index"][0] for shard in result["shards"]))
    out = assembled([result["shards"] for result in per_process], [worker.GRAPHS, 5, 2])
    unsharded = batched(worker.centred_step, "graph", layouts={"w": "feat out"})(a, f, w)
    np.testing.assert_allclose(out, np.asarray(unsharded), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, naive_loop(a, f, w), rtol=1e-4, atol=1e-4)


def test_each_process_holds_only_its_own_graphs(agreeing):
    for process in range(worker.PROCESSES):
        rows = {shard["index"][0][0] // 2 for shard in agreeing["agree"][process]["auto-eager"]["shards"]}
        assert rows == set(range(process * 4, process * 4 + 4))  # devices 4p..4p+3 hold graphs 8p..8p+7


def test_a_batch_the_global_mesh_cannot_split_is_the_same_shape_error_on_every_process(agreeing):
    errors = agreeing["refusals"]
    for result in (errors[process]["indivisible"] for process in range(worker.PROCESSES)):
        assert result["error"] == "ShapeError"
        assert re.fullmatch(
            r"centred_step: the batch dim 'graph' has size 12 \(argument 'a' \(axis 0 of f32\[12,5,5\]\)\), which the "
            r"mesh axis 'data' \(size 8\) cannot split evenly: make the batch a multiple of 8, or shard 'graph' over "
            r"mesh axes whose size divides 12",
            result["message"],
        ), result["message"]


def test_a_jit_on_explicit_axes_outside_the_mesh_is_a_spec_error_on_every_process(agreeing):
    errors = agreeing["refusals"]
    for result in (errors[process]["explicit_jit_outside_mesh"] for process in range(worker.PROCESSES)):
        assert result["error"] == "SpecError"
        assert result["message"].startswith("centred_step: shard={'graph': 'data'} uses mesh axes of type Explicit")
        assert "jax.set_mesh(mesh)" in result["message"]


@pytest.fixture(scope="module")
def disagreeing():
    return launch("local_arrays", "disagreeing_shapes")


LOCAL_ARRAY = (
    r"{function}: argument '{argument}' is an array of this process alone \(f32\[{shape}\]\), but the mesh "
    r"spans 2 processes and shard= splits its batch dim 'graph' over 'data': pass one global jax\.Array, "
    r"e\.g\. jax\.make_array_from_process_local_data\(NamedSharding\(mesh, P\('data', None, None\)\), rows\) "
    r"from each process's rows"
)


@pytest.mark.parametrize("kind", ["numpy", "jax"])
def test_an_array_of_one_process_where_a_global_one_is_needed_is_a_shape_error(disagreeing, kind):
    for process in range(worker.PROCESSES):
        result = disagreeing["local_arrays"][process][kind]
        assert result["error"] == "ShapeError", result
        assert re.fullmatch(
            LOCAL_ARRAY.format(function="centred_step", argument="a", shape="8,5,5"), result["message"]
        ), result["message"]


def test_processes_whose_shapes_differ_get_shape_errors_not_a_hang(disagreeing):
    results = disagreeing["disagreeing_shapes"]
    assert results[0]["error"] == results[1]["error"] == "ShapeError", results
    assert re.fullmatch(
        LOCAL_ARRAY.format(function="centred_step", argument="a", shape="16,5,5"), results[0]["message"]
    ), results[0]
    assert re.fullmatch(
        LOCAL_ARRAY.format(function="centred_step", argument="a", shape="8,5,5"), results[1]["message"]
    ), results[1]


def test_the_several_hosts_commands_of_the_scaling_page_print_what_the_page_shows(tmp_path):
    """The page's script and launch commands as written; only the coordinator's port is a free one."""
    page = (Path(__file__).parent.parent / "docs" / "scaling.md").read_text()
    section = page.split("## Several hosts", 1)[1].split("\n## ", 1)[0]
    script = section.split("```python\n", 1)[1].split("```", 1)[0]
    commands = section.split("```bash\n", 1)[1].split("```", 1)[0]
    shown, message = (block.split("```", 1)[0] for block in section.split("```text\n")[1:3])
    assert "localhost:12355" in script
    (tmp_path / "two_hosts.py").write_text(script.replace("localhost:12355", f"localhost:{free_port()}"))
    environment = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    # `python` in the commands is this interpreter, as in a shell with its environment activated
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    with subprocess.Popen(
        ["bash", "-c", commands],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hang kills both workers at once
    ) as shell:
        try:
            stdout, stderr = shell.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            pytest.fail(f"the page's commands were still running after {LAUNCH_TIMEOUT} s")
    # Both processes write to one pipe, so one's line may be cut by the other's: each record starts
    # at "process N: ", and a record's pieces (print writes each argument) are joined again.
    records = re.sub(r":\s+\[", ": [", re.sub(r"\s*(process \d+: )", r"\n\1", stdout)).splitlines()
    printed = sorted(record.strip() for record in records if record.startswith("process "))
    assert printed == sorted(shown.splitlines()), stdout[-3000:] + stderr[-3000:]
    expected = LOCAL_ARRAY.format(function="centred", argument="f", shape="8,3,2")
    assert re.fullmatch(expected, message.strip().strip("`").strip()), message
