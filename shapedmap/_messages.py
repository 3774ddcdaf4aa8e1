"""The wording of the errors the checks before and after the map raise, from structured facts.

The checks (``_checks``, ``_objects``, ``_nest``) say what went wrong: the function, the place,
the value and what its annotation asks; the functions here return the message text. A conflict of
sizes by name is worded by ``_size_messages``, the map itself (mesh, chunks, the per-example call)
by ``_map_messages``. Nothing here imports the checks at run time (types only): this is the lowest
layer of the call path.

Example:
    >>> print(not_a_tuple("pair", 2, jnp.ones(3)))
    pair: the return value should be a tuple of 2 (its annotation), got f32[3]
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax

from ._errors import count, describe_value
from ._places import argument_place
from ._value_types import hint_text

if TYPE_CHECKING:
    from ._grammar import Layout
    from ._value_types import ArrayType, ValueType

__all__ = [
    "abstract_array_in_call",
    "array_in_static_union",
    "describe_tree",
    "dtype_mismatch",
    "expected_array",
    "expression_cannot_be_a_size",
    "fixed_static_mismatch",
    "int_beyond_dtypes",
    "int_result_beyond_dtype",
    "leaves_disagree",
    "no_array_sizes_batch_dim",
    "not_a_pytree",
    "not_a_result",
    "not_a_tuple",
    "not_an_array",
    "not_of_class",
    "per_example_rank",
    "stated_shape_without_batch",
    "static_mismatch",
    "unconvertible_array",
]

# -- before and after the map (_checks) ----------------------------------------------------------


def expected_array(value: ValueType, layout: Layout) -> str:
    """``matching Float[Array, 'graph node feat']``: the array an argument must be."""
    return f"matching {hint_text(value.array.with_layout(layout))}"


def not_an_array(function: str, place: str, expected: str, value: Any) -> str:
    """An argument that is not an array (a list may be meant as a PyTree: never guessed)."""
    hint = " (jnp.asarray makes one array of it)" if isinstance(value, list | tuple) else ""
    return f"{_must_be_an_array(function, place, expected)}{describe_value(value)}{hint}"


def int_beyond_dtypes(function: str, place: str, expected: str, value: int, error: Exception) -> str:
    """A Python int beyond every JAX integer dtype."""
    return (
        f"{_must_be_an_array(function, place, expected)}{describe_value(value)}, which no JAX dtype can hold ({error})"
    )


def abstract_array_in_call(function: str, place: str, expected: str, value: Any) -> str:
    """A ``jax.ShapeDtypeStruct`` passed to a real call."""
    return (
        f"{_must_be_an_array(function, place, expected)}jax.ShapeDtypeStruct {describe_value(value)}: "
        "a shape without data can be traced (jax.eval_shape), not called with"
    )


def unconvertible_array(function: str, place: str, expected: str, value: Any, error: Exception) -> str:
    """An array of another library that ``jnp.asarray`` refuses."""
    return (
        f"{_must_be_an_array(function, place, expected)}{type(value).__name__} {describe_value(value)}, "
        f"which JAX cannot convert to one ({type(error).__name__}: {error})"
    )


def masked_array(function: str, place: str, expected: str, value: Any) -> str:
    """A NumPy masked array: JAX has no masks, and dropping one silently would change the answer."""
    return (
        f"{_must_be_an_array(function, place, expected)}a NumPy masked array {describe_value(value)}: "
        "masked arrays are not supported; pass value.filled(fill_value) (masked entries replaced) "
        "or value.data (the mask ignored), and the mask as an array of its own if the function needs it"
    )


def _must_be_an_array(function: str, place: str, expected: str) -> str:
    return f"{function}: {place} must be an array {expected}, got "


def dtype_mismatch(function: str, place: str, value: Any, array: ArrayType) -> str:
    """An array whose dtype its annotation does not admit."""
    return (
        f"{function}: {place} has dtype {value.dtype} ({describe_value(value)}) but its "
        f"annotation admits only {array.dtype_description()} dtypes"
    )


def no_alternative_matches(
    function: str, place: str, value: Any, shape: tuple[int, ...], array: ArrayType, hint: Any = None, path: str = ""
) -> str:
    """An example whose dtype and shape match no member of a union of shapes (``PRNGKeyArray``), or no
    item of a container annotation (``tuple[Float[Array, '2'], Float[Array, '3']]``, ``hint``), whose
    leaf at ``path`` (``[0]``) it is."""
    example = f"{function}: {place} is {describe_value(value)}, so each example is {value.dtype}{list(shape)}"
    members = ", ".join(hint_text(member.with_layout(member.layout)) for member in array.alternatives)
    origin = typing.get_origin(hint)
    if origin in (tuple, list, dict):
        items = [item for item in typing.get_args(hint) if item is not Ellipsis]
        index = re.match(r"\[(\d+)\]", path)
        if origin is tuple and Ellipsis not in typing.get_args(hint) and index and int(index[1]) < len(items):
            position = int(index[1])
            return (
                f"{example}, but its annotation is the tuple {hint_text(hint)}, whose item {position} is "
                f"{hint_text(items[position])} per example"
            )
        return f"{example}, but its annotation {hint_text(hint)} holds arrays of the shapes {members} per example"
    return f"{example}, but its annotation admits one of {members} per example"


def not_a_pytree(function: str, place: str, value: Any, error: Exception) -> str:
    """A value JAX cannot flatten (e.g. a dict whose keys cannot be sorted)."""
    return (
        f"{function}: {place} is not a PyTree JAX can flatten ({type(error).__name__}: {error}): "
        f"{describe_value(value)}"
    )


def layout_tree_mismatch(function: str, place: str, layout: str, path: str, detail: str) -> str:
    """A value whose PyTree its layout tree is not a prefix of (as ``jax.vmap`` reads ``in_axes``)."""
    at = f"at {path}" if path else "at its top"
    return (
        f"{function}: {place} does not fit its layout tree {layout} {at}: the layout tree has {detail}. Make "
        "the layout tree a prefix of the value's PyTree (the same containers, keys and classes down to each "
        "layout, as jax.vmap reads in_axes), or give that part of the value one layout string"
    )


def static_mismatch(function: str, name: str, hint: Any, value: Any) -> str:
    """A non-array argument its annotation does not admit."""
    return f"{function}: {argument_place(name)} is annotated {hint_text(hint)}, got {describe_value(value)}"


def fixed_static_mismatch(function: str, place: str, hint: Any, value: Any) -> str:
    """A non-array value a partial fixes that its annotation does not admit."""
    return f"{function}: {place} is annotated {hint_text(hint)}, got {describe_value(value)}"


def array_in_static_union(function: str, name: str, hint: Any, value: Any) -> str:
    """An array passed to a parameter whose annotation also admits non-arrays (held static)."""
    return (
        f"{function}: {argument_place(name)} is {describe_value(value)}, but its annotation "
        f"{hint_text(hint)} also admits non-arrays, so shapedmap holds it static rather than guess "
        f"whether to map it. Say which: layouts={{'{name}': 'batch ...'}} (its layout, with the batch "
        f"name, to map it) or layouts={{'{name}': None}} (one value shared by every example)"
    )


def no_array_sizes_batch_dim(function: str, name: str, holders: Sequence[tuple[str, Any]], note: str = "") -> str:
    """No argument mapped over the batch dim ``name`` holds an array; ``holders``: (parameter, value);
    ``note``: which parameters are unannotated (held static), if any."""
    text = " nor ".join(f"{argument_place(parameter)} ({describe_value(value)})" for parameter, value in holders)
    if len(holders) > 1:
        return f"{function}: nothing gives the size of the batch dim '{name}': neither {text} holds an array{note}"
    return f"{function}: nothing gives the size of the batch dim '{name}': {text} holds no array{note}"


def expression_cannot_be_a_size(
    function: str, expression: str, place: str, sizes: Mapping[str, int], error: Exception
) -> str:
    """A result's dim expression (``n // 0``) that the arguments' sizes make no size."""
    arguments = ", ".join(f"{name}={size}" for name, size in sorted(sizes.items()))
    return (
        f"{function}: the dimension {expression!r} of {place} cannot be a size for these "
        f"arguments ({arguments}): {error}"
    )


def not_a_tuple(function: str, count: int, output: Any) -> str:
    """A function annotated to return a tuple that returned something else."""
    return f"{function}: the return value should be a tuple of {count} (its annotation), got {describe_value(output)}"


def not_a_result(function: str, place: str, value: Any, *, array_like: bool = False) -> str:
    """A result leaf that is not an array; ``array_like``: it has a shape and a dtype JAX cannot hold."""
    if array_like:
        return f"{_should_be_an_array(function, place)}{type(value).__name__} {describe_value(value)}, which JAX cannot hold"
    return f"{_should_be_an_array(function, place)}{describe_value(value)}"


def int_result_beyond_dtype(function: str, place: str, value: int, dtype: Any) -> str:
    """A Python int result that does not fit JAX's integer dtype."""
    return (
        f"{_should_be_an_array(function, place)}{describe_value(value)}, which does not fit "
        f"{dtype} (JAX's integer dtype here)"
    )


