"""MkDocs hooks: the docs run their own code at build time, so nothing they show can go stale.

In any page:

* a fenced block whose info string is ``python exec`` runs (blocks of a page share one
  namespace, in order) and is shown as plain ``python``, followed by what it printed;
* ``python exec error`` must raise: the exception it raises is shown under it (a block that
  does not raise fails the build, so the error catalogue cannot drift from the library);
* ``python exec markdown`` runs hidden: what it prints is inserted as Markdown;
* ``<!-- shapedmap:examples -->`` becomes the shape reference of ``shapedmap.examples``;
* ``<!-- shapedmap:same -->`` before a Markdown table makes each of its rows a check: the last two
  cells of a row are each one inline code span, a Python expression, evaluated in the page's
  namespace (after the blocks above it ran); the second must give what the first gives (the same
  PyTree structure, and leaf by leaf the same shape, dtype and values), and a column is added that
  shows what both gave. A row that raises or differs fails the build (all such rows are listed).

Any other exception fails the build, naming the page and the block.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import textwrap
import traceback
from typing import Any

from mkdocs.exceptions import PluginError

os.environ.setdefault("JAX_PLATFORMS", "cpu")

_BLOCK = re.compile(r"^```python exec(?P<flags>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_EXAMPLES = "<!-- shapedmap:examples -->"
_SAME = "<!-- shapedmap:same -->"
_PAGE_PART = re.compile(
    rf"{_BLOCK.pattern}|^{re.escape(_SAME)}[ \t]*\n(?P<table>(?:\|[^\n]*\n?)+)", re.MULTILINE | re.DOTALL
)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Run the page's ``python exec`` blocks and expand the shape reference."""
    namespace: dict[str, Any] = {"__name__": f"docs.{page.file.src_uri.removesuffix('.md').replace('/', '.')}"}

    def run(match: re.Match[str]) -> str:
        if match.group("table") is not None:
            return _same_table(match.group("table"), namespace, f"{page.file.src_uri}, a shapedmap:same table")
        flags = set(match.group("flags").split())
        code = match.group("code")
        where = f"{page.file.src_uri}, the python exec block starting {code.strip().splitlines()[0][:60]!r}"
        return _run_block(code, flags, namespace, where)

    markdown = _PAGE_PART.sub(run, markdown)  # blocks and tables in page order: a table sees the blocks above
    if _EXAMPLES in markdown:
        markdown = markdown.replace(_EXAMPLES, _shape_reference())
    return markdown


def _run_block(code: str, flags: set[str], namespace: dict[str, Any], where: str) -> str:
    unknown = flags - {"error", "markdown"}
    if unknown:
        raise PluginError(f"{where}: unknown flag(s) {sorted(unknown)}; use 'error' or 'markdown'")
    output = io.StringIO()
    raised: BaseException | None = None
    try:
        with contextlib.redirect_stdout(output):
            # dont_inherit: the page's code runs without this module's `from __future__ import annotations`
            exec(compile(code, f"<{where}>", "exec", dont_inherit=True), namespace)
    except Exception as error:
        raised = error
    if "error" in flags:
        if raised is None:
            raise PluginError(f"{where}: this block must raise (it shows an error) but it ran without one")
        return _code(code) + "\n" + _error(raised)
    if raised is not None:
        details = "".join(traceback.format_exception(raised))
        raise PluginError(f"{where} raised:\n{details}")
    printed = output.getvalue()
    if "markdown" in flags:
        return printed
    shown = _code(code)
    if printed.strip():
        shown += "\n" + _fence("text", printed.rstrip("\n"))
    return shown


def _fence(language: str, text: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text}\n{fence}\n"


def _code(code: str) -> str:
    return _fence("python", code.rstrip("\n"))


