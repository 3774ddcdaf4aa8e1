"""A griffe extension, so that mkdocstrings documents batched functions as they are at run time.

mkdocstrings reads source code (griffe's static analysis) or unwraps live objects through
``__wrapped__`` (its dynamic analysis): either way it finds the per-example function, not
the batched one, so the batched signature and the generated "Shapes" section would be lost,
and ``pairwise = batched(concat, "i f, j f -> i j 2*f")`` would show as a plain attribute.
This extension imports each documented module and replaces every member made by
``shapedmap.batched`` with a function carrying the batched signature and ``__doc__``.

Example (``mkdocs.yml``)::

    plugins:
      - mkdocstrings:
          handlers:
            python:
              options:
                extensions:
                  - shapedmap.griffe_extension
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe

from ._value_types import hint_text

__all__ = ["BatchedFunctions"]

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


class BatchedFunctions(griffe.Extension):
    """Replace members made by ``shapedmap.batched`` with their batched signature and docstring.

    Example:
        >>> import sys, tempfile, textwrap
        >>> from pathlib import Path
        >>> import griffe
        >>> folder = tempfile.mkdtemp()
        >>> _ = Path(folder, "sums_module.py").write_text(textwrap.dedent('''
        ...     import jax.numpy as jnp
        ...     from jaxtyping import Array, Float
        ...     from shapedmap import batched
        ...
        ...     def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...         "The sum of one vector."
        ...         return jnp.sum(x)
        ...
        ...     totals = batched(total, "b")
        ... '''))
        >>> sys.path.insert(0, folder)  # the extension imports the module it documents
        >>> extensions = griffe.load_extensions(BatchedFunctions)
        >>> totals = griffe.load("sums_module", extensions=extensions, search_paths=[folder]).members["totals"]
        >>> totals.is_function, [(p.name, p.annotation) for p in totals.parameters], totals.returns
        (True, [('x', "Float[Array, 'b n']")], "Float[Array, 'b']")
        >>> print(totals.docstring.value.splitlines()[0])
        The sum of one vector.
        >>> sys.path.remove(folder)
    """

    def on_module(self, *, mod: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Swap the batched members of a module, once its object tree is complete."""
        try:
            runtime = importlib.import_module(mod.path)
        except Exception:  # a module that does not import is documented from source only
            return
        _replace_members(mod, runtime)

    def on_class(self, *, cls: griffe.Class, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Swap batched methods (``@batched`` on a method or a staticmethod)."""
        try:
            runtime = griffe.dynamic_import(cls.path)
        except Exception:
            return
        _replace_members(cls, runtime)


def _replace_members(parent: griffe.Module | griffe.Class, runtime: Any) -> None:
    for name, member in list(parent.members.items()):
        if member.is_alias:
            continue
        value = inspect.getattr_static(runtime, name, None)
        value = getattr(value, "__func__", value)  # staticmethod / classmethod
        if value is None or getattr(value, "__shapedmap__", None) is None:
            continue
        parent.set_member(name, batched_function(value, name, member))


def batched_function(fn: Any, name: str, member: griffe.Object) -> griffe.Function:
    """A griffe ``Function`` for the batched ``fn``, at the place of ``member`` in the source.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...     return jnp.sum(x)
        >>> member = griffe.Attribute("totals", lineno=3, endlineno=3)  # ``totals = batched(total, "b")``
        >>> function = batched_function(batched(total, "b"), "totals", member)
        >>> function.name, [(p.name, p.annotation) for p in function.parameters], function.returns
        ('totals', [('x', "Float[Array, 'b n']")], "Float[Array, 'b']")
        >>> print(function.docstring.value)
        Shapes
        ------
        - ``x``: ``b n`` (per example ``n``)
        - return: ``b`` (per example scalar)
        - vmap over ``b``: ``in_axes=0, out_axes=0``
    """
    signature = inspect.signature(fn)
    parameters = griffe.Parameters(
        *(
            griffe.Parameter(
                parameter.name,
                annotation=_annotation(parameter.annotation),
                kind=_KINDS[parameter.kind],
                default=None if parameter.default is inspect.Parameter.empty else repr(parameter.default),
            )
            for parameter in signature.parameters.values()
        )
    )
    function = griffe.Function(
        name,
        lineno=member.lineno,
        endlineno=member.endlineno,
        parameters=parameters,
        returns=_annotation(signature.return_annotation),
    )
    if fn.__doc__:
        function.docstring = griffe.Docstring(fn.__doc__, lineno=member.lineno, parent=function)
    return function


def _annotation(hint: Any) -> str | None:
    if hint is inspect.Parameter.empty:
        return None
    return hint_text(hint)