def _should_be_an_array(function: str, place: str) -> str:
    return f"{function}: {place} should be an array, got "


def per_example_rank(function: str, place: str, value: Any, rank: int, layout: Layout) -> str:
    """One example's result with a rank its per-example layout does not admit."""
    return (
        f"{function}: {place} of one example is {describe_value(value)} ({count(rank, 'dim')}), but its "
        f"per-example layout {str(layout)!r} needs {layout.rank_text} (the map adds the batch dims to it)"
    )


# -- the objects in a PyTree (_objects) ----------------------------------------------------------


def not_of_class(function: str, place: str, cls: type, tree: bool, value: Any, name: str | None = None) -> str:
    """A value that is not the class its annotation names (``Params``, or ``PyTree[Params]``): a dict
    or a tuple of the same arrays; ``name``: the parameter's name, for an argument."""
    annotation = f"PyTree[{cls.__qualname__}]" if tree else cls.__qualname__
    what = (
        f"a {cls.__qualname__} (or a PyTree of them: it is annotated {annotation})" if tree else f"a {cls.__qualname__}"
    )
    spread = "**" if isinstance(value, dict) else "*" if isinstance(value, tuple | list) else None
    e_g = f", e.g. {cls.__qualname__}({spread}{name or 'values'})" if spread else ""
    who, verb = ("the function", "pass") if name is not None else ("its caller", "return")
    return (
        f"{function}: {place} should be {what}, got {_tree_text(value)}. JAX flattens both into the same "
        f"arrays, but {who} reads a {cls.__qualname__} (its fields, its methods): {verb} one{e_g}"
    )


