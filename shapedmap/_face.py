"""What a batched function shows: its batched signature, annotations, axes and "Shapes" section.

``describe_wrapper`` gives the function users hold the truth, so ``help()``,
``inspect.signature``, an outer ``@jaxtyped`` and a second ``batched`` all see the batched
layouts. The "Shapes" section is a NumPy-docstring section appended to the user's
docstring; Sphinx (napoleon), mkdocstrings and ``help()`` render it as-is. It is written from
the plan alone (``describe()`` renders the same facts in other forms).

Example:
    >>> from shapedmap._annotations import read_function
    >>> from shapedmap._planner import make_plan
    >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    ...     return x @ y
    >>> print(shapes_section(make_plan(read_function(vv), "b a, a -> b")))
    Shapes
    ------
    - ``x``: ``b a`` (per example ``a``)
    - ``y``: ``a``, shared (not mapped)
    - return: ``b`` (per example scalar)
    - vmap over ``b``: ``in_axes=(0, None), out_axes=0``
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any

from ._levels import Budget, Level, Placement, vmap_axes
from ._nest import nominal_levels
from ._plan import Plan
from ._signatures import signature_of
from ._wrappers import contract_function

if TYPE_CHECKING:
    from ._sharding import Sharding

__all__ = [
    "FACE",
    "axes_text",
    "bound_text",
    "chunk_text",
    "describe_wrapper",
    "kind_note",
    "shapes_section",
    "split_key_text",
    "strip_shapes_section",
    "vmap_arguments",
]

_GENERATED_SECTION = re.compile(r"(?:\A|\n\n)Shapes\n------\n(?:- [^\n]*(?:\n|\Z))+\Z")


# What describe_wrapper sets: a wrapper built again for the same function and options gets them as they were.
FACE = ("__annotations__", "__signature__", "__doc__", "signature", "in_axes", "out_axes")


def describe_wrapper(wrapper: Any, plan: Plan, sharding: Sharding | None) -> None:
    """Give the wrapper the batched signature, annotations, docstring and derived axes."""
    wrapper.__annotations__, wrapper.__signature__ = signature_of(plan, batched=True)
    mesh_axes = None if sharding is None else sharding.axes
    wrapper.__doc__ = with_shapes_section(contract_function(wrapper.fn).__doc__, plan, mesh_axes)
    wrapper.signature = plan.signature_text()
    if plan.levels is not None:  # else they depend on the call: see explain(fn, *args)
        wrapper.in_axes = {level.key: vmap_axes(level.in_axes) for level in plan.levels}
        wrapper.out_axes = {level.key: vmap_axes(plan.vmap_out_axes(level)) for level in plan.levels}


def with_shapes_section(doc: str | None, plan: Plan, mesh_axes: dict[str, tuple[str, ...]] | None = None) -> str:
    """The user's docstring (kept as written) followed by the "Shapes" section.

    When the per-example function is itself batched, its generated section is replaced,
    not repeated.
    """
    section = shapes_section(plan, mesh_axes)
    user = strip_shapes_section(inspect.cleandoc(doc)) if doc else ""
    if not user:
        return section
    return f"{user}\n\n{section}"


def strip_shapes_section(doc: str) -> str:
    """``doc`` without a trailing generated "Shapes" section (a batched function batched again)."""
    return _GENERATED_SECTION.sub("", doc.rstrip() + "\n").rstrip()


def shapes_section(plan: Plan, mesh_axes: dict[str, tuple[str, ...]] | None = None) -> str:
    """The "Shapes" section for ``plan``: each parameter's and result's layouts, and the axes.

    ``mesh_axes`` (batch name -> mesh axes, from ``shard=``) adds each ``vmap``'s ``spmd_axis_name``.
    """
    lines = ["Shapes", "------"]
    for argument in plan.fixed:
        layout = "static" if argument.placement is None else _literal(argument.placement.per_example)
        lines.append(f"- ``{argument.name}``: {layout}, {bound_text(argument.bound, fixed=True)}")
    for argument in plan.arguments:
        placement = argument.placement
        if placement is None:
            bound = "not mapped" if argument.bound is None else bound_text(argument.bound)
            lines.append(f"- ``{argument.name}``: static, {bound}")
            continue
        layout = _literal(placement.batched) + _kind(placement, argument.value.kind == "tree", argument.value.optional)
        if argument.split:
            lines.append(split_key_text(argument.name, placement, argument.value.optional))
        elif argument.bound is not None:
            lines.append(f"- ``{argument.name}``: {layout}, {bound_text(argument.bound)}")
        elif not placement.batch_names:
            lines.append(f"- ``{argument.name}``: {layout}, shared (not mapped)")
        else:
            lines.append(f"- ``{argument.name}``: {layout} (per example {_literal(placement.per_example)})")
    for index, result in enumerate(plan.results):
        name = f"return[{index}]" if plan.returns_tuple else "return"
        layout = _literal(result.placement.batched) + _kind(result.placement, result.value.kind == "tree", False)
        lines.append(f"- {name}: {layout} (per example {_literal(result.placement.per_example)})")
    levels, _ = nominal_levels(plan)
    for depth, level in enumerate(levels):
        position = ""
        if len(levels) > 1:
            position = " (outermost)" if depth == 0 else " (innermost)" if depth == len(levels) - 1 else ""
        arguments = vmap_arguments(level, (mesh_axes or {}).get(level.batch_name, ()))
        if level.index is not None:
            lines.append(
                f"- vmap over ``*{level.batch_name}``{position}: any number of dims, broadcast; one ``jax.vmap`` "
                f"per dim, like ``{arguments}``"
            )
            continue
        line = f"- vmap over ``{level.batch_name}``{position}: ``{arguments}``"
        if level.batch_name in plan.broadcastable_batch:
            line += "; an argument of size 1 there is shared"
        if level.chunk is not None:
            line += f"; {chunk_text(level.chunk)}"
        lines.append(line)
    return "\n".join(lines)


def bound_text(partial: str, *, fixed: bool = False) -> str:
    """What a value a partial binds is: fixed and shared, as ``jax.vmap`` closes over it."""
    if fixed:
        return f"bound by {partial}: fixed, shared (not mapped, not a parameter)"
    return f"bound by {partial}: shared (not mapped) unless passed again"


def split_key_text(name: str, placement: Placement, optional: bool) -> str:
    """A ``SplitKey`` parameter's line: one key in, ``jax.random.split`` into one key per example."""
    names = ", ".join(f"``{batch}``" for batch in placement.batch_names)
    return (
        f"- ``{name}``: one key{' or None' if optional else ''} (per example {_literal(placement.per_example)}), "
        f"split by ``jax.random.split`` into one key per example over {names}: {_literal(placement.batched)}"
    )


