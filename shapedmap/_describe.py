"""Shape documentation: the contract of a batched function, as data, text and a picture.

``describe(fn)`` reads the plan behind a batched function into a ``Contract``: every
parameter with its per-example and batched layout, dtype and batch dims (or that it is
static), every output, and one ``BatchDim`` per ``jax.vmap`` with its ``in_axes`` and
``out_axes``. The contract renders as Markdown, reStructuredText, a JSON-able dict, an SVG
picture (``shapedmap._diagram``) and the NumPy-docstring "Shapes" section that ``@batched``
appends to ``__doc__``. That section and the ``jax.vmap`` arguments are written by
``shapedmap._face`` (one implementation, for the docstring and for this view alike).

Example:
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
    >>> contract = describe(message_passing)
    >>> contract.batch_dims[0].in_axes
    {'a': 0, 'f': 0}
    >>> print(contract.shapes_section())
    Shapes
    ------
    - ``a``: ``graph node node`` (per example ``node node``)
    - ``f``: ``graph node feat`` (per example ``node feat``)
    - return: ``graph node feat`` (per example ``node feat``)
    - vmap over ``graph``: ``in_axes=(0, 0), out_axes=0``
"""

from __future__ import annotations

import inspect
from typing import Any

import jax

from ._contract import BatchDim, Contract, OutputShape, ParameterShape
from ._face import shapes_section, strip_shapes_section, vmap_arguments
from ._grammar import Layout
from ._layout_trees import TreePlacement
from ._levels import AxesTree, Budget, Placement
from ._nest import nominal_levels
from ._plan import Plan, plan_of
from ._value_types import ValueType, hint_text
from ._wrappers import contract_function

__all__ = ["BatchDim", "Contract", "OutputShape", "ParameterShape", "contract_of", "describe"]

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional-only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional or keyword",
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.KEYWORD_ONLY: "keyword-only",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
}


# -- building a contract -------------------------------------------------------------------------


def describe(fn: Any, name: str | None = None) -> Contract:
    """The shape contract of a function made by ``shapedmap.batched``.

    Args:
        fn: the batched function.
        name: the name to document it under (default: ``fn.__name__``).

    Returns:
        A ``Contract``; render it with ``.to_markdown()``, ``.to_rst()``, ``.to_dict()``
        or ``.to_svg()``.

    Raises:
        TypeError: when ``fn`` was not made by ``shapedmap.batched``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
        ...     return jnp.dot(x, y)
        >>> mv = batched(vv, "b a, a -> b")
        >>> describe(mv).batch_dims[0].in_axes
        {'x': 0, 'y': None}
        >>> print(describe(mv).batch_dims[0].vmap_arguments())
        in_axes=(0, None), out_axes=0
    """
    plan = plan_of(fn)
    per_example = getattr(fn, "fn", fn)
    per_example = contract_function(per_example)  # document the function behind a partial or jax.jit
    return contract_of(
        plan,
        name=name or getattr(fn, "__name__", plan.function),
        per_example=plan.function,  # 'jax.grad(loss)' for a gradient, not 'loss'
        per_example_batched=hasattr(per_example, "__shapedmap__"),
        module=getattr(fn, "__module__", None),
        mesh_axes=_mesh_axes(fn),
        doc=getattr(per_example, "__doc__", None),
    )


