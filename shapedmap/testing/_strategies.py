"""``inputs``: a Hypothesis strategy of arguments that fit a batched function's annotations.

One example is drawn in this order: the static parameters, the values ``given=`` fixes
(and the sizes they bind, ``_given``), one size per other dim name (shared by every argument,
batch and core dims alike) and one shape per ``*name`` core dim, which ``Optional`` arrays
are None, mutually broadcastable ``*batch`` shapes, then each array argument (its dtype,
which of its ``#name`` dims are 1, its leaves' shapes and values).
Last, the values are arranged into ``(args, kwargs)`` the way a caller could pass them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from .._grammar import AnonymousDim, FixedDim, NamedDim, SymbolicDim
from .._layout_trees import TreePlacement
from .._levels import Placement
from .._plan import Argument
from ._given import GivenSizes, read_given, share
from ._input_spec import KEY, RAW_KEY, InputSpec, ParameterSpec
from ._trees import fill, structure_for

__all__ = ["inputs"]

_OMIT = object()  # a parameter left to its default
_MAX_VARIADIC_DIMS = 3


def inputs(
    fn: Callable[..., Any],
    /,
    *,
    given: dict[str, Any] | None = None,
    static: dict[str, Any] | None = None,
    elements: dict[str, st.SearchStrategy[Any]] | None = None,
    sizes: dict[str, Any] | None = None,
    max_size: int = 4,
    allow_empty: bool = False,
    **fixed_sizes: Any,
) -> st.SearchStrategy[tuple[tuple[Any, ...], dict[str, Any]]]:
    """A Hypothesis strategy of ``(args, kwargs)`` that fit the batched function ``fn``.

    Every dimension name gets one size, shared by all arguments; ``*batch`` dims are drawn
    mutually broadcastable (size-1 dims, missing leading dims), ``#name`` dims are sometimes 1,
    ``Optional`` arrays sometimes None, PyTree arguments small dicts/tuples of such arrays.
    Sizes run from 1 to ``max_size`` and shrink towards 1; values are finite (floats and ints
    in [-10, 10]); each array's dtype is drawn from those its annotation admits (``Float`` ->
    float32; ``Num`` -> float32, int32, complex64 or uint32; ``Key`` -> ``jax.random.key``;
    ``PRNGKeyArray`` -> a typed key or a raw ``uint32[2]`` one per example).

    Args:
        fn: a function made by ``shapedmap.batched``.
        given: a value or a strategy per parameter, of any kind: a model's parameters, an
            equinox model, a fixed key, a config (``{"params": params, "k": st.integers(1, 3)}``).
            An array value is checked against the parameter's layout and binds its sizes, which
            every drawn argument then takes; one example's value (the layout without its batch
            dims) is shared by every example. Static parameters not named keep their defaults.
        static: ``given=`` for static (non-array) parameters (the older name).
        elements: a strategy of scalars per array parameter (``{"x": st.floats(0.1, 10)}``),
            instead of the default finite values; the array itself is still drawn.
        sizes: sizes by dim name, as a dict (for names that clash with these options).
        max_size: the largest size drawn for a dimension.
        allow_empty: let batch dims (and ``*batch`` dims) have size 0. Off by default,
            because a per-example function often reduces over what it is given; core dims are
            never drawn as 0 (fix one to 0, or to ``st.integers(0, 3)``, to test that).
        **fixed_sizes: a size (an int or a strategy of ints) per dim name, ``n=3``; a tuple
            (or a strategy of tuples) for a ``*name`` dim.

    Returns:
        A strategy of ``(args, kwargs)``: call ``fn(*args, **kwargs)``.

    Raises:
        ValueError: for an unknown dim or parameter name, a parameter named by two options, a
            static parameter with no default and no value given, a bare ``PyTree[Float[Array,
            "..."]]`` parameter without a value given, or a given value that does not fit its
            layout (when drawn, for a strategy).

    Example:
        >>> from hypothesis import given, settings
        >>> from shapedmap.examples import message_passing
        >>> @settings(max_examples=10, deadline=None)  # the first call compiles
        ... @given(inputs(message_passing, feat=3))
        ... def test_keeps_the_features(example):
        ...     args, kwargs = example
        ...     assert message_passing(*args, **kwargs).shape[-1] == 3
        >>> test_keeps_the_features()

        A value given for a parameter fixes the sizes it binds for every drawn argument:

        >>> import jax.numpy as jnp
        >>> from hypothesis import find
        >>> args, kwargs = find(inputs(message_passing, given={"a": jnp.eye(3)}), lambda example: True)
        >>> [value.shape for value in (*args, *kwargs.values())]  # one example's 'a', shared by 1 graph
        [(1, 3, 3), (1, 3, 1)]
    """
    given_sizes = dict(sizes or {})
    for name in fixed_sizes.keys() & given_sizes.keys():
        raise ValueError(f"inputs: the size of '{name}' is given twice, in sizes= and as {name}=")
    given_sizes.update(fixed_sizes)
    spec = InputSpec.build(fn, static or {}, elements or {}, given_sizes, max_size, allow_empty, given=given)
    return _draw_inputs(spec)


@dataclass
class _Context:
    """The draws shared by every argument of one example."""

    sizes: dict[str, int]  # by dim name
    shapes: dict[str, tuple[int, ...]]  # by ``*name`` core dim
    statics: dict[str, Any]  # the static parameters' values in the call, for symbolic dims
    structures: dict[str, Any] = field(default_factory=dict)  # skeletons of named PyTree structures


@st.composite
def _draw_inputs(draw: st.DrawFn, spec: InputSpec) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One example: the draws shared by all arguments first, then each argument, then ``_arrange``."""
    static_parameters = [p for p in spec.parameters if p.placement is None]
    statics = {p.name: draw(p.static) if p.static is not None else _OMIT for p in static_parameters}
    given = {p.name: draw(p.given) for p in spec.parameters if p.given is not None}
    read = read_given(spec.plan, given, f"inputs({spec.plan.function})")
    sizes = {name: _draw_size(draw, spec, name, read) for name in spec.names}
    shapes = {
        name: read.shapes[name] if name in read.shapes else _draw_shape(draw, spec, name)
        for name in spec.core_variadics
    }
    called_with = {p.name: _static_value(p.argument, statics[p.name]) for p in static_parameters}
    context = _Context(sizes, shapes, called_with, dict(read.structures))
    # Which optional arrays are None, then one broadcastable batch shape per remaining argument.
    present = {
        p.name: not (p.argument.value.optional and draw(st.booleans()))
        for p in spec.parameters
        if p.placement is not None and p.given is None
    }
    base = read.shapes.get(spec.plan.variadic_batch, ()) if spec.plan.variadic_batch else ()
    batch_shapes = _draw_batch_shapes(draw, spec, [p for p in spec.parameters if present.get(p.name)], base)
    values: dict[str, Any] = dict(statics)
    for parameter in spec.parameters:
        if parameter.placement is None:
            continue
        if parameter.given is not None:
            value = given[parameter.name]
            values[parameter.name] = (
                share(parameter.placement, value, sizes) if parameter.name in read.shared else value
            )
            continue
        if not present[parameter.name]:
            values[parameter.name] = _OMIT if parameter.argument.default is None else None
            continue
        values[parameter.name] = _draw_argument(draw, spec, parameter, context, batch_shapes.get(parameter.name, ()))
    return _arrange(draw, spec, values)