def _error(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    for note in getattr(error, "__notes__", ()):
        text += f"\n{note}"
    return f'!!! failure "{type(error).__name__}"\n\n' + textwrap.indent(_fence("text", text), "    ")


# -- tables whose rows are checks ----------------------------------------------------------------

_CELL = re.compile(r"^`(?P<code>[^`]+)`$")


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row (a ``|`` inside an inline code span is not a border)."""
    cells, current, in_code = [], "", False
    for character in row.strip().strip("|"):
        if character == "`":
            in_code = not in_code
        if character == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += character
    return [*cells, current.strip()]


def _same_table(table: str, namespace: dict[str, Any], where: str) -> str:
    """Evaluate the last two cells of every body row, check they agree, add a column of what they gave."""
    lines = table.rstrip("\n").split("\n")
    if len(lines) < 3 or not set(lines[1].replace("|", "").strip()) <= set("-: "):
        raise PluginError(f"{where}: expected a Markdown table (a header, a --- row and rows) after {_SAME}")
    header, rule, rows = lines[0], lines[1], lines[2:]
    shown = [
        f"{header.rstrip().rstrip('|').rstrip()} | both give (run at build) |",
        f"{rule.rstrip().rstrip('|').rstrip()} | --- |",
    ]
    failures = []
    for number, row in enumerate(rows, start=1):
        cells = _cells(row)
        codes = [_CELL.match(cell) for cell in cells[-2:]]
        if len(cells) < 2 or not all(codes):
            failures.append(f"row {number} ({row.strip()}): its last two cells must each be one `code` span")
            continue
        reference, candidate = (match.group("code") for match in codes if match is not None)
        try:
            expected = eval(compile(reference, f"<{where}, row {number}>", "eval", dont_inherit=True), namespace)
            got = eval(compile(candidate, f"<{where}, row {number}>", "eval", dont_inherit=True), namespace)
        except Exception as error:
            failures.append(f"row {number} ({cells[0]}): {type(error).__name__}: {error}")
            continue
        difference = _difference(expected, got)
        if difference is not None:
            failures.append(f"row {number} ({cells[0]}): `{candidate}` is not `{reference}`: {difference}")
            continue
        shown.append(f"{row.rstrip().rstrip('|').rstrip()} | `{_describe_tree(got)}` |")
    if failures:
        raise PluginError(f"{where}: {len(failures)} of {len(rows)} rows fail:\n" + "\n".join(failures))
    return "\n".join(shown) + "\n"


def _describe_tree(value: Any) -> str:
    from shapedmap._messages import describe_tree

    return describe_tree(value).replace("|", "\\|")


def _difference(expected: Any, got: Any) -> str | None:
    """How ``got`` differs from ``expected`` (structure, then each leaf's shape, dtype, values), or None."""
    import jax
    import numpy as np

    expected_leaves, expected_structure = jax.tree.flatten(expected)
    got_leaves, got_structure = jax.tree.flatten(got)
    if expected_structure != got_structure:
        return f"the PyTree structure {got_structure} is not {expected_structure}"
    for path, (want, have) in zip(
        (jax.tree_util.keystr(path) or "the result" for path, _ in jax.tree_util.tree_flatten_with_path(expected)[0]),
        zip(expected_leaves, got_leaves, strict=True),
        strict=True,
    ):
        if not (hasattr(want, "shape") and hasattr(want, "dtype")):
            if not (hasattr(have, "shape") and hasattr(have, "dtype")) and want == have:
                continue
            return f"{path}: {have!r} is not {want!r}"
        if getattr(have, "shape", None) != want.shape or getattr(have, "dtype", None) != want.dtype:
            return f"{path}: {_describe_tree(have)} is not {_describe_tree(want)}"
        if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
            want, have = jax.random.key_data(want), jax.random.key_data(have)
        if not np.allclose(np.asarray(have), np.asarray(want), rtol=1e-5, atol=1e-6, equal_nan=True):
            largest = np.max(np.abs(np.asarray(have, dtype=float) - np.asarray(want, dtype=float)), initial=0.0)
            return f"{path}: the values differ (by up to {largest:.3g})"
    return None


# -- the shape reference -------------------------------------------------------------------------


def _shape_reference() -> str:
    import jax
    import jax.numpy as jnp

    import shapedmap.examples as examples
    from shapedmap import describe, explain

    source = inspect.getsource(examples)
    names = {id(value): name for name, value in vars(examples).items() if hasattr(value, "__shapedmap__")}
    parts = []
    for example in examples.EXAMPLES.values():
        function = example.function
        name = names[id(function)]
        contract = describe(function, name=name)
        args = example.make_inputs(jax.random.key(0))
        same = bool(jnp.allclose(function(*args), example.naive(*args), rtol=1e-5, atol=1e-5))
        shapes = ", ".join(f"`{tuple(arg.shape)}`" for arg in args)
        contract_text = contract.to_markdown(heading_level=2).split("\n", 2)[2]  # without its heading
        parts += [
            f"## `{name}`\n\n{example.title[0].upper()}{example.title[1:]}.\n",
            _fence("python", "\n\n".join(_definition(source, examples, name))),
            f'<figure class="shapedmap-diagram" markdown="0">\n{contract.to_svg().strip()}\n</figure>\n',
            contract_text,
            f"Called on arrays of shapes {shapes}, it runs this `jax.vmap` nest (from `shapedmap.explain`), "
            f"and equals the naive Python loop: **{same}**.\n",
            _fence("python", explain(function, *args).rstrip("\n")),
        ]
    return "\n".join(parts)


def _definition(source: str, module: Any, name: str) -> list[str]:
    """The source lines that define ``name`` in ``shapedmap/examples.py``, innermost first."""
    line = re.search(rf"^{name} = batched\((\w+),.*$", source, re.MULTILINE)
    if line is None:  # @batched(...) on a def
        return [inspect.getsource(getattr(module, name).fn).rstrip()]
    inner = getattr(module, line.group(1))
    if hasattr(inner, "__shapedmap__"):
        return [*_definition(source, module, line.group(1)), line.group(0)]
    return [inspect.getsource(inner).rstrip(), line.group(0)]
