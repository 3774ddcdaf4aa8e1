"""``python -m benchmarks.verify_mutants``: which detector catches the shape mutants of ``benchmarks.mutants``.

Each mutant is classified by the oracle (``jax.vmap`` at two assignments of distinct sizes:
shape-visible, value-only, equivalent); then each detector is run on every shape-visible mutant
and on every original (where any alarm is a false one):

* ``jax.vmap`` + a unit test at equal sizes: every dim 4, the result's shape asserted;
* ``jaxtyped``: the same test with the body under ``jaxtyped(typechecker=beartype)``;
* shapedmap at equal sizes: one call of ``batched(fn, "b")`` at every dim 4 (its checks on);
* shapedmap at distinct sizes: one call at the first distinct assignment of the oracle;
* ``check_batched``: ``max_examples`` Hypothesis examples (on every ``--sample``-th mutant: it
  takes seconds a function);
* ``verify``: ``shapedmap.testing.verify`` (any ``VerifyError`` is an alarm).

Each detector is timed on the originals (a unit test and one call include their eager dispatch;
``check_batched`` compiles). Also timed: ``verify`` per function (median, with and without ``*batch``/``#`` dims: the originals
batched over ``"b"`` and over ``"*b"``), and 50 batched functions verified one after the other.

Writes ``benchmarks/results/verify_mutants.json``; ``--docs`` rewrites the generated block of the
"Verified for every size" section of ``docs/testing.md``.

Example:
    $ nice .venv/bin/python -m benchmarks.verify_mutants --docs    # a few minutes on 2 shared cores
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
from beartype import beartype
from jaxtyping import jaxtyped

from shapedmap import batched
from shapedmap.testing import VerifyError, check_batched, verify

from .__main__ import _commit
from .mutants import DISTINCT, EQUAL, Function, classify, expected_shape, functions, inputs, median, mutants, share
from .report import ROOT, replace_block

RESULTS = ROOT / "benchmarks" / "results" / "verify_mutants.json"
DOCS = ROOT / "docs" / "testing.md"
START, END = "<!-- verify-mutants:start -->", "<!-- verify-mutants:end -->"
DETECTORS = (
    "jax.vmap + unit test (all sizes 4)",
    "jaxtyped (all sizes 4)",
    "shapedmap (all sizes 4)",
    "shapedmap (distinct sizes)",
    "check_batched",
    "verify",
)


def _unit_test(fn: Callable[..., Any], original: Function) -> bool:
    """The alarm of a unit test at equal sizes: it raises, or the result has another shape."""
    try:
        out = jax.vmap(fn)(*inputs(original, EQUAL))
    except Exception:
        return True
    return out.shape != expected_shape(original, EQUAL)


def _call(fn: Callable[..., Any], original: Function, sizes: dict[str, int]) -> bool:
    try:
        batched(fn, "b")(*inputs(original, sizes))
    except Exception:
        return True
    return False


def _check_batched(fn: Callable[..., Any], examples: int) -> bool:
    try:
        check_batched(batched(fn, "b"), max_examples=examples, jit=False)
    except Exception:  # BatchedCheckError, or the call's own ShapeError
        return True
    return False


def _verify(fn: Callable[..., Any], spec: str = "b") -> tuple[bool, float]:
    decorated = batched(fn, spec)
    # Timed as timeit times: the garbage collector off, so that a collection of the whole process's
    # garbage (JAX's traces of every earlier function) is not charged to whichever function it hits.
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    try:
        verify(decorated)
        alarm = False
    except VerifyError:
        alarm = True
    finally:
        gc.enable()
    return alarm, time.perf_counter() - start


def detect(fn: Callable[..., Any], original: Function, check: bool, examples: int) -> dict[str, Any]:
    """Each detector's alarm on ``fn`` (None where it was not run) and its seconds (``seconds``)."""
    runs = {
        DETECTORS[0]: lambda: _unit_test(fn, original),
        DETECTORS[1]: lambda: _unit_test(jaxtyped(fn, typechecker=beartype), original),
        DETECTORS[2]: lambda: _call(fn, original, EQUAL),
        DETECTORS[3]: lambda: _call(fn, original, DISTINCT[0]),
        DETECTORS[4]: (lambda: _check_batched(fn, examples)) if check else None,
        DETECTORS[5]: lambda: _verify(fn),  # timed by itself, the garbage collector off
    }
    row: dict[str, Any] = {"seconds": {}}
    for detector, run in runs.items():
        if run is None:
            row[detector] = None
            continue
        start = time.perf_counter()
        outcome = run()
        seconds = time.perf_counter() - start
        if isinstance(outcome, tuple):
            outcome, seconds = outcome
        row[detector] = outcome
        row["seconds"][detector] = seconds
    return row


