"""``python -m shapedmap verify PACKAGE...``: every batched function's contract proved, as a CI linter.

Each package (or module) is imported with its submodules; every function made by
``shapedmap.batched`` in it (found as ``python -m shapedmap docs`` finds them, methods of the
classes a module defines included) is verified with ``shapedmap.testing.verify``. One line per
function, ``file:line: module.name: outcome``, then the findings of one that does not hold,
indented. A module may give ``verify`` its options per function, or skip one, with a dict named
``__shapedmap_verify__``::

    __shapedmap_verify__ = {"conv": {"constraints": ("t >= k",)}, "apply": {"given": {"self": Model()}}, "sample": False}

Exit status: 0 when every contract holds (a function skipped for want of a value does not count,
except with ``--strict``), 1 when some do not (or cannot be verified: an error), 2 for a usage
error (a module that does not import, a malformed ``__shapedmap_verify__``).

``--json`` prints one JSON document instead: ``{"version": 1, "functions": [...], "counts": {...},
"exit_status": n}``; each function has ``module``, ``name``, ``file``, ``line``, ``outcome``
(``holds``, ``holds only if``, ``wrong``, ``undecided``, ``skipped`` or ``error``), ``message``,
and, where verified, ``findings`` (``outcome``, ``case``, ``message``, ``where``, ``needs``),
``traces`` and ``constraints``.

It imports ``shapedmap.testing`` when it runs (Hypothesis, the test extra, must be installed).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from ._docs_cli import batched_functions

__all__ = ["Result", "run", "verify_module"]

OPTIONS = "__shapedmap_verify__"
SKIPPED, ERROR = "skipped", "error"


@dataclass(frozen=True)
class Result:
    """What became of one batched function: its outcome, and the report when it was verified."""

    module: str
    name: str
    file: str | None
    line: int | None
    outcome: str
    message: str
    report: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON entry: the report's facts under the function's module and name."""
        entry = {"module": self.module, "name": self.name, "file": self.file, "line": self.line}
        entry.update(outcome=self.outcome, message=self.message)
        entry.update({key: value for key, value in self.report.items() if key in ("findings", "traces", "constraints")})
        return entry

    def text(self) -> str:
        """``file:line: module.name: outcome`` and, for one that does not hold, its findings indented."""
        where = f"{_relative(self.file)}:{self.line}" if self.file else f"{self.module}"
        first, *rest = self.message.splitlines() or [""]
        lines = [f"{where}: {self.module}.{self.name}: {first}"]
        lines += [f"  {line}" for line in rest]  # the findings, indented by the report already
        return "\n".join(lines)


def verify_module(module: types.ModuleType) -> list[Result]:
    """Verify every batched function of ``module`` and its submodules (``ValueError`` for bad options).

    Example:
        >>> import types
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def add(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n"]:
        ...     return x + y
        >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...     return jnp.sum(x)
        >>> module = types.ModuleType("layers")
        >>> module.totals, module.adds = batched(total, "b"), batched(add, "b")
        >>> [(result.name, result.outcome) for result in verify_module(module)]
        [('totals', 'holds'), ('adds', 'holds only if')]
    """
    from shapedmap.testing import VerifyError, verify
    from shapedmap.testing._verify import NeedsValue

    results = []
    for module_name, name, function in batched_functions(module):
        options = _options(sys.modules.get(module_name, module), name)
        file, line = _source(function)
        if options is False:
            results.append(Result(module_name, name, file, line, SKIPPED, f"skipped: {OPTIONS}[{name!r}] is False"))
            continue
        try:
            report = verify(function, **options)
        except VerifyError as error:
            report = error.report
        except NeedsValue as error:
            message = f"skipped: {error}" + (f" (in {OPTIONS}[{name!r}])" if "given=" in str(error) else "")
            results.append(Result(module_name, name, file, line, SKIPPED, message))
            continue
        except Exception as error:  # a spec that never resolves, or a body verify could not trace
            results.append(Result(module_name, name, file, line, ERROR, f"error: {type(error).__name__}: {error}"))
            continue
        results.append(Result(module_name, name, file, line, report.outcome, report.summary(), report.as_dict()))
    return results


def _options(module: types.ModuleType, name: str) -> Any:
    table = getattr(module, OPTIONS, {})
    if not isinstance(table, dict):
        raise ValueError(f"{module.__name__}.{OPTIONS} must be a dict from function name to verify options")
    options = table.get(name, {})
    if options is not False and not isinstance(options, dict):
        raise ValueError(f"{module.__name__}.{OPTIONS}[{name!r}] must be a dict of verify options or False")
    return options


def _source(function: Any) -> tuple[str | None, int | None]:
    target = inspect.unwrap(getattr(function.__shapedmap__, "fn", function))
    try:
        return inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return None, None


def _relative(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def run(packages: list[str], as_json: bool = False, strict: bool = False) -> int:
    """``python -m shapedmap verify``: verify the batched functions of each package; the exit status.

    Example:
        >>> run(["shapedmap.examples"])  # doctest: +ELLIPSIS
        shapedmap/examples.py:...: shapedmap.examples.square_each: holds for every size >= 1 (1 trace: ...)
        ...
        holds: 12
        0
        >>> run(["no_such_module_anywhere"])
        2
    """
    results: list[Result] = []
    for name in packages:
        try:
            module = importlib.import_module(name)
            results += verify_module(module)
        except (Exception, SystemExit) as error:  # the user's package: what it raises is theirs to see
            print(f"python -m shapedmap verify: {name}: {type(error).__name__}: {error}", file=sys.stderr)
            if isinstance(error, ModuleNotFoundError) and error.name == name.split(".")[0]:
                print(
                    f"  run it from the directory that contains {error.name}, or add it to PYTHONPATH", file=sys.stderr
                )
            return 2
    failed = [result for result in results if result.outcome not in ("holds", SKIPPED)]
    skipped = [result for result in results if result.outcome == SKIPPED]
    status = 1 if failed or (strict and skipped) else 0
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    if as_json:
        document = {
            "version": 1,
            "functions": [result.as_dict() for result in results],
            "counts": counts,
            "exit_status": status,
        }
        print(json.dumps(document, indent=2, default=str))
        return status
    for result in results:
        print(result.text())
    print(", ".join(f"{outcome}: {count}" for outcome, count in counts.items()) or "no batched functions found")
    return status
