"""``python -O`` changes nothing (docs/architecture.md, Guarantees: optimized): a subset of the suite
runs again under ``-O``.

Under ``-O`` beartype switches itself off, so jaxtyping's per-example checks inside the map do not
run; shapedmap's own checks (arguments, static values, results) must still refuse every bad call by
name. The subset holds the tests that judge outcomes rather than the per-example check's wording:
the input and result fuzzers (an independent loop oracle that uses ``is_bearable``, which works
under ``-O``) and the regression tests, whose ``*_under_python_O`` cases were written for it. (Five tests elsewhere assert the text of
jaxtyping's messages, which ``-O`` replaces with shapedmap's own: they are left out.)
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from beartype import beartype

ROOT = Path(__file__).resolve().parent.parent
SUBSET = [
    "tests/test_optimized.py::test_this_process_is_optimized_when_asked",
    "tests/test_fuzz_inputs.py",
    "tests/test_fuzz_results.py",
    "tests/test_regressions.py",
]  # not the spec fuzzer (decoration raises SpecErrors in plain Python, the same under -O), nor the
# behaviour, memory and thread tests (what they hold, -O does not touch: mapping, cache bounds, locks)


def test_this_process_is_optimized_when_asked():
    """Inside the ``-O`` run: assertions are compiled out and beartype is a no-op, as claimed."""
    if os.environ.get("SHAPEDMAP_EXPECT_OPTIMIZED") != "1":
        pytest.skip("runs inside the python -O subprocess only")
    if __debug__ or sys.flags.optimize < 1:
        raise AssertionError("not running under python -O")

    def checked(x: int) -> int:
        return x

    if beartype(checked) is not checked:
        raise AssertionError("beartype is still on under python -O")


def test_suite_subset_under_python_O():
    environment = {**os.environ, "SHAPEDMAP_EXPECT_OPTIMIZED": "1", "JAX_PLATFORMS": "cpu"}
    environment["SHAPEDMAP_PROFILE"] = os.environ.get("SHAPEDMAP_PROFILE", "ci")
    command = [sys.executable, "-O", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SUBSET]
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    summary = completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else completed.stderr
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
