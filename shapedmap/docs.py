"""Shape documentation generated from a batched function's plan.

``shapes_section(plan)`` is the NumPy-docstring "Shapes" section appended to a batched
function's ``__doc__``; ``help()``, Sphinx (napoleon) and mkdocstrings render it as-is.

Example:
    >>> print(shapes_section(plan_of(message_passing)))  # doctest: +SKIP
    Shapes
    ------
    a : graph node node
        per example: node node
    ...
"""

from __future__ import annotations

import inspect

from .plan import Plan

__all__ = ["shapes_section", "with_shapes_section"]


def shapes_section(plan: Plan) -> str:
    """The "Shapes" section for ``plan``: each array parameter's and result's layouts, and the axes."""
    lines = ["Shapes", "------"]
    for index in plan.array_arguments:
        argument = plan.arguments[index]
        placement = argument.placement
        lines.append(f"{argument.name} : {placement.batched}")
        lines.append(f"    per example: {placement.per_example or '(scalar)'}")
    for index, result in enumerate(plan.results):
        name = f"return[{index}]" if plan.returns_tuple else "return"
        lines.append(f"{name} : {result.placement.batched}")
        lines.append(f"    per example: {result.placement.per_example or '(scalar)'}")
    if plan.levels is not None:
        for level in plan.levels:
            lines.append(
                f"vmap over {level.key!r} : in_axes={level.in_axes}, "
                f"out_axes={level.out_axes if plan.returns_tuple else level.out_axes[0]}"
            )
    return "\n".join(lines)


def with_shapes_section(doc: str | None, plan: Plan) -> str:
    """The user's docstring (kept as written) followed by the "Shapes" section."""
    section = shapes_section(plan)
    if not doc:
        return section
    return f"{inspect.cleandoc(doc)}\n\n{section}"