def describe_tree(value: Any) -> str:
    """A PyTree with every leaf described: ``{'w': f32[4,3]}`` (a single array: ``f32[4,3]``)."""

    class Shown(str):
        __repr__ = str.__str__

    try:
        return repr(jax.tree.map(lambda leaf: Shown(describe_value(leaf)), value))
    except Exception:
        return describe_value(value)


def _tree_text(value: Any) -> str:
    """``dict {'w': f32[4,3]}``: a PyTree's type and its leaves described, within about a line."""
    text = describe_tree(value)
    return f"{type(value).__name__} {text if len(text) <= 100 else text[:97] + '...'}"


def stated_shape_without_batch(
    function: str,
    place: str,
    node: Any,
    attributes: str,
    stated: tuple[Any, ...] | Exception,
    expected: tuple[Any, ...],
    batch_sizes: Mapping[str, tuple[Any, ...]],
) -> str:
    """An object of a result whose stated shape (``batch_shape + event_shape``, ``shape``) is still
    one example's after batching, or cannot be read then (``stated``: the error reading it raised);
    ``batch_sizes``: the batch dims its arrays gained."""
    dims = ", ".join(
        f"{name}={sizes[0]}" if len(sizes) == 1 else f"*{name}={tuple(sizes)}" for name, sizes in batch_sizes.items()
    )
    gained = f"the batch dim {dims}" if len(batch_sizes) == 1 else f"the batch dims {dims}"
    what = f"{function}: {place} is a {type(node).__qualname__} whose {attributes}"
    if isinstance(stated, Exception):
        return (
            f"{what} cannot be read once its arrays gained {gained} ({type(stated).__name__}: {stated}); it should be "
            f"{_shape_text(expected)}. Built for one example, it does not hold together once jax.vmap puts the "
            f"batch dims in front of each of its arrays. {_RETURN_ARRAYS}"
        )
    return (
        f"{what} is {_shape_text(stated)}, but its arrays gained {gained}, so it should be {_shape_text(expected)}. "
        "The object keeps the shape one example built it with as static data, which jax.vmap does not batch "
        "(stacking the examples in a loop would not either): what reads it (.sample(), .log_prob(), .entropy(), ...) "
        f"would compute with one example's shape. {_RETURN_ARRAYS}"
    )


_RETURN_ARRAYS = (
    "Return arrays (what the object is built from) and build it from the batched arrays after the call, or "
    "compute what you need of it (.sample(), .log_prob(x), ...) inside the function"
)


def _shape_text(shape: tuple[Any, ...]) -> str:
    return f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''})"


# -- the levels and the mesh of a call (_nest, _sharding) ----------------------------------------


def leaves_disagree(function: str, name: str, shapes: Sequence[tuple[int, ...]]) -> str:
    """The leaves of one PyTree argument with different batch shapes."""
    return (
        f"{function}: the leaves of {argument_place(name)} disagree on their batch dims "
        f"(shapes {', '.join(map(str, shapes))}); one in_axes entry maps the whole PyTree, so every "
        "leaf needs the same batch shape"
    )
