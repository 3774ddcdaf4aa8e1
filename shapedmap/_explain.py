"""``explain(fn, *args, **kwargs)``: the ``jax.vmap`` nest a batched function runs, as Python.

The text is a runnable function definition: the nest of ``jax.vmap(..., in_axes=...,
out_axes=..., axis_name=...)`` calls that ``batched`` derived, with the size every dim took
for these arguments in comments. Executed with the per-example function in scope, it
computes what the batched function computes. A function decorated in place (``@batched`` rebinds its
name to the batched function) is read as ``name.fn``, bound to ``name_per_example``, so that the text
pasted into its module maps the per-example function, not the batched one a second time (``tests/test_explain.py`` checks exactly
that), so it is both documentation and an escape hatch: paste it, and shapedmap is gone.

A batched function whose per-example function is itself batched (``mm = batched(mv, ...)``)
is written out down to the innermost per-example function, as one would by hand. This module
collects that chain (one ``Stage`` per batched function, with its levels for this call);
``_explain_text`` writes it.

Example:
    >>> from shapedmap.examples import pairwise
    >>> u = v = jnp.ones((13, 17))
    >>> print(explain(pairwise, u, v))
    # concat, batched as
    #     i f, j f -> i j 2*f
    # written out as plain jax.vmap for u: f32[13,17], v: f32[13,17]
    # (sizes: i=13, f=17, j=13). `concat` is the per-example function: the function given to batched.
    import jax
    <BLANKLINE>
    <BLANKLINE>
    def batched_concat(u, v):
        vmapped = jax.vmap(concat, in_axes=(None, 0), out_axes=0, axis_name="j")  # j = 13; u not mapped
        vmapped = jax.vmap(vmapped, in_axes=(0, None), out_axes=0, axis_name="i")  # i = 13; v not mapped
        return vmapped(u, v)  # -> f32[13,13,34]
"""

from __future__ import annotations

import inspect
from typing import Any

from ._arrays import per_example_arguments
from ._call import chosen_chunks
from ._checks import check_arguments
from ._explain_text import SourceWriter, Stage, result_text
from ._key_checks import split_keys
from ._nest import nest_for
from ._pipeline import bind, plan_for_call
from ._plan import Plan, plan_of

__all__ = ["explain"]


def explain(fn: Any, /, *args: Any, **kwargs: Any) -> str:
    """The hand-written ``jax.vmap`` nest equivalent to ``fn(*args, **kwargs)``, as Python text.

    Args:
        fn: a function made by ``shapedmap.batched`` (or such a method of an instance).
        *args: arguments as ``fn`` would be called with (arrays or ``jax.ShapeDtypeStruct``).
        **kwargs: keyword arguments, likewise.

    Returns:
        The source of a function with ``fn``'s parameters whose body is plain ``jax.vmap``
        calls over the per-example function, named as in its ``def``. Comments give every
        dim's size for these arguments and the result's shape.

    Raises:
        ShapeError: when the arguments do not fit ``fn``'s layouts (the same error the call
            would raise).
        TypeError: when ``fn`` was not made by ``shapedmap.batched``.

    Example:
        >>> from shapedmap.examples import column_sums
        >>> print(explain(column_sums, jnp.ones((3, 4))))
        # sum_vector, batched as
        ...
        def batched_sum_vector(x):
            vmapped = jax.vmap(sum_vector, in_axes=1, out_axes=0, axis_name="col")  # col = 4
            return vmapped(x)  # -> f32[4]
    """
    if inspect.ismethod(fn) and hasattr(fn.__func__, "__shapedmap__"):
        fn, args = fn.__func__, (fn.__self__, *args)  # a batched method of an instance: self is static
    stages = _stages(fn, args, kwargs)
    innermost = _innermost(fn, len(stages))
    outermost = stages[0]
    shapes = outermost.result_shapes()
    return SourceWriter(stages, innermost, len(stages)).source(fn, result_text(shapes))


# -- the chain of batched functions and their levels -----------------------------------------------


def _stages(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Stage]:
    """The call's levels for ``fn``, then for each batched per-example function inside it."""
    plan = plan_for_call(fn.__shapedmap__, kwargs) if hasattr(fn, "__shapedmap__") else plan_of(fn)
    bindings, passed = check_arguments(plan, bind(plan, args, kwargs))
    values = split_keys(plan, passed, bindings)  # SplitKey: the keys the nest maps, one per example
    nest = chosen_chunks(plan, nest_for(plan, values, bindings), fn.fn, values)
    stages = [Stage(plan, bindings, nest, values, fn.__shapedmap__, passed)]
    inner = getattr(fn, "fn", None)
    while inner is not None and hasattr(inner, "__shapedmap__") and _same_parameters(plan, plan_of(inner)):
        outer = stages[-1]
        inner_plan = plan_of(inner)
        values = list(per_example_arguments(outer.plan, outer.values).values())
        bindings, values = check_arguments(inner_plan, values)
        nest = chosen_chunks(inner_plan, nest_for(inner_plan, values, bindings), inner.fn, values)
        stages.append(Stage(inner_plan, bindings, nest, values, inner.__shapedmap__))
        plan, inner = inner_plan, getattr(inner, "fn", None)
    return stages


def _same_parameters(outer: Plan, inner: Plan) -> bool:
    """Can the inner function's vmaps take the outer's mapped arrays as they are?"""
    return [(a.name, a.kind) for a in outer.arguments] == [(a.name, a.kind) for a in inner.arguments] and (
        outer.array_arguments == inner.array_arguments
    )


def _innermost(fn: Any, depth: int) -> Any:
    current = fn
    for _ in range(depth):
        current = current.fn
    return current
