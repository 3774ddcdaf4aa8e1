"""A griffe extension for these docs: read a Google-style ``Example:`` section as ``Examples:``.

shapedmap's docstrings say ``Example:`` (one example each); griffe parses only the plural as an
examples section (with ``>>>`` lines as code) and turns the singular into an admonition whose
``>>>`` lines Markdown reads as nested quotes.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` to ``Examples:`` in every docstring before it is parsed."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Runs once per object, after the tree is built and before mkdocstrings parses docstrings."""
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
