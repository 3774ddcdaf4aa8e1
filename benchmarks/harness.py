"""Timing primitives: interleaved repeats, medians, spreads and paired ratios.

Every comparison measures its candidates *interleaved* (repeat 1 of each, then repeat 2 of
each, ...), so a burst of load from another process on this shared machine hits all of them
alike, and the ratio of two candidates is taken per repeat, then summarised by its median
and interquartile range.

Example:
    >>> samplers = {"a": steady(lambda: 1 + 1), "b": steady(lambda: sum(range(10)))}
    >>> result = compare(samplers, repeat=5, target=0.001)
    >>> result.ratio("b", "a").median > 0
    True
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

__all__ = ["Comparison", "Sampler", "Stats", "compare", "first_call", "steady", "summarise"]


@dataclass(frozen=True)
class Stats:
    """The summary of repeated samples (seconds per call, or a unitless ratio)."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    repeats: int

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median (0.05 = ±2.5 % around it)."""
        return (self.q3 - self.q1) / self.median if self.median else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        """JSON-able: median, quartiles, extremes, number of repeats."""
        return {
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "min": self.low,
            "max": self.high,
            "repeats": self.repeats,
        }


def summarise(samples: list[float]) -> Stats:
    """Median, quartiles and extremes of ``samples`` (at least one)."""
    ordered = sorted(samples)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return Stats(statistics.median(ordered), q1, q3, ordered[0], ordered[-1], len(ordered))


class Sampler:
    """Something that yields one timing sample (seconds per call) each time it is asked."""

    def prepare(self, target: float) -> float:
        """Warm up and calibrate; returns the seconds one sample will take (roughly)."""
        raise NotImplementedError

    def sample(self) -> float:
        """One sample: seconds per call."""
        raise NotImplementedError


class _Steady(Sampler):
    """A call that is already warm (compiled, cached): ``number`` calls per sample."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.number = 1

    def _run(self) -> None:
        jax.block_until_ready(self.call())

    def prepare(self, target: float) -> float:
        self._run()  # warm up: trace, compile, fill caches
        timer = timeit.Timer(self._run)
        number, seconds = 1, timer.timeit(1)
        while seconds < target and number < 1_000_000:
            number *= 10 if seconds < target / 20 else 2
            seconds = timer.timeit(number)
        self.number = number
        return seconds

    def sample(self) -> float:
        return timeit.Timer(self._run).timeit(self.number) / self.number


class _FirstCall(Sampler):
    """The first call of a freshly built function: ``build()`` (untimed), then one timed call."""

    def __init__(self, build: Callable[[], Callable[[], Any]]) -> None:
        self.build = build

    def prepare(self, target: float) -> float:
        return self.sample()  # the first sample also warms JAX itself (imports, backends)

    def sample(self) -> float:
        call = self.build()
        start = time.perf_counter()
        jax.block_until_ready(call())
        return time.perf_counter() - start


def steady(call: Callable[[], Any]) -> Sampler:
    """Samples the steady-state time of ``call()`` (warmed up first; results blocked on)."""
    return _Steady(call)


def first_call(build: Callable[[], Callable[[], Any]]) -> Sampler:
    """Samples a first call: ``build()`` makes a fresh zero-argument call each sample."""
    return _FirstCall(build)


@dataclass(frozen=True)
class Comparison:
    """Interleaved samples of several candidates."""

    samples: dict[str, list[float]]

    def stats(self, name: str) -> Stats:
        """Seconds per call of ``name``."""
        return summarise(self.samples[name])

    def ratio(self, name: str, baseline: str) -> Stats:
        """``name`` / ``baseline``, taken per repeat (paired), then summarised."""
        pairs = zip(self.samples[name], self.samples[baseline], strict=True)
        return summarise([a / b for a, b in pairs])


def compare(samplers: dict[str, Sampler], *, repeat: int, target: float, budget: float = 60.0) -> Comparison:
    """Samples every candidate ``repeat`` times, interleaved.

    Args:
        samplers: candidates by name.
        repeat: samples per candidate (fewer, but at least 3, if ``budget`` would be exceeded).
        target: seconds one steady sample should last (calls per sample are calibrated to it).
        budget: seconds the whole comparison may take, roughly.
    """
    one_round = sum(sampler.prepare(target) for sampler in samplers.values())
    repeat = max(3, min(repeat, int(budget / max(one_round, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(repeat):
        for name, sampler in samplers.items():
            samples[name].append(sampler.sample())
    return Comparison(samples)
