"""``python -m shapedmap demo`` shows every seed example, its axes, the loop check, timings and the bug."""

import io

from shapedmap._demo import main
from shapedmap.examples import EXAMPLES


def test_demo_shows_every_example_the_timings_and_the_shape_bug() -> None:
    out = io.StringIO()
    assert main(out) == 0
    text = out.getvalue()
    for name, example in EXAMPLES.items():
        assert f"* {name}: {example.title}" in text
        for axes in example.function.in_axes.values():
            assert f"in_axes={axes}" in text
    assert text.count("equals the naive loop: True") == len(EXAMPLES)
    assert "jit(batched)   naive loop   speedup" in text
    assert "ShapeError: message_passing: dimension 'graph' has size 5" in text