def measure(sample: int, examples: int) -> dict[str, Any]:
    originals = functions()
    _verify(originals[0].fn)  # JAX's first trace of a process is not the function's cost
    rows: list[dict[str, Any]] = []
    classes: dict[str, int] = {}
    for original in originals:
        rows.append({"function": original.name, "operator": None, "class": "original",
                     **detect(original.fn, original, True, examples)})  # fmt: skip
        for mutant in mutants(original):
            kind = classify(mutant)
            classes[kind] = classes.get(kind, 0) + 1
            if kind != "shape-visible":
                continue
            check = classes[kind] % sample == 0
            rows.append({"function": original.name, "operator": mutant.operator, "class": kind,
                         "source": mutant.source, **detect(mutant.function(), original, check, examples)})  # fmt: skip
    # Timing: verify per function with and without '*batch' dims, and 50 functions in a row.
    plain = [_verify(original.fn)[1] for original in originals for _ in range(3)]
    star = [_verify(original.fn, "*b")[1] for original in originals for _ in range(3)]
    fifty = [batched(originals[i % len(originals)].fn, "b") for i in range(50)]  # each decorated afresh
    start = time.perf_counter()  # as a module verifies: the garbage collector on
    for decorated in fifty:
        with contextlib.suppress(VerifyError):
            verify(decorated)
    module_seconds = time.perf_counter() - start
    return {
        "rows": rows,
        "classes": classes,
        "verify_median_seconds": median(plain),
        "verify_max_seconds": max(plain),
        "verify_star_median_seconds": median(star),
        "verify_star_max_seconds": max(star),
        "fifty_functions_seconds": module_seconds,
    }


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = result["rows"]
    visible = [row for row in rows if row["class"] == "shape-visible"]
    originals = [row for row in rows if row["class"] == "original"]
    table = []
    for detector in DETECTORS:
        ran = [row for row in visible if row[detector] is not None]
        table.append(
            {
                "detector": detector,
                "caught": sum(bool(row[detector]) for row in ran),
                "of": len(ran),
                "false alarms": sum(bool(row[detector]) for row in originals),
                "originals": len(originals),
                "median seconds": median([row["seconds"][detector] for row in originals]),
            }
        )
    return table


def markdown(result: dict[str, Any]) -> str:
    classes = result["classes"]
    lines = [
        f"Measured at {result['commit']} on {result['date']} (CPU, `python -m benchmarks.verify_mutants`): "
        f"{len([r for r in result['rows'] if r['class'] == 'original'])} per-example functions, "
        f"{sum(classes.values())} mutants: {classes.get('shape-visible', 0)} shape-visible, "
        f"{classes.get('value-only', 0)} value-only, {classes.get('equivalent', 0)} equivalent.",
        "",
        "| detector | shape-visible mutants caught | false alarms on the originals | time a function (median) |",
        "| --- | --- | --- | --- |",
    ]
    for row in summary(result):
        caught = f"{row['caught']} of {row['of']} ({share(row['caught'], row['of'])})"
        seconds = row["median seconds"]
        took = f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms"
        lines.append(f"| {row['detector']} | {caught} | {row['false alarms']} of {row['originals']} | {took} |")
    lines += [
        "",
        f"After a first trace (JAX's start-up, once a process), and timed as `timeit` times (the garbage "
        f"collector off), `verify` takes "
        f"{result['verify_median_seconds'] * 1e3:.0f} ms a function (median; at most "
        f"{result['verify_max_seconds'] * 1e3:.0f} ms), {result['verify_star_median_seconds'] * 1e3:.0f} ms with "
        f"`*batch` dims (at most {result['verify_star_max_seconds'] * 1e3:.0f} ms); 50 batched functions in "
        f"{result['fifty_functions_seconds']:.2f} s. Nothing is compiled.",
        "",
        "The other times are eager calls of the function, on its first run, so they include XLA compiling "
        f"what they run (check_batched runs {result.get('examples', 10)} examples, eagerly): what one test "
        "costs, not a measure of any library's overhead.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=4, help="check_batched on every n-th shape-visible mutant")
    parser.add_argument("--examples", type=int, default=10, help="check_batched's max_examples")
    parser.add_argument("--docs", action="store_true", help="rewrite the generated block of docs/testing.md")
    parser.add_argument("--from-results", action="store_true", help="only redraw the block from the results file")
    arguments = parser.parse_args()
    if arguments.from_results:
        replace_block(DOCS, START, END, markdown(json.loads(RESULTS.read_text())))
        return
    result = measure(arguments.sample, arguments.examples)
    result.update(commit=_commit(), date=datetime.date.today().isoformat(), jax=jax.__version__)
    result["examples"] = arguments.examples
    result["summary"] = summary(result)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result)
    print(text)
    missed = [row for row in result["rows"] if row["class"] == "shape-visible" and not row[DETECTORS[5]]]
    for row in missed:
        print(f"verify missed: {row['function']}: {row['operator']}\n{row['source']}")
    if arguments.docs:
        replace_block(DOCS, START, END, text)


if __name__ == "__main__":
    main()