def contract_of(
    plan: Plan,
    name: str | None = None,
    per_example: str | None = None,
    per_example_batched: bool = False,
    module: str | None = None,
    doc: str | None = None,
    mesh_axes: dict[str, tuple[str, ...]] | None = None,
) -> Contract:
    """The contract of ``plan`` (``describe`` fills the names in from the function).

    ``mesh_axes`` (batch name -> mesh axes, from ``shard=``) adds each ``vmap``'s ``spmd_axis_name``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> from shapedmap._plan import plan_of
        >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...     return jnp.sum(x)
        >>> contract = contract_of(plan_of(batched(total, "b")), mesh_axes={"b": ("data",)})
        >>> contract.name, contract.signature
        ('total', 'b n -> b')
        >>> contract.batch_dims[0].vmap_arguments()
        "in_axes=0, out_axes=0, spmd_axis_name='data'"
    """
    mesh_axes = mesh_axes or {}
    levels, per_call = nominal_levels(plan)
    array_names = [plan.arguments[i].name for i in plan.array_arguments]
    output_names = [f"return[{i}]" for i in range(len(plan.results))] if plan.returns_tuple else ["return"]
    parameters = tuple(_parameter_shape(argument) for argument in plan.arguments)
    fixed = tuple(_parameter_shape(argument) for argument in plan.fixed)
    outputs = tuple(
        OutputShape(
            name=output_name,
            annotation=_annotation_text(result.value, result.placement.per_example),
            dtype=_dtype(result.value),
            per_example=str(result.placement.per_example),
            batched=str(result.placement.batched),
            batch_axes=_batch_axes(result.placement),
            pytree=result.value.kind == "tree",
            subtrees=_subtrees(result.placement),
        )
        for output_name, result in zip(output_names, plan.results, strict=True)
    )
    batch_dims = []
    for depth, level in enumerate(levels):
        axes = tuple(mesh_axes.get(level.batch_name, ()))
        batch_dims.append(
            BatchDim(
                name=level.batch_name,
                depth=depth,
                axis_name=level.axis_name,
                in_axes={name: _axes(axes) for name, axes in zip(array_names, level.in_axes, strict=True)},
                out_axes={name: _axes(axes) for name, axes in zip(output_names, level.out_axes, strict=True)},
                size=level.size,
                variadic=level.index is not None,
                broadcastable=level.index is not None or level.batch_name in plan.broadcastable_batch,
                per_call=per_call,
                mesh_axes=axes,
                chunk=level.chunk if isinstance(level.chunk, int) else None,
                chunk_budget=level.chunk.bytes if isinstance(level.chunk, Budget) else None,
                _vmap_arguments=vmap_arguments(level, axes),
            )
        )
    return Contract(
        name=name or plan.function,
        per_example=per_example or plan.function,
        per_example_batched=per_example_batched,
        module=module,
        summary=_summary(doc),
        signature=plan.signature_text(),
        parameters=parameters,
        outputs=outputs,
        batch_dims=tuple(batch_dims),
        fixed=fixed,
        _shapes_section=shapes_section(plan, mesh_axes),
    )


def _parameter_shape(argument: Any) -> ParameterShape:
    default = None if argument.default is inspect.Parameter.empty else repr(argument.default)
    placement: Placement | None = argument.placement
    if placement is None:
        hint = argument.value.hint
        return ParameterShape(
            name=argument.name,
            kind=_KINDS[argument.kind],
            static=True,
            annotation="unannotated" if hint is None else hint_text(hint),
            dtype=None,
            per_example=None,
            batched=None,
            batch_axes={},
            pytree=False,
            optional=False,
            default=default,
            bound=argument.bound,
        )
    return ParameterShape(
        name=argument.name,
        kind=_KINDS[argument.kind],
        static=False,
        annotation=_annotation_text(argument.value, placement.per_example),
        dtype=_dtype(argument.value),
        per_example=str(placement.per_example),
        batched=str(placement.batched),
        batch_axes=_batch_axes(placement),
        pytree=argument.value.kind == "tree",
        optional=argument.value.optional,
        default=default,
        bound=argument.bound,
        split_key=argument.split,
        subtrees=_subtrees(placement),
    )


def _mesh_axes(fn: Any) -> dict[str, tuple[str, ...]]:
    """The mesh axes each batch dim is split over (``batched(..., shard=...)``)."""
    sharding = getattr(getattr(fn, "__shapedmap__", None), "sharding", None)
    return dict(getattr(sharding, "axes", None) or {})


def _batch_axes(placement: Placement | TreePlacement) -> dict[str, Any]:
    """Each batch dim's token position; for a layout tree, per subtree path (``{"['b']": 0}``)."""
    if isinstance(placement, TreePlacement):
        return {
            name: {
                jax.tree_util.keystr(path): axes[name]
                for path, axes in zip(placement.paths, map(_batch_axes, placement.leaves), strict=True)
                if name in axes
            }
            for name in placement.batch_names
        }
    return {name: placement.batched.axis_of(index) for index, name in placement.batch}


def _subtrees(placement: Placement | TreePlacement) -> dict[str, str]:
    """A layout tree's batched layout per subtree path; empty for one layout."""
    if not isinstance(placement, TreePlacement):
        return {}
    return {
        jax.tree_util.keystr(path): str(leaf.batched)
        for path, leaf in zip(placement.paths, placement.leaves, strict=True)
    }


def _axes(axes: Any) -> Any:
    """One value's axis at a level; a layout tree's per subtree path (``{"['b']": 0, "['w']": None}``)."""
    if not isinstance(axes, AxesTree):
        return axes
    paths = jax.tree_util.tree_flatten_with_path(axes.tree, is_leaf=lambda node: node is None)[0]
    return {jax.tree_util.keystr(path): axis for path, axis in paths}


def _annotation_text(value: ValueType, layout: Layout) -> str:
    text = hint_text(value.array.with_layout(layout))
    if value.kind == "tree":
        text = f"PyTree[{text}]"
    if value.optional:
        text += " | None"
    return text


def _dtype(value: ValueType) -> str | None:
    return getattr(value.array.dtype, "__name__", None)


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc:
        return ""
    text = strip_shapes_section(inspect.cleandoc(doc))
    return " ".join(text.split("\n\n", 1)[0].split())
