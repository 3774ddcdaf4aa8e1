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
    pytest.importorskip("griffe")  # shapedmap.griffe_extension, one of the submodules, needs it (the docs extra)
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


LAYERS = """
from jaxtyping import Array, Float

from shapedmap import batched
from {package}.per_example import step


batched_step = batched(step, "b")  # functools.wraps gives it step's __module__: still this module's


class Model:
    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x

    @classmethod
    @batched("b")
    def build(cls, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x
"""


def test_functions_are_listed_where_batched_made_them_and_methods_too(tmp_path, monkeypatch, capsys):
    package = tmp_path / "layered"
    package.mkdir()
    (package / "__init__.py").write_text("from layered.layers import batched_step  # a re-export\n")
    (package / "per_example.py").write_text(
        'from jaxtyping import Array, Float\n\ndef step(x: Float[Array, "n"]) -> Float[Array, "n"]:\n    return x\n'
    )
    (package / "layers.py").write_text(LAYERS.format(package="layered"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["docs", "layered"]) == 0
        out = capsys.readouterr().out
    finally:
        for name in [m for m in sys.modules if m.startswith("layered")]:
            monkeypatch.delitem(sys.modules, name)
    assert out.count("### `batched_step`") == 1
    assert out.index("## layered.layers") < out.index("### `batched_step`")
    assert "### `Model.apply`" in out and "### `Model.build`" in out


def test_sys_exit_at_import_and_an_unwritable_output_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["docs", "exits_on_import"]) == 2
    assert "cannot import exits_on_import: SystemExit: no GPU here" in capsys.readouterr().err
    assert main(["docs", "shapedmap.examples", "-o", str(tmp_path / "missing" / "shapes.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m shapedmap docs: cannot write {tmp_path / 'missing' / 'shapes.md'}: ")
    assert "No such file or directory" in err
