"""Type checkers see a ``batched`` function's own signature (``shapedmap/py.typed``, ``batched``'s overloads).

One ``mypy --strict`` run over two small files: every use in ``good.py`` passes, and every line of
``bad.py`` marked ``# error: <text>`` fails with that text (and no other line fails), so the test
shows that the decorated functions are typed rather than ``Any``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import shapedmap

pytest.importorskip("mypy")

PACKAGE = Path(shapedmap.__file__).parent

PRELUDE = """
import functools

import jax.numpy as jnp
from jaxtyping import Array, Float, Key

from shapedmap import Budget, SplitKey, batched


@batched("b")
def square(x: Float[Array, ""]) -> Float[Array, ""]:
    return x * x


def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    return jnp.vdot(x, y)


mv = batched(vv, "b a, a -> b")
mm = batched(mv, spec="b a, a c -> b c", check=False)


@batched(spec="b", layouts={"w": "n m"}, out="b m")
def linear(x: Float[Array, "n"], w: Float[Array, "n m"], *, scale: float = 1.0) -> Float[Array, "m"]:
    return scale * (x @ w)


def shifted(x: Float[Array, "n"], offset: float) -> Float[Array, "n"]:
    return x + offset


class Model:
    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x

    @classmethod
    @batched("b")
    def build(cls, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x

    @staticmethod
    @batched("b")
    def plain(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x


x = jnp.ones((4, 3))
"""

GOOD = """
def use() -> Array:
    y: Array = square(jnp.ones(3))
    z = mv(x, y=jnp.ones(3)) + mm(x, jnp.ones((3, 2))).sum()  # parameter names are kept
    w = linear(x, jnp.ones((3, 2)), scale=2.0)
    scaled = batched(functools.partial(shifted, offset=1.0), "b n -> b n")
    direct = batched(staticmethod(shifted), "b n, -> b n")
    return y.sum() + z.sum() + w.sum() + scaled(x).sum() + direct(x, 1.0).sum() + Model().apply(x) + Model.build(x) + Model.plain(x)


# Options held in variables first (dict[str, int] is no dict[str, int | Budget]: the options are Mappings).
chunks = {"b": 2}
layouts = {"y": None}
shards = {"b": "data"}
chunked = batched(vv, "b", chunk=chunks, layouts=layouts)
sharded = batched(vv, "b", shard=shards)
budgeted = batched(vv, "b", chunk={"b": Budget(bytes=2**20)})
split_keys = {"key": SplitKey()}


def noisy(x: Float[Array, "n"], key: Key[Array, ""]) -> Float[Array, "n"]:
    return x


split = batched(noisy, "b", layouts={"key": SplitKey()})
split_from_variable = batched(noisy, "b", layouts=split_keys)
"""

BAD = """
square(jnp.ones(3), jnp.ones(3))  # error: Too many arguments for "square"
mv(x, z=x)  # error: Unexpected keyword argument "z"
linear(x, jnp.ones((3, 2)), scale="big")  # error: Argument "scale" to "linear" has incompatible type "str"; expected "float"
n: int = square(jnp.ones(3))  # error: Incompatible types in assignment (expression has type "Array", variable has type "int")
Model().apply()  # error: Missing positional argument "x" in call to "apply" of "Model"
batched(square, "b", chek=False)  # error: Unexpected keyword argument "chek"
"""


def _mypy_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    if PACKAGE.parent.name not in ("site-packages", "dist-packages"):
        # A source checkout (or an editable install, whose import hook mypy does not follow).
        env["MYPYPATH"] = str(PACKAGE.parent)
    return env


def test_mypy_sees_the_decorated_functions_signature(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(textwrap.dedent(PRELUDE + GOOD))
    (tmp_path / "bad.py").write_text(textwrap.dedent(PRELUDE + BAD))
    command = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11"]
    command += ["--follow-imports=silent", "--cache-dir", str(tmp_path / ".mypy_cache")]
    command += ["--no-color-output", "--no-error-summary", "--hide-error-context", "good.py", "bad.py"]
    done = subprocess.run(command, cwd=tmp_path, env=_mypy_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    errors = {}  # (file, line) -> messages
    for found in re.finditer(r"^(\w+\.py):(\d+): error: (.*)$", done.stdout, re.MULTILINE):
        errors.setdefault((found[1], int(found[2])), []).append(found[3])
    assert not [key for key in errors if key[0] == "good.py"], done.stdout
    bad_lines = textwrap.dedent(PRELUDE + BAD).splitlines()
    expected = {
        ("bad.py", number): line.split("# error: ", 1)[1]
        for number, line in enumerate(bad_lines, start=1)
        if "# error: " in line
    }
    assert set(errors) == set(expected), done.stdout
    for key, text in expected.items():
        assert any(text in message for message in errors[key]), (key, text, done.stdout)


def test_the_wheel_ships_py_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()
    pyproject = PACKAGE.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("shapedmap is installed, not a source checkout")
    package_data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["shapedmap"]


def test_pyright_verifytypes_finds_every_public_symbol_typed(tmp_path: Path) -> None:
    """``pyright --verifytypes shapedmap``: the type completeness of the public interface is 100 %."""
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent)) or shutil.which("pyright")
    if pyright is None:
        pytest.skip("pyright is not installed (pip install pyright)")
    # pyright reads packages from sys.path directories; an editable install's import hook is
    # invisible to it, so the package is put on PYTHONPATH through a link.
    (tmp_path / "shapedmap").symlink_to(PACKAGE, target_is_directory=True)
    # verifytypes reads packages with the `python` on PATH (not --pythonpath): put this one first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PATH": path}
    command = [
        pyright,
        "--pythonpath",
        sys.executable,
        "--verifytypes",
        "shapedmap",
        "--ignoreexternal",
        "--outputjson",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    completeness = report["typeCompleteness"]
    problems = [diagnostic["message"] for diagnostic in report.get("generalDiagnostics", ())]
    problems += [
        f"{symbol['name']}: {diagnostic['message']}"
        for symbol in completeness.get("symbols", ())
        for diagnostic in symbol.get("diagnostics", ())
        if diagnostic.get("severity") == "error"
    ]
    names = {symbol["name"] for symbol in completeness.get("symbols", ())}
    assert {"shapedmap.batched", "shapedmap.describe", "shapedmap.explain"} <= names
    assert completeness["completenessScore"] == 1.0, problems
