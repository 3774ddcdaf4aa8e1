"""How the text ``explain`` writes names things: the per-example function, and fresh identifiers.

The per-example function is called by its own name (``concat``), a transform's by the transform and
the name (``grad_loss``). Decorated in place, ``@batched`` rebinds that name to the batched function:
the text then binds ``name.fn`` to ``name_per_example`` (``rebound_path``), so that pasted into the
function's module it maps the per-example function, not the batched one a second time.

Example:
    >>> from shapedmap.examples import concat, message_passing
    >>> callable_name(concat), rebound_path(concat)  # pairwise = batched(concat, ...): concat is itself
    ('concat', None)
    >>> rebound_path(message_passing.fn)  # @batched("graph") def message_passing
    'message_passing.fn'
"""

from __future__ import annotations

import functools
from typing import Any

from ._transforms import derivative_in
from ._wrappers import unwrap_partial

__all__ = ["Names", "callable_name", "rebound_path"]


def callable_name(fn: Any) -> str:
    """How the text refers to the per-example function: its name, one identifier to bind.

    Not a dotted path such as ``Model.apply``: decorated in place, that path is the batched method.
    """
    name = getattr(unwrap_partial(fn), "__name__", None)
    if not (isinstance(name, str) and name.isidentifier()):
        return "per_example"
    derivative = derivative_in(fn)
    if derivative is not None:  # jax.grad(loss) is named loss: call it grad_loss, not the loss
        return f"{derivative.transform.rsplit('.', 1)[-1]}_{name}"
    return name


def rebound_path(fn: Any) -> str | None:
    """``name.fn`` (``name.fn.fn``, ``name.fn.func``) when the module-level ``name`` of the per-example
    function ``fn`` is a batched function over it (the decorator form), else None."""
    inner = unwrap_partial(fn)
    name = getattr(inner, "__name__", None)
    try:
        current = inner.__globals__.get(name) if isinstance(name, str) and name.isidentifier() else None
    except AttributeError:
        return None
    if current is None or current is inner or not hasattr(current, "__shapedmap__"):
        return None
    path = name
    for _ in range(8):  # a batched function of a batched function...: follow .fn to fn
        if current is fn:
            return path
        if isinstance(current, functools.partial) and current.func is fn:
            return f"{path}.func"
        if not hasattr(current, "__shapedmap__"):
            return None
        current, path = current.fn, f"{path}.fn"
    return None


class Names:
    """Fresh identifiers that no parameter or the per-example function already uses."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)
        self.given: dict[str, str] = {}

    def fresh(self, name: str) -> str:
        candidate = name
        while candidate in self.taken:
            candidate += "_"
        self.taken.add(candidate)
        return candidate

    def once(self, name: str) -> str:
        """The same fresh identifier for ``name`` every time it is asked for."""
        if name not in self.given:
            self.given[name] = self.fresh(name)
        return self.given[name]
