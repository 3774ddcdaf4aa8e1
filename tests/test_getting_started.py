"""docs/getting-started.md: it shows every per-example function it batches, as shapedmap.examples
writes it, and what it says about a matrix the wrong way round holds (run through the docs hook)."""

import ast
import importlib.util
import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import jax.numpy as jnp
import pytest

import shapedmap.examples as examples
from shapedmap import ShapeError

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r"^```python exec[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _page_code() -> str:
    return "\n".join(BLOCK.findall(PAGE.read_text(encoding="utf-8")))


def _definitions(code: str) -> dict[str, str]:
    """Each top-level ``def`` of the code, with its decorators, as written."""
    lines = code.splitlines()
    found = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found[node.name] = "\n".join(lines[start - 1 : node.end_lineno])
    return found


def test_every_example_the_page_batches_is_shown_as_the_examples_module_writes_it():
    shown = _definitions(_page_code())
    batched_here = {
        "square",
        "sum_vector",
        "angle",
        "softmax",
        "message_passing",
        "cumulative_sum_of_products",
        "concat",
        "vv",
        "custom_dot",
    }
    assert batched_here <= set(shown)
    for name in batched_here:
        function = getattr(examples, name)
        source = inspect.getsource(getattr(function, "fn", function))  # a decorated def: with its decorator
        assert shown[name] == source.rstrip("\n"), name
    assert "from shapedmap.examples import" not in _page_code()  # nothing the reader cannot see


def test_a_transposed_matrix_is_a_wrong_answer_unless_something_pins_the_sizes():
    """What the page says, held: free sizes take m.T silently; a shared dim name refuses it."""
    m = jnp.arange(12.0).reshape(3, 4)
    assert jnp.array_equal(examples.column_sums(m.T), examples.row_sums(m))  # the row sums, no error
    page = {}
    exec(compile(_page_code().split("weighted_column_sums(m.T")[0], "<getting-started>", "exec"), page)
    weighted = page["weighted_column_sums"]
    assert jnp.allclose(weighted(m, page["weights"]), page["weights"] @ m)
    with pytest.raises(
        ShapeError, match=r"(?s)^weighted_sum: dimension 'n' has size 4 in argument 'x' .*\nbut size 3 in argument 'w'"
    ):
        weighted(m.T, page["weights"])


@pytest.fixture(scope="module")
def built() -> str:
    pytest.importorskip("mkdocs", reason="the docs hooks need the docs extra: pip install '.[docs]'")
    spec = importlib.util.spec_from_file_location("shapedmap_docs_hooks", ROOT / "docs" / "hooks" / "shapedmap_docs.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = SimpleNamespace(file=SimpleNamespace(src_uri="getting-started.md"))
    return hooks.on_page_markdown(PAGE.read_text(encoding="utf-8"), page, None, None)


def test_the_page_runs_and_shows_the_silent_transpose_the_error_and_the_same_program(built):
    assert "print(column_sums(m.T))  # m's row sums, not an error\n```\n\n```text\n[ 6. 22. 38.]\n```" in built
    assert "ShapeError: weighted_sum: dimension 'n' has size 4 in argument 'x' (axis 0 of f32[4,3])" in built
    assert "the same program as jax.jit(jax.vmap(custom_dot)): True" in built
    assert "```bash\npython -m shapedmap demo\n```" in built