def chunk_text(chunk: int | Budget) -> str:
    """How a chunked level runs (``chunk=``): its slices, and that its name is no axis name."""
    if isinstance(chunk, Budget):
        size = f"as many examples as fit a budget of {chunk.bytes} bytes (a power of two)"
    else:
        size = f"{chunk} examples"
    return f"in slices of {size}, one ``jax.lax.map`` step each; not an axis name"


def vmap_arguments(level: Level, mesh_axes: tuple[str, ...] = ()) -> str:
    """``in_axes=(0, None), out_axes=0``: what this level gives ``jax.vmap``."""
    text = f"in_axes={axes_text(level.in_axes)}, out_axes={axes_text(level.out_axes, inputs=False)}"
    if level.size is not None and all(axis is None for axis in level.in_axes):
        text += f", axis_size={level.size}"
    if mesh_axes:
        spmd = mesh_axes[0] if len(mesh_axes) == 1 else mesh_axes
        text += f", spmd_axis_name={spmd!r}"
    return text


def axes_text(axes: tuple[Any, ...], *, inputs: bool = True) -> str:
    """As ``jax.vmap`` is given them (and ``explain`` writes them): a bare axis for one value, but a
    layout tree's axes in a tuple (``in_axes`` may be a tree only inside one)."""
    bare = len(axes) == 1 and (not inputs or axes[0] is None or isinstance(axes[0], int))
    return repr(axes[0]) if bare else repr(tuple(axes))


def kind_note(pytree: bool, optional: bool) -> str:
    """`` on every leaf``, `` or None``: what a layout applies to, beyond one array."""
    return (" on every leaf" if pytree else "") + (" or None" if optional else "")


def _kind(placement: Any, pytree: bool, optional: bool) -> str:
    """A layout tree gives each subtree its own layout; another layout applies to every leaf."""
    if placement.treedef is not None:
        return " (a layout per subtree)" + (" or None" if optional else "")
    return kind_note(pytree, optional)


def _literal(layout: Any) -> str:
    text = str(layout)
    return f"``{text}``" if text else "scalar"
