"""``python -m shapedmap docs MODULE [--format markdown|rst|json] [-o FILE]``."""

import json
import subprocess
import sys

import pytest

from shapedmap.__main__ import main
from shapedmap.examples import EXAMPLES


def test_markdown_to_stdout(capsys):
    assert main(["docs", "shapedmap.examples"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Shapes of shapedmap.examples\n")
    assert "## `message_passing`" in out and "## `column_sums`" in out
    assert "| `x` | `n col` | `n` | Float | `col` (axis 1) |" in out
    assert out.count("\n## `") == len({id(example.function) for example in EXAMPLES.values()})


def test_json_lists_every_bundled_example(capsys):
    assert main(["docs", "shapedmap.examples", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["module"] == "shapedmap.examples"
    by_name = {entry["name"]: entry for entry in data["functions"]}
    assert by_name["mv"]["batch_dims"][0]["in_axes"] == {"x": 0, "y": None}
    assert by_name["mm"]["per_example_batched"] is True
    assert {entry["module"] for entry in data["functions"]} == {"shapedmap.examples"}


def test_rst_to_a_file(tmp_path, capsys):
    target = tmp_path / "shapes.rst"
    assert main(["docs", "shapedmap.examples", "--format", "rst", "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    text = target.read_text(encoding="utf-8")
    assert text.startswith("Shapes of shapedmap.examples\n============================\n")
    assert "``pairwise``\n------------" in text


def test_a_package_is_walked_with_its_submodules(capsys):
    assert main(["docs", "shapedmap"]) == 0
    out = capsys.readouterr().out
    assert "## shapedmap.examples" in out and "### `message_passing`" in out


def test_a_module_that_does_not_import_exits_2(capsys):
    assert main(["docs", "no_such_module_anywhere"]) == 2
    err = capsys.readouterr().err
    assert "cannot import no_such_module_anywhere: ModuleNotFoundError" in err
    assert "add that directory to PYTHONPATH" in err


def test_a_module_that_raises_exits_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "raises_on_import.py").write_text("import numpy\nraise RuntimeError('needs a GPU')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["docs", "raises_on_import"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m shapedmap docs: cannot import raises_on_import: RuntimeError: needs a GPU")
    assert "PYTHONPATH" not in err


def test_a_submodule_that_does_not_import_exits_2(tmp_path, monkeypatch, capsys):
    package = tmp_path / "half_broken"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["docs", "half_broken"]) == 2
    err = capsys.readouterr().err
    assert "cannot import half_broken.bad: ModuleNotFoundError" in err
    for name in [m for m in sys.modules if m.startswith("half_broken")]:
        monkeypatch.delitem(sys.modules, name)


def test_a_module_without_batched_functions(capsys):
    assert main(["docs", "json"]) == 0
    assert "No function in json is made by shapedmap.batched." in capsys.readouterr().out


def test_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["docs", "shapedmap.examples", "--format", "yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


def test_the_real_command_line():
    run = subprocess.run(
        [sys.executable, "-m", "shapedmap", "docs", "shapedmap.examples", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert {entry["name"] for entry in json.loads(run.stdout)["functions"]} >= {"message_passing", "pairwise", "mm"}
    failed = subprocess.run(
        [sys.executable, "-m", "shapedmap", "docs", "no_such_module_anywhere"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert failed.returncode == 2 and "cannot import no_such_module_anywhere" in failed.stderr
