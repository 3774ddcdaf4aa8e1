"""The long fuzz campaigns, counting internal errors instead of stopping at the first.

    python -m tests.fuzz inputs --cases 10000     # corrupted arguments (tests/test_fuzz_inputs.py)
    python -m tests.fuzz specs --cases 2000       # random specs and annotations (tests/test_fuzz_specs.py)
    python -m tests.fuzz results --cases 2000     # wrong results from the per-example body (tests/test_fuzz_results.py)

Each prints how the cases ended (a loop-equal result, a named error, a SpecError, ...), one line per
distinct internal error (``-v``: every one as it happens), and last ``<cases> cases, <internal errors>
internal errors``; it exits with status 1 if there was any. Run from the repository root; ``--seed``
makes a campaign reproducible.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).parent))  # import the test modules as pytest does (tests/ on the path)

from hypothesis import HealthCheck, Phase, given, seed, settings

DEFAULT_CASES = {"inputs": 10_000, "specs": 2_000, "results": 2_000}


def campaign(kind: str, cases: int, random_seed: int | None, verbose: bool) -> tuple[int, list[str]]:
    """Run ``cases`` Hypothesis-drawn cases of one campaign; returns the count and the internal errors."""
    module = importlib.import_module(f"test_fuzz_{kind}")
    InternalError, strategy, run_case = module.InternalError, module.cases, module.run_case
    ran, errors, outcomes = 0, [], Counter()
    start = time.monotonic()

    @settings(
        max_examples=cases,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy())
    def one(case):
        nonlocal ran
        ran += 1
        try:
            outcomes[run_case(case)] += 1
        except InternalError as error:
            errors.append(str(error))
            if verbose:
                print(f"[{ran}] {error}", file=sys.stderr, flush=True)
        if ran % 500 == 0:
            print(f"... {ran} cases, {len(errors)} internal errors, {time.monotonic() - start:.0f}s",
                  file=sys.stderr, flush=True)  # fmt: skip

    if random_seed is not None:
        one = seed(random_seed)(one)
    one()
    print("outcomes: " + ", ".join(f"{count} {outcome}" for outcome, count in outcomes.most_common()))
    return ran, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("campaign", choices=list(DEFAULT_CASES))
    parser.add_argument("--cases", type=int, default=None, help="10000 for inputs, 2000 for specs and results")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every internal error as it happens")
    options = parser.parse_args(argv)
    count = options.cases or DEFAULT_CASES[options.campaign]
    ran, errors = campaign(options.campaign, count, options.seed, options.verbose)
    distinct = Counter(re.sub(r"0x[0-9a-f]+", "0x…", error)[:300] for error in errors)
    for message, times in distinct.most_common():
        print(f"{times}x {message}")
    print(f"{ran} cases, {len(errors)} internal errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
