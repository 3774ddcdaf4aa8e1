"""``python -m shapedmap verify PACKAGE...`` and the plugin's ``--shapedmap-verify``, on a package
written for the test: a function that holds, one that holds only if two dims are equal, one whose
result is transposed, one that needs a static value (skipped, then given through
``__shapedmap_verify__``), and a method (skipped without an instance)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import shapedmap._docs_cli
import shapedmap.pytest_plugin
import shapedmap.testing
from shapedmap.__main__ import main

pytest_plugins = ["pytester"]

LAYERS = """
    import jax.numpy as jnp
    from jaxtyping import Array, Float

    from shapedmap import batched


    @batched("b")
    def good(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
        return x @ y


    @batched("b")
    def needs_equal(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n"]:
        return x + y


    @batched("b")
    def tiled(x: Float[Array, "n"], times: int) -> Float[Array, "2*n"]:
        return jnp.tile(x, times)


    class Model:
        @batched("b")
        def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
            return 2 * x
"""

LOSSES = """
    from jaxtyping import Array, Float

    from shapedmap import batched


    @batched("b")
    def transposed(x: Float[Array, "n m"]) -> Float[Array, "n m"]:
        return x.T
"""


@pytest.fixture
def package(tmp_path, monkeypatch):
    """Write the package ``pkg_<suffix>`` (layers, losses) on sys.path; returns its name."""

    def make(suffix: str, losses: bool = True, options: str = "") -> str:
        name = f"pkg_{suffix}"
        root = tmp_path / name
        root.mkdir()
        (root / "__init__.py").write_text("")
        (root / "layers.py").write_text(textwrap.dedent(LAYERS) + textwrap.dedent(options))
        if losses:
            (root / "losses.py").write_text(textwrap.dedent(LOSSES))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.chdir(tmp_path)
        return name

    return make


def test_one_line_per_function_and_exit_status_1(package, capsys):
    name = package("lines")
    assert main(["verify", name]) == 1
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == f"{name}/layers.py:8: {name}.layers.good: holds for every size >= 1 (1 trace: every dim its own size)"
    )
    assert out[1] == f"{name}/layers.py:13: {name}.layers.needs_equal: holds only if n == m"
    assert out[2] == (
        f"    [holds only if; trace: every dim its own size] `return x + y` at {name}/layers.py:15 needs n == m "
        "(TypeError: add got incompatible shapes for broadcasting: (n,), (m,).)"
    )
    assert out[3].startswith(
        f"{name}/layers.py:18: {name}.layers.tiled: skipped: the static parameter 'times' has no default"
    )
    assert out[3].endswith("give a value: given={'times': ...} (in __shapedmap_verify__['tiled'])")
    assert out[4].startswith(f"{name}/layers.py:24: {name}.layers.Model.apply: skipped: the static parameter 'self'")
    assert out[5] == f"{name}/losses.py:7: {name}.losses.transposed: wrong"
    assert out[6] == "    [wrong; trace: every dim its own size] returns f32(m, n) per example; annotated (n, m)"
    assert out[-1] == "holds: 1, holds only if: 1, skipped: 2, wrong: 1"


def test_all_hold_exits_0_and_strict_fails_on_skipped(package, capsys):
    options = """
        __shapedmap_verify__ = {"needs_equal": False, "tiled": {"given": {"times": 2}}}
    """
    name = package("passing", losses=False, options=options)
    assert main(["verify", name]) == 0
    out = capsys.readouterr().out
    assert f"{name}.layers.tiled: holds for every size >= 1" in out
    assert f"{name}.layers.needs_equal: skipped: __shapedmap_verify__['needs_equal'] is False" in out
    assert main(["verify", name, "--strict"]) == 1  # Model.apply has no instance


def test_json_document(package, capsys):
    name = package("json")
    assert main(["verify", name, "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == 1 and document["exit_status"] == 1
    assert document["counts"] == {"holds": 1, "holds only if": 1, "skipped": 2, "wrong": 1}
    by_name = {entry["name"]: entry for entry in document["functions"]}
    assert by_name["good"]["outcome"] == "holds" and by_name["good"]["findings"] == []
    assert by_name["good"]["file"].endswith("layers.py") and by_name["good"]["line"] == 8
    (finding,) = by_name["needs_equal"]["findings"]
    assert finding["needs"] == "n == m" and finding["where"] == f"{name}/layers.py:15"
    assert finding["case"] == "every dim its own size" and finding["outcome"] == "holds only if"
    assert by_name["transposed"]["module"] == f"{name}.losses"
    assert by_name["tiled"]["outcome"] == "skipped" and "findings" not in by_name["tiled"]


def test_usage_errors_exit_2(package, capsys):
    assert main(["verify", "no_such_package_anywhere"]) == 2
    assert "cannot" not in capsys.readouterr().out
    name = package("bad_options", options="__shapedmap_verify__ = ['good']\n")
    assert main(["verify", name]) == 2
    assert "__shapedmap_verify__ must be a dict" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["verify"])
    assert exit_info.value.code == 2


def test_as_a_program(package):
    name = package("program", losses=False)
    here = str(Path(shapedmap.__file__).parents[1])  # this checkout's shapedmap, and the package
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.getcwd()])}
    done = subprocess.run(
        [sys.executable, "-m", "shapedmap", "verify", name],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment,
    )
    assert done.returncode == 1, done.stderr
    assert f"{name}.layers.needs_equal: holds only if n == m" in done.stdout


def test_the_plugin_adds_a_verify_item_per_function(pytester, package):
    name = package("plugin")
    options = [f"--shapedmap-modules={name}.layers,{name}.losses", "--shapedmap-verify", "-p", "no:cacheprovider"]
    result = pytester.runpytest(*options, "-k", "verify", "-v", "-rs")
    result.assert_outcomes(passed=1, failed=2, skipped=1, deselected=4)
    result.stdout.fnmatch_lines_random(
        [
            f"{name}.layers::good?verify? PASSED*",
            f"{name}.layers::needs_equal?verify? FAILED*",
            f"{name}.losses::transposed?verify? FAILED*",
            "*`return x + y` at *layers.py:15 needs n == m*",
            "*returns f32(m, n) per example; annotated (n, m)*",
            "*SKIPPED*static parameter 'times' has no default*",
        ]
    )


def test_the_plugin_without_the_option_has_no_verify_items(pytester, package):
    name = package("plugin_off")
    result = pytester.runpytest(f"--shapedmap-modules={name}.layers", "--collect-only", "-q")
    result.stdout.no_fnmatch_line("*verify*")
