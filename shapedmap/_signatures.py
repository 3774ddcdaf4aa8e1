"""The signatures a plan implies: batched (for ``help()`` and outer checkers) and per example.

A batched function shows the *batched* jaxtyping annotations, so ``inspect.signature``,
``help()``, an outer ``@jaxtyped`` and a second ``batched`` all see the truth. Inside the map,
the per-example parameters are checked by ``jaxtyped(typechecker=beartype)`` against the
per-example annotations as shapedmap resolved them.

Example:
    >>> from shapedmap._plan import plan_of
    >>> from shapedmap.examples import mm
    >>> annotations, signature = signature_of(plan_of(mm), batched=True)
    >>> str(signature)
    "(x: jaxtyping.Float[Array, 'b a'], y: jaxtyping.Float[Array, 'a c']) -> jaxtyping.Float[Array, 'b c']"
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable
from typing import Any

from beartype import beartype
from jaxtyping import PyTree, jaxtyped

from ._grammar import Layout
from ._plan import Plan
from ._value_types import ValueType
from ._wrappers import contract_function

__all__ = ["checked_per_example", "signature_of"]


def signature_of(plan: Plan, *, batched: bool) -> tuple[dict[str, Any], inspect.Signature]:
    """The batched (or the per-example) annotations and signature, readable jaxtyping annotations."""
    annotations: dict[str, Any] = {}
    parameters = []
    for argument, parameter in zip(plan.arguments, plan.types.signature.parameters.values(), strict=True):
        if argument.placement is not None:
            # A split key is passed as one key (``SplitKey``): its per-example annotation.
            split = argument.split
            layout = _batched_layouts(argument.placement) if batched and not split else argument.placement.per_example
            annotation = _annotation(argument.value, layout, each_entry=argument.variadic)
        elif argument.value.hint is not None:
            annotation = argument.value.hint
        else:
            annotation = inspect.Parameter.empty
        parameter = parameter.replace(annotation=annotation)
        if annotation is not inspect.Parameter.empty:
            annotations[argument.name] = annotation
        parameters.append(parameter)
    results = []
    for result in plan.results:
        layout = _batched_layouts(result.placement) if batched else result.placement.per_example
        results.append(_annotation(result.value, layout))
    returned = tuple[tuple(results)] if plan.returns_tuple else results[0]
    annotations["return"] = returned
    return annotations, plan.types.signature.replace(parameters=parameters, return_annotation=returned)


def checked_per_example(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    """``fn`` under ``jaxtyped(typechecker=beartype)``, its parameters checked per example.

    The check runs on a shim whose signature carries the per-example annotations as shapedmap
    resolved them (strings resolved, ``np.ndarray`` read as ``jax.Array``, since inside the map
    every array is a tracer), so partials, callable objects and NumPy-annotated functions are
    checked alike. The shim has no return annotation: shapedmap checks the results itself after
    mapping, with messages that name the dimension and hold under ``python -O``.
    """

    def per_example(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            # Raised by the body itself (say by a @jaxtyped helper it calls), not by this check.
            error._shapedmap_inside_body = True  # type: ignore[attr-defined]
            raise

    target = contract_function(fn)
    per_example.__module__ = getattr(target, "__module__", __name__)
    name = getattr(target, "__name__", "")
    # jaxtyping writes a def with this name: '<lambda>' is no identifier
    per_example.__name__ = name if name.isidentifier() else "per_example"
    per_example.__qualname__ = plan.function if name.isidentifier() else per_example.__name__
    annotations, signature = signature_of(plan, batched=False)
    del annotations["return"]
    per_example.__annotations__ = annotations
    per_example.__signature__ = signature.replace(return_annotation=inspect.Signature.empty)
    return jaxtyped(typechecker=beartype)(per_example)


def _batched_layouts(placement: Any) -> Layout | tuple[Layout, ...]:
    """The batched layout, or for a layout tree each distinct one of its leaves' (a leaf is one of them)."""
    if len(placement.leaves) == 1:
        return placement.leaves[0].batched
    return tuple(dict.fromkeys(leaf.batched for leaf in placement.leaves))


def _annotation(value: ValueType, layout: Layout | tuple[Layout, ...], *, each_entry: bool = False) -> Any:
    """The annotation of a value with ``layout``: ``*args`` annotations stand for each entry; a layout
    tree's leaves each have one of several layouts (``PyTree[Float[Array, 'b n'] | Float[Array, 'n']]``)."""
    if isinstance(layout, tuple):
        annotation = functools.reduce(operator.or_, (value.array.with_layout(one) for one in layout))
    else:
        annotation = value.array.with_layout(layout)
    if value.kind == "tree" and not each_entry:
        annotation = PyTree[annotation] if value.structure is None else PyTree[annotation, value.structure]
    if value.optional:
        annotation = annotation | None
    return annotation