def _draw_size(draw: st.DrawFn, spec: InputSpec, name: str, read: GivenSizes) -> int:
    fixed = spec.fixed.get(name)
    if name in read.sizes:  # bound by a given value: every drawn argument takes it
        if isinstance(fixed, int) and fixed != read.sizes[name]:
            raise ValueError(
                f"inputs({spec.plan.function}): '{name}' has size {read.sizes[name]} in the values given=, "
                f"but {name}={fixed}"
            )
        return read.sizes[name]
    if isinstance(fixed, int):
        return fixed
    if fixed is not None:
        return draw(fixed)
    smallest = 0 if spec.allow_empty and name in spec.batch_names else 1
    return draw(st.integers(smallest, spec.max_size))


def _draw_shape(draw: st.DrawFn, spec: InputSpec, name: str | None) -> tuple[int, ...]:
    """The shape of a ``*name`` core dim (fixed, or 0 to 2 dims); ``name`` None: an anonymous ``*``."""
    fixed = spec.fixed.get(name) if name is not None else None
    if fixed is not None:
        return tuple(draw(fixed))
    return tuple(draw(st.lists(st.integers(1, spec.max_size), max_size=2)))


def _draw_batch_shapes(
    draw: st.DrawFn, spec: InputSpec, present: list[ParameterSpec], base: tuple[int, ...]
) -> dict[str, tuple[int, ...]]:
    """``*batch`` shapes, one per argument that has it: mutually broadcastable (with ``base``, the
    given values' batch shape)."""
    variadic = spec.plan.variadic_batch
    if variadic is None:
        return {}
    carriers = [p for p in present if p.placement.variadic_batch == variadic]
    if not carriers:
        return {}
    fixed = spec.fixed.get(variadic)
    if fixed is not None:
        shape = tuple(draw(fixed))
        return {p.name: shape for p in carriers}
    smallest = 0 if spec.allow_empty else 1
    drawn = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=len(carriers),
            base_shape=base,
            min_dims=0,
            max_dims=_MAX_VARIADIC_DIMS,
            min_side=smallest,
            max_side=spec.max_size,
        )
    )
    return {p.name: shape for p, shape in zip(carriers, drawn.input_shapes, strict=True)}


