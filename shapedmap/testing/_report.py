"""What ``verify`` reports: a ``Finding`` per trace that does not hold, the ``VerifyReport``, ``VerifyError``.

The wording lives here, from facts the traces gathered: the outcome, the trace (``case``), the
user's line (the last frame of the user's code in the traceback: not JAX, shapedmap or the other
libraries the body calls into) and the condition under which the contract holds.

Example:
    >>> finding = Finding("holds only if", "every dim its own size", "`x + y` at layers.py:3 needs n == m",
    ...                   "layers.py:3", "n == m")
    >>> report = VerifyReport("add", None, None, "holds only if", (finding,), ("every dim its own size",))
    >>> print(report)
    add (?): holds only if n == m
      [holds only if; trace: every dim its own size] `x + y` at layers.py:3 needs n == m
"""

from __future__ import annotations

import dataclasses
import inspect
import linecache
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import ShapeError, short_dtype

if TYPE_CHECKING:
    from .._plan import Plan

__all__ = [
    "HOLDS",
    "HOLDS_ONLY_IF",
    "NOT_COVERED",
    "UNDECIDED",
    "WRONG",
    "Finding",
    "VerifyError",
    "VerifyReport",
    "first_line",
    "returned_text",
    "source_of",
    "user_line",
]

HOLDS, HOLDS_ONLY_IF, WRONG, UNDECIDED = "holds", "holds only if", "wrong", "undecided"
SEVERITY = {HOLDS: 0, UNDECIDED: 1, HOLDS_ONLY_IF: 2, WRONG: 3}
# The libraries a body calls into: the user's line is the last frame of anything else.
_LIBRARIES = frozenset(
    "jax jaxlib jaxtyping beartype numpy shapedmap equinox flax optax typing functools contextlib ml_dtypes".split()  # noqa: SIM905
)
NOT_COVERED = (
    "size 0",
    "values (NaN, an index out of range, what the body computes)",
    "a plain dim at size 1 where the body treats 1 apart (jnp.squeeze without an axis)",
    "'*name' dims beyond the ranks traced",
)


@dataclass(frozen=True)
class Finding:
    """What one trace found, when it is not ``holds``."""

    outcome: str  # "holds only if", "wrong" or "undecided"
    case: str  # the trace: "every dim its own size", "'#n' of 'y' is 1", ...
    message: str
    where: str | None = None  # file:line of the user's code
    needs: str | None = None  # the equality or constraint under which it holds: "n == m", "n >= 3"

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found for one batched function; ``outcome`` is ``"holds"`` or the worst finding."""

    function: str
    file: str | None
    line: int | None
    outcome: str
    findings: tuple[Finding, ...]
    traces: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    not_covered: tuple[str, ...] = NOT_COVERED

    @property
    def location(self) -> str:
        """``file:line`` of the per-example function (``?`` where Python does not know it)."""
        return f"{_relative(self.file)}:{self.line}" if self.file else "?"

    def __str__(self) -> str:
        return f"{self.function} ({self.location}): {self.summary()}"

    def summary(self) -> str:
        """The outcome and, for a contract that does not hold, each finding on its own lines."""
        given = f" with constraints {', '.join(self.constraints)}" if self.constraints else ""
        if self.outcome == HOLDS:
            count = f"{len(self.traces)} trace{'s' * (len(self.traces) != 1)}"
            return f"holds for every size >= 1{given} ({count}: {'; '.join(self.traces)})"
        needs = sorted(
            {finding.needs for finding in self.findings if finding.outcome == self.outcome and finding.needs}
        )
        headline = self.outcome + (f" {' and '.join(needs)}" if self.outcome == HOLDS_ONLY_IF and needs else "")
        lines = [f"{headline}{given}"]
        for finding in self.findings:
            lines.append(f"  [{finding.outcome}; trace: {finding.case}] " + finding.message.replace("\n", "\n    "))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (the CLI's ``--json`` entries)."""
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "outcome": self.outcome,
            "findings": [finding.as_dict() for finding in self.findings],
            "traces": list(self.traces),
            "constraints": list(self.constraints),
        }


class VerifyError(ShapeError):
    """A contract that does not hold for every size (holds only if, wrong, undecided); ``report`` has the facts."""

    def __init__(self, report: VerifyReport) -> None:
        super().__init__(str(report))
        self.report = report


def returned_text(plan: Plan, output: Any) -> str:
    """``returns (m, n); annotated (n, m)`` per example, for results that are one array each."""
    if output is None:
        return ""
    outputs = output if plan.returns_tuple and isinstance(output, tuple) else (output,)
    parts = []
    for result, value in zip(plan.results, outputs, strict=False):
        shape = getattr(value, "shape", None)
        if result.value.kind != "array" or shape is None or not result.placement.batched.admits_rank(len(shape)):
            continue
        per_example = result.placement.per_example_shape(tuple(shape))
        dtype = short_dtype(value.dtype)
        got = f"{dtype}({', '.join(map(str, per_example))})"
        annotated = f"({', '.join(str(result.placement.per_example).split())})"
        array = result.value.array
        if array is not None and array.dtypes is not None and not array.admits_dtype(value.dtype):
            annotated = f"{array.dtype_description()}{annotated}"
        parts.append(f"returns {got} per example; annotated {annotated}")
    return "; ".join(parts)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def user_line(error: BaseException | None) -> tuple[str | None, str | None]:
    """``file:line`` and the source text of the last frame of the user's code in the traceback."""
    found = None
    for frame, line in traceback.walk_tb(error.__traceback__ if error is not None else None):
        module = str(frame.f_globals.get("__name__", ""))
        root = module.split(".")[0]
        if module == "shapedmap.examples" or root not in _LIBRARIES or frame.f_code.co_filename.startswith("<doctest"):
            found = (frame.f_code.co_filename, line)
    if found is None:
        return None, None
    filename, line = found
    return f"{_relative(filename)}:{line}", linecache.getline(filename, line).strip() or None


def source_of(fn: Callable[..., Any]) -> tuple[str | None, int | None]:
    target = inspect.unwrap(fn)
    try:
        return inspect.getsourcefile(target), inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return None, None


def _relative(path: str | None) -> str:
    if not path:
        return "?"
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
