"""Runs tests/multidevice on 8 simulated CPU devices, in a subprocess so this suite keeps one device."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_multidevice_suite_on_8_simulated_devices():
    environment = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "multidevice")],
        capture_output=True,
        text=True,
        env=environment,
        cwd=HERE.parent,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def test_the_worked_example_of_the_scaling_page_prints_what_the_page_shows():
    page = (HERE.parent / "docs" / "scaling.md").read_text()
    example = page.split("## A worked example on 8 simulated devices", 1)[1]
    code = example.split("```python\n", 1)[1].split("```", 1)[0]
    shown = example.split("```text\n", 1)[1].split("```", 1)[0]
    environment = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}  # the code sets it
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**environment, "JAX_PLATFORMS": "cpu"},
        cwd=HERE.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == shown
