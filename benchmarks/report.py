"""Results -> markdown tables, seed 001's chart (PNG), and the generated part of docs/performance.md.

``python -m benchmarks.report RESULTS.json [--docs]`` re-renders from a saved run without
measuring again.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["GOALS", "chart", "render", "update_docs"]

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "images" / "seed001.png"
START, END = "<!-- benchmark-results:start -->", "<!-- benchmark-results:end -->"

# mode -> (ratio shown, the highest median that meets the goal, goal text); for jit an
# interquartile range that reaches 1.00 also meets it ("1.00 within noise")
GOALS = {
    "jit": ("batched", 1.05, "1.00 within noise"),
    "eager": ("batched", 1.05, "≤ 1.05"),
    "first_call": ("batched", 1.20, "≤ 1.2"),
}
_METHODS = ("vmap", "batched", "vectorize", "einx")


def _time(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "–"
    seconds = stats["median"]
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _ratio(stats: dict[str, Any], limit: float | None = None, *, noise: bool = False) -> str:
    """``median (q1–q3)``, with ✓/✗ against ``limit``; ``noise``: an IQR that reaches 1.00 also meets it."""
    text = f"{stats['median']:.2f} ({stats['q1']:.2f}–{stats['q3']:.2f})"
    if limit is None:
        return text
    met = stats["median"] <= limit or (noise and stats["q1"] <= 1.0)
    return f"{text} {'✓' if met else '✗'}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _named_ratio(entry: dict[str, Any], limit: float | None = None) -> str:
    """batched / (the same vmap nest with ``axis_name=`` per batch name): the same program.

    Every level of an eager ``batched`` call binds its batch name (so collectives work in any
    call); this ratio is shapedmap's own cost.
    """
    named = entry["eager"].get("ratios_to_named")
    return _ratio(named["batched"], limit) if named else "–"


def ratio_table(results: dict[str, Any]) -> str:
    """The goals: batched vs vmap, per workload and mode, with the absolute times beside them."""
    header = [
        "workload",
        "jit: batched / vmap",
        "eager: batched / vmap with axis names",
        "first call: batched / vmap(jaxtyped(f))",
        "eager: batched / vmap without axis names",
        "jit vmap",
        "eager vmap",
        "eager batched",
        "first call batched",
    ]
    rows = []
    for name, entry in results["workloads"].items():
        rows.append(
            [
                name,
                _ratio(entry["jit"]["ratios"]["batched"], GOALS["jit"][1], noise=True),
                _named_ratio(entry, GOALS["eager"][1]),
                _ratio(entry["first_call"]["ratios"]["batched"], GOALS["first_call"][1]),
                _ratio(entry["eager"]["ratios"]["batched"]),
                _time(entry["jit"]["times"]["vmap"]),
                _time(entry["eager"]["times"]["vmap"]),
                _time(entry["eager"]["times"]["batched"]),
                _time(entry["first_call"]["times"]["batched"]),
            ]
        )
    return _table(header, rows)


def alternatives_table(results: dict[str, Any]) -> str:
    """Median seconds per call of every way to write each workload."""
    header = ["workload", *(f"eager {m}" for m in _METHODS), *(f"jit {m}" for m in _METHODS), "naive loop"]
    rows = []
    for name, entry in results["workloads"].items():
        row = [name]
        for mode in ("eager", "jit"):
            row += [_time(entry[mode]["times"].get(method)) for method in _METHODS]
        row.append(_time(entry["loop"]))
        rows.append(row)
    return _table(header, rows)


def scaling_table(rows: list[dict[str, Any]], axis: str) -> str:
    """Overhead of ``batched`` over ``vmap`` as ``axis`` grows."""
    header = [
        axis,
        "eager vmap",
        "eager batched",
        "eager overhead (paired, vs named)",
        "eager / vmap with axis names",
        "eager / vmap without",
        "jit ratio",
        "first call ratio",
        "first call batched",
    ]
    body = []
    for row in rows:
        eager = row["eager"]["times"]
        # from the paired ratio, which load bursts disturb far less than two separate medians
        named = row["eager"].get("ratios_to_named") or row["eager"]["ratios"]
        overhead = (named["batched"]["median"] - 1) * eager["vmap"]["median"]
        body.append(
            [
                str(row["count"]),
                _time(eager["vmap"]),
                _time(eager["batched"]),
                f"{overhead * 1e6:+.0f} µs",
                _named_ratio(row, GOALS["eager"][1]),
                _ratio(row["eager"]["ratios"]["batched"]),
                _ratio(row["jit"]["ratios"]["batched"]),
                _ratio(row["first_call"]["ratios"]["batched"]),
                _time(row["first_call"]["times"]["batched"]),
            ]
        )
    return _table(header, body)


def machine_text(machine: dict[str, Any]) -> str:
    """One paragraph: where and when the numbers were taken."""
    return (
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, {machine['memory_gib']:.0f} GiB), "
        f"JAX device `{machine['device']}`, Python {machine['python']}, jax {machine['jax']}, jaxlib {machine['jaxlib']}, "
        f"einx {machine['einx']}, shapedmap at `{machine['commit']}`. Load average {machine['load_before']:.2f} before "
        f"and {machine['load_after']:.2f} after the run (other work shares these cores). "
        f"Settings: {machine['settings']}."
        + (f" Sections measured: {machine['sections']}." if "sections" in machine else "")
    )


def render(results: dict[str, Any]) -> str:
    """Every table, in markdown."""
    parts = [machine_text(results["machine"])]
    for earlier in results.get("earlier_machines", []):
        parts.append(f"The other tables come from an earlier run (merged with `--merge`): {machine_text(earlier)}")
    if results.get("workloads"):
        parts += [
            "#### Goals: `batched` vs hand-written `jax.vmap` (ratio median, interquartile range in brackets)",
            ratio_table(results),
            "#### Every way to write it (median per call)",
            alternatives_table(results),
        ]
    for axis, rows in results.get("scaling", {}).items():
        parts += [f"#### Overhead vs the number of {axis}", scaling_table(rows, axis)]
    return "\n\n".join(parts) + "\n"


def chart(results: dict[str, Any], path: Path = CHART) -> Path | None:
    """The chart: time per call vs n for custom_dot, log-log; ``None`` without data."""
    entries = sorted(
        (int(name.rsplit("_", 1)[1]), entry)
        for name, entry in results.get("workloads", {}).items()
        if re.fullmatch(r"custom_dot_\d+", name)
    )
    if not entries:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        "naive Python loop": lambda e: e["loop"],
        "jax.vmap, eager": lambda e: e["eager"]["times"]["vmap"],
        "batched, eager": lambda e: e["eager"]["times"]["batched"],
        "jit(jax.vmap)": lambda e: e["jit"]["times"]["vmap"],
        "jit(batched)": lambda e: e["jit"]["times"]["batched"],
        "jit(jnp.vectorize)": lambda e: e["jit"]["times"].get("vectorize"),
    }
    styles = {
        "naive Python loop": dict(color="tab:red", marker="s"),
        "jax.vmap, eager": dict(color="tab:blue", marker="o", linestyle="--"),
        "batched, eager": dict(color="tab:orange", marker="x", linestyle="--", markersize=9),
        "jit(jax.vmap)": dict(color="tab:blue", marker="o"),
        "jit(batched)": dict(color="tab:orange", marker="x", markersize=9),
        "jit(jnp.vectorize)": dict(color="tab:green", marker="^", linestyle=":"),
    }
    # one above the other, at about the width the docs show it: text stays at its own size on the page
    figure, (axes, ratios) = plt.subplots(2, 1, figsize=(8, 10), dpi=110, gridspec_kw={"height_ratios": [3, 2]})
    for label, get in series.items():
        points = [(n, get(entry)) for n, entry in entries if get(entry) is not None]
        if not points:
            continue
        sizes = [n for n, _ in points]
        medians = [s["median"] for _, s in points]
        spread = [[s["median"] - s["q1"] for _, s in points], [s["q3"] - s["median"] for _, s in points]]
        axes.errorbar(sizes, medians, yerr=spread, label=label, capsize=3, **styles[label])
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("n (two (n, n) float32 matrices; custom_dot over n rows)")
    axes.set_ylabel("seconds per call (median, IQR bars)")
    axes.set_title("time per call")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=10)

    for get, label, style in (
        (
            lambda e: e["jit"]["ratios"]["batched"],
            "jit: batched / vmap",
            dict(color="tab:orange", marker="x", markersize=9),
        ),
        (
            lambda e: e["eager"]["ratios"]["batched"],
            "eager: batched / vmap without axis names",
            dict(color="tab:grey", marker=".", linestyle=":"),
        ),
        (
            lambda e: e["eager"]["ratios_to_named"]["batched"],
            "eager: batched / vmap with axis names",
            dict(color="tab:purple", marker="x", linestyle="--", markersize=9),
        ),
    ):
        points = [(n, get(entry)) for n, entry in entries]
        spread = [[s["median"] - s["q1"] for _, s in points], [s["q3"] - s["median"] for _, s in points]]
        ratios.errorbar(
            [n for n, _ in points], [s["median"] for _, s in points], yerr=spread, label=label, capsize=3, **style
        )
    ratios.axhline(1.0, color="black", linewidth=0.8)
    ratios.axhline(
        GOALS["eager"][1], color="grey", linestyle=":", linewidth=0.8, label=f"eager goal ({GOALS['eager'][1]:.2f})"
    )
    ratios.set_xscale("log")
    ratios.set_xlabel("n")
    ratios.set_ylabel("ratio (median of paired repeats, IQR bars)")
    ratios.set_title("batched / hand-written jax.vmap")
    ratios.grid(True, which="both", alpha=0.3)
    ratios.legend(fontsize=10)
    machine = results["machine"]
    figure.suptitle(
        f"custom_dot, loop vs vmap vs batched\n{machine['cpu']}, {machine['cores']} cores, "
        f"CPU, jax {machine['jax']}, {results.get('workloads_measured', machine['date'])}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def replace_block(path: Path, start: str, end: str, block: str) -> None:
    """Replace the text between the markers ``start`` and ``end`` of ``path`` with ``block``."""
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path} lacks the markers {start} / {end}")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n\n{block}\n{end}{after}")


def update_docs(results: dict[str, Any], path: Path = DOCS) -> None:
    """Replace the generated block of ``docs/performance.md`` (between the markers) with fresh tables."""
    replace_block(path, START, END, render(results))


def main(argv: list[str] | None = None) -> int:
    """Re-render tables (and with ``--docs`` the chart and docs page) from a results file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--docs", action="store_true", help="also write the chart and docs/performance.md")
    options = parser.parse_args(argv)
    results = json.loads(options.results.read_text())
    print(render(results))
    if options.docs:
        chart(results)
        update_docs(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