def _static_value(argument: Argument, value: Any) -> Any:
    """The value a static parameter has in the call (its default when omitted), for symbolic dims."""
    if value is not _OMIT:
        return value
    return argument.default if argument.default is not inspect.Parameter.empty else None


def _draw_argument(
    draw: st.DrawFn, spec: InputSpec, parameter: ParameterSpec, context: _Context, batch_shape: tuple[int, ...]
) -> Any:
    argument = parameter.argument
    if argument.split:  # SplitKey: one key, which the call splits into one per example
        return _draw_one_key(draw, argument)
    # A union of shapes (``PRNGKeyArray``): one member per argument, its shape where '...' is.
    dtype, member = draw(st.sampled_from(parameter.choices)) if parameter.choices else (None, None)
    dtype = dtype or draw(st.sampled_from(parameter.dtypes))

    def leaf_of(placement: Placement) -> Callable[[], Any]:
        # Per argument: which broadcastable ('#') tokens are size 1 this time.
        ones = {
            index
            for index, dim in enumerate(placement.batched.dims)
            if getattr(dim, "broadcastable", False) and draw(st.booleans())
        }
        symbolic = {
            index: _evaluate(dim, context, spec)
            for index, dim in enumerate(placement.batched.dims)
            if isinstance(dim, SymbolicDim)
        }

        def leaf() -> Any:
            shape = _leaf_shape(draw, spec, placement, context, batch_shape, ones, symbolic, member)
            return _draw_array(draw, dtype, shape, parameter.elements)

        return leaf

    if isinstance(parameter.placement, TreePlacement):  # the layout tree's structure, one array per layout
        return parameter.placement.treedef.unflatten([leaf_of(part)() for part in parameter.placement.leaves])
    leaf = leaf_of(parameter.placement)
    if argument.value.kind == "array":
        return leaf()
    return fill(structure_for(draw, argument, context.structures), leaf)


def _draw_one_key(draw: st.DrawFn, argument: Argument) -> Any:
    """One key of a one-key annotation: typed (``jax.random.key``) where it admits one, else raw."""
    seed = draw(st.integers(0, 2**32 - 1))
    array = argument.value.array
    typed = any(member.dtypes == ("prng_key",) for member in (array.alternatives or (array,)))
    return jax.random.key(seed) if typed else jax.random.PRNGKey(seed)


def _evaluate(dim: SymbolicDim, context: _Context, spec: InputSpec) -> int:
    size = dim.evaluate(context.sizes, context.statics)
    hypothesis.assume(size >= 1 or (size == 0 and spec.allow_empty))
    return size


