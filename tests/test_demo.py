"""``python -m shapedmap demo`` shows every seed example, its axes (a batched function's inner vmap
included), jit(batched) against jit of the hand-written jax.vmap and the loop, timings and the bug."""

import dataclasses
import io
import re
import subprocess
import sys

import jax
import pytest

import shapedmap._demo as demo
from shapedmap.examples import EXAMPLES, square


def test_python_m_shapedmap_demo_shows_every_example_the_timings_and_the_shape_bug() -> None:
    """The command as getting-started and the README show it, in its own process."""
    run = subprocess.run(
        [sys.executable, "-m", "shapedmap", "demo"], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert text.startswith("shapedmap demo on ")
    for name, example in EXAMPLES.items():
        assert f"* {name}: {example.title}" in text
        for axes in example.function.in_axes.values():
            assert f"in_axes={axes}" in text
    assert "inside it, mv = batched(..., 'b a, a -> b'), with its own vmap:" in text
    verdict = "equals the hand-written jax.vmap: True   the same program: True   equals the naive loop: True"
    assert text.count(verdict) == len(EXAMPLES)
    assert "jit(batched)    jit(vmap)  batched/vmap   naive loop   loop/jit" in text
    rows = re.findall(r"^    (\w+) .*  (\d+\.\d\d)x .*  ([\d,]+)x$", text, re.MULTILINE)
    assert [name for name, _, _ in rows] == list(EXAMPLES)  # one timing row per example, both ratios
    assert "ShapeError: message_passing: dimension 'graph' has size 5" in text


def test_demo_shows_mm_and_the_inner_vmap_of_mv() -> None:
    out = io.StringIO()
    names = {id(example.function): example.name for example in EXAMPLES.values()}
    demo._vmaps(EXAMPLES["mm"].function, names, out)
    assert out.getvalue().splitlines() == [
        "    vmap over 'c': in_axes=(None, 1), out_axes=1",
        "      inside it, mv = batched(..., 'b a, a -> b'), with its own vmap:",
        "      vmap over 'b': in_axes=(0, None), out_axes=0",
    ]


@pytest.mark.parametrize(
    ("hand_written", "verdict"),
    [
        (jax.vmap(lambda x: square(x) + 1.0), "equals the hand-written jax.vmap: False   the same program: False"),
        (jax.vmap(lambda x: square(x) * 1.0), "equals the hand-written jax.vmap: True   the same program: False"),
    ],
    ids=["other-values", "same-values-other-program"],
)
def test_demo_fails_when_batched_is_not_the_hand_written_vmap(monkeypatch, hand_written, verdict) -> None:
    """The comparison with jax.vmap is real: other values, or the same values by another program, fail."""
    example = dataclasses.replace(EXAMPLES["square"], hand_written=hand_written)
    monkeypatch.setattr(demo, "EXAMPLES", {"square": example})
    out = io.StringIO()
    assert demo.main(out) == 1
    assert verdict in out.getvalue()
