"""MkDocs hooks: the docs run their own code at build time, so nothing they show can go stale.

In any page:

* a fenced block whose info string is ``python exec`` runs (blocks of a page share one
  namespace, in order) and is shown as plain ``python``, followed by what it printed;
* ``python exec error`` must raise: the exception it raises is shown under it (a block that
  does not raise fails the build, so the error catalogue cannot drift from the library);
* ``python exec markdown`` runs hidden: what it prints is inserted as Markdown;
* ``<!-- shapedmap:examples -->`` becomes the shape reference of ``shapedmap.examples``.

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


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Run the page's ``python exec`` blocks and expand the shape reference."""
    namespace: dict[str, Any] = {"__name__": f"docs.{page.file.src_uri.removesuffix('.md').replace('/', '.')}"}

    def run(match: re.Match[str]) -> str:
        flags = set(match.group("flags").split())
        code = match.group("code")
        where = f"{page.file.src_uri}, the python exec block starting {code.strip().splitlines()[0][:60]!r}"
        return _run_block(code, flags, namespace, where)

    markdown = _BLOCK.sub(run, markdown)
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