def _leaf_shape(
    draw: st.DrawFn,
    spec: InputSpec,
    placement: Placement,
    context: _Context,
    batch_shape: tuple[int, ...],
    ones: set[int],
    symbolic: dict[int, int],
    member: tuple[int, ...] | None = None,
) -> tuple[int, ...]:
    per_leaf: dict[str, Any] = {}  # '?name' dims: one size per leaf
    shape: list[int] = []
    for index, dim in enumerate(placement.batched.dims):
        if index in ones:
            shape.append(1)
        elif isinstance(dim, NamedDim):
            if dim.treepath:
                if dim.name not in per_leaf:
                    per_leaf[dim.name] = draw(st.integers(1, spec.max_size))
                shape.append(per_leaf[dim.name])
            else:
                shape.append(context.sizes[dim.name])
        elif isinstance(dim, FixedDim):
            shape.append(dim.size)
        elif isinstance(dim, SymbolicDim):
            shape.append(symbolic[index])
        elif isinstance(dim, AnonymousDim):
            shape.append(draw(st.integers(1, spec.max_size)))
        elif dim.name is not None and dim.name == spec.plan.variadic_batch:
            shape.extend(batch_shape)
        elif dim.name is not None and not dim.treepath:
            shape.extend(context.shapes[dim.name])
        elif member is not None and dim.name is None:
            shape.extend(member)
        else:
            key = f"*{dim.name}"
            if dim.name is None or key not in per_leaf:
                per_leaf[key] = _draw_shape(draw, spec, None)
            shape.extend(per_leaf[key])
    return tuple(shape)


def _draw_array(draw: st.DrawFn, dtype: str, shape: tuple[int, ...], elements: st.SearchStrategy[Any] | None) -> Any:
    if dtype == RAW_KEY:  # one typed key's data per example: uint32[2] for threefry
        data = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape
        return jax.random.key_data(_draw_array(draw, KEY, shape[: len(shape) - len(data)], None))
    if dtype == KEY:
        seed = draw(st.integers(0, 2**32 - 1))
        key = jax.random.key(seed)
        return key if shape == () else jax.random.split(key, math.prod(shape)).reshape(shape)
    base, default = _element_strategy(dtype, custom=elements is not None)
    array = draw(hnp.arrays(base, shape, elements=elements if elements is not None else default))
    return jnp.asarray(array, dtype=jnp.dtype(dtype))


def _element_strategy(dtype: str, *, custom: bool) -> tuple[np.dtype[Any], st.SearchStrategy[Any]]:
    """The NumPy dtype to draw in (cast to ``dtype`` after) and the default finite values."""
    if dtype == "bool":
        return np.dtype(bool), st.booleans()
    if dtype.startswith("complex"):
        width = 128 if custom or dtype == "complex128" else 64
        values = st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False, width=width)
        return np.dtype(f"complex{width}"), values
    if "float" in dtype:
        width = 64 if custom or dtype == "float64" else 16 if dtype == "float16" else 32
        return np.dtype(f"float{width}"), st.floats(-10, 10, width=width)
    if custom:
        return np.dtype("int64"), st.integers()
    smallest = 0 if dtype.startswith("uint") else -10
    return np.dtype(dtype), st.integers(smallest, 10)


# -- arranging values into args and kwargs -----------------------------------------------------


def _arrange(draw: st.DrawFn, spec: InputSpec, values: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments; trailing positional-or-keyword ones sometimes by keyword."""
    parameters = [p.argument for p in spec.parameters if not p.bound]
    positional = [a for a in parameters if a.positional]
    var_positional = next((a for a in parameters if a.kind is inspect.Parameter.VAR_POSITIONAL), None)
    needs_all = var_positional is not None and values.get(var_positional.name, _OMIT) not in (_OMIT, ())
    required = 0  # positional parameters before this index must be passed positionally
    for index, argument in enumerate(positional):
        if needs_all or (argument.kind is inspect.Parameter.POSITIONAL_ONLY and values[argument.name] is not _OMIT):
            required = index + 1
    by_keyword = 0 if needs_all else draw(st.integers(0, len(positional) - required))
    cut = len(positional) - by_keyword
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for index, argument in enumerate(positional):
        value = values[argument.name]
        if index < cut and (needs_all or any(values[a.name] is not _OMIT for a in positional[index:cut])):
            args.append(argument.default if value is _OMIT else value)
        elif value is not _OMIT:
            kwargs[argument.name] = value
    for argument in parameters:
        value = values[argument.name]
        if value is _OMIT:
            continue
        if argument.kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(value)
        elif argument.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[argument.name] = value
        elif argument.kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(value)
    return tuple(args), kwargs
