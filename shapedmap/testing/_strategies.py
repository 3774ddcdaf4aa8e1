"""Property tests for batched functions: Hypothesis inputs from the annotations, batched == loop.

``inputs(fn)`` is a Hypothesis strategy of ``(args, kwargs)`` that fit a batched function's
layouts: one size per dimension name, shared by every argument (batch and core dims
alike), fixed and symbolic dims honoured, ``*batch`` dims drawn broadcastable, ``#name``
dims sometimes 1, dtypes and PRNG keys per annotation, finite values, small shapes that
shrink to size 1.

``check_batched(fn)`` is the property every batched function must have: for drawn inputs
the batched call equals the naive Python loop over every batch index (calling the
per-example ``fn.fn``), eagerly and under ``jax.jit``, and every output has its annotated
shape and dtype. A failure raises ``BatchedCheckError`` with the inputs' shapes, the first
batch index where the two differ and by how much.

Example:
    >>> from hypothesis import given
    >>> from shapedmap.examples import message_passing
    >>> check_batched(message_passing, max_examples=5)
    >>> @given(inputs(message_passing))
    ... def test_message_passing_is_finite(example):
    ...     args, kwargs = example
    ...     assert jnp.isfinite(message_passing(*args, **kwargs)).all()
"""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import inspect
import itertools
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import AbstractArray, PyTree

from ._annotations import ArrayType
from ._checks import check_arguments, check_results
from ._errors import ShapeError, describe_value
from ._grammar import AnonymousDim, FixedDim, NamedDim, SymbolicDim, VariadicDim, evaluate_symbolic
from ._levels import Placement
from ._plan import Argument, Plan, plan_of

__all__ = ["BatchedCheckError", "check_batched", "inputs"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_OMIT = object()  # a parameter left to its default
_LEAF = object()  # a placeholder for an array leaf in a drawn PyTree structure

# Dtypes drawn for an annotation, in shrinking order: the first few whenever the annotation
# admits them (``Num`` draws float32, int32, complex64, uint32), else the first admitted one
# of the rest (``Float16``, ``Int8``…). 64-bit dtypes only when ``jax_enable_x64`` is on.
_COMMON_DTYPES = ("float32", "int32", "bool", "complex64", "uint32")
_COMMON_DTYPES_X64 = ("float64", "int64", "complex128", "uint64")
_OTHER_DTYPES = ("float16", "bfloat16", "int8", "int16", "uint8", "uint16")
_KEY = "key"
_MAX_VARIADIC_DIMS = 3


class BatchedCheckError(AssertionError):
    """The batched function does not equal its naive loop, or contradicts its annotations.

    Attributes:
        function: the batched function's name.
        reason: ``"raised"``, ``"annotation"``, ``"loop raised"`` or ``"mismatch"``.
        mode: ``"eager"`` or ``"jit"`` (None for the loop).
        batch_index: the first batch index (``{"graph": 1}``) where batched and loop differ,
            or where the loop raised; None otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        function: str,
        reason: str,
        mode: str | None = None,
        batch_index: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.function = function
        self.reason = reason
        self.mode = mode
        self.batch_index = batch_index


# -- the strategy --------------------------------------------------------------------------


def inputs(
    fn: Callable[..., Any],
    /,
    *,
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
    float32; ``Num`` -> float32, int32, complex64 or uint32; ``Key`` -> ``jax.random.key``).

    Args:
        fn: a function made by ``shapedmap.batched``.
        static: values or strategies for static (non-array) parameters, ``{"k":
            st.integers(1, 3)}``. Static parameters not named here keep their defaults.
        elements: a strategy of scalars per array parameter (``{"x": st.floats(0.1, 10)}``),
            instead of the default finite values.
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
        ValueError: for an unknown dim or parameter name, or a static parameter with no
            default and no value in ``static``.

    Example:
        >>> from shapedmap.examples import message_passing
        >>> args, kwargs = inputs(message_passing, feat=3).example()  # doctest: +SKIP
        >>> [a.shape for a in args]  # doctest: +SKIP
        [(2, 4, 4), (2, 4, 3)]
    """
    given_sizes = dict(sizes or {})
    for name in fixed_sizes.keys() & given_sizes.keys():
        raise ValueError(f"inputs: the size of '{name}' is given twice, in sizes= and as {name}=")
    given_sizes.update(fixed_sizes)
    spec = _InputSpec.build(fn, static or {}, elements or {}, given_sizes, max_size, allow_empty)
    return _draw_inputs(spec)


@dataclass(frozen=True)
class _ParameterSpec:
    """How to draw one parameter."""

    argument: Argument
    dtypes: tuple[str, ...] = ()
    elements: st.SearchStrategy[Any] | None = None
    static: st.SearchStrategy[Any] | None = None
    bound: bool = False  # the ``self``/``cls`` of a bound method: never passed

    @property
    def name(self) -> str:
        return self.argument.name

    @property
    def placement(self) -> Placement | None:
        return self.argument.placement


@dataclass(frozen=True)
class _InputSpec:
    """Everything ``inputs`` needs, validated once when the strategy is made."""

    function: str
    plan: Plan
    parameters: tuple[_ParameterSpec, ...]
    names: tuple[str, ...]  # dim names drawn once per example, in first-seen order
    core_variadics: tuple[str, ...]  # ``*name`` core dims: one shape per example
    fixed: dict[str, Any]  # sizes (or shapes) fixed by the layouts or the user
    batch_names: frozenset[str]
    max_size: int
    allow_empty: bool

    @classmethod
    def build(
        cls,
        fn: Callable[..., Any],
        static: dict[str, Any],
        elements: dict[str, Any],
        sizes: dict[str, Any],
        max_size: int,
        allow_empty: bool,
    ) -> _InputSpec:
        plan = plan_of(fn)
        where = f"inputs({plan.function})"
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"{where}: max_size must be a positive int, got {max_size!r}")
        by_name = {argument.name: argument for argument in plan.arguments}
        for option, names in (("static", static), ("elements", elements)):
            for name in names:
                if name not in by_name:
                    raise ValueError(
                        f"{where}: {option}= names {name!r}, which is not a parameter "
                        f"(parameters: {', '.join(by_name) or 'none'})"
                    )
                is_static = by_name[name].placement is None
                if (option == "static") != is_static:
                    kind = "a static (non-array) parameter" if is_static else "an array parameter"
                    use = "static=" if is_static else "elements= (or a size)"
                    raise ValueError(f"{where}: {option}= names {name!r}, which is {kind}; use {use} for it")
        arguments = list(plan.arguments)
        parameters: list[_ParameterSpec] = []
        if inspect.ismethod(fn) and arguments:  # obj.method: its first parameter is bound already
            parameters.append(_ParameterSpec(arguments.pop(0), static=st.just(fn.__self__), bound=True))
        parameters += [_parameter_spec(argument, static, elements, where) for argument in arguments]
        names: dict[str, None] = {}
        core_variadics: dict[str, None] = {}
        labels: dict[str, int] = {}  # 'xyz=3': a size the layout fixes, under a name
        for argument in plan.arguments:
            if argument.placement is None:
                continue
            for dim in argument.placement.batched.dims:
                if isinstance(dim, NamedDim) and not dim.treepath:
                    names.setdefault(dim.name)
                elif isinstance(dim, VariadicDim) and dim.name not in (None, plan.variadic_batch) and not dim.treepath:
                    core_variadics.setdefault(dim.name)
                elif isinstance(dim, FixedDim) and dim.label is not None and dim.label not in plan.fixed_sizes:
                    labels.setdefault(dim.label, dim.size)
        fixed = _check_sizes(where, sizes, plan, names, core_variadics, labels)
        return cls(
            function=plan.function,
            plan=plan,
            parameters=tuple(parameters),
            names=tuple(names),
            core_variadics=tuple(core_variadics),
            fixed=fixed,
            batch_names=frozenset(plan.order),
            max_size=max_size,
            allow_empty=allow_empty,
        )


def _parameter_spec(argument: Argument, static: dict[str, Any], elements: dict[str, Any], where: str) -> _ParameterSpec:
    if argument.placement is None:
        if argument.name in static:
            value = static[argument.name]
            return _ParameterSpec(argument, static=value if isinstance(value, st.SearchStrategy) else st.just(value))
        if argument.default is inspect.Parameter.empty and argument.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            hint = argument.value.hint
            annotated = f" (annotated {getattr(hint, '__name__', hint)})" if hint is not None else ""
            raise ValueError(
                f"{where}: the static parameter '{argument.name}'{annotated} has no default, so there is "
                f"nothing to call it with; pass a value or a strategy: static={{{argument.name!r}: ...}}"
            )
        return _ParameterSpec(argument)
    user_elements = elements.get(argument.name)
    return _ParameterSpec(
        argument, dtypes=_dtypes_for(argument.value.array, argument.name, where), elements=user_elements
    )


def _check_sizes(
    where: str,
    sizes: dict[str, Any],
    plan: Plan,
    names: dict[str, None],
    core_variadics: dict[str, None],
    labels: dict[str, int],
) -> dict[str, Any]:
    fixed: dict[str, Any] = dict(plan.fixed_sizes)
    variadic_batch = plan.variadic_batch
    known = set(names) | set(core_variadics) | ({variadic_batch} if variadic_batch else set())
    for name, size in sizes.items():
        if name in labels and name not in known:
            if size != labels[name]:
                raise ValueError(
                    f"{where}: '{name}' is fixed to {labels[name]} by the layout ('{name}={labels[name]}'), "
                    f"cannot draw {size!r}"
                )
            continue  # the size the layout fixes anyway
        if name not in known:
            raise ValueError(
                f"{where}: {name}= is not a dimension of any argument's layout "
                f"(dimensions: {', '.join(sorted(known)) or 'none'}); output-only dims are not drawn"
            )
        if name in plan.fixed_sizes and size != plan.fixed_sizes[name]:
            raise ValueError(f"{where}: '{name}' has size {plan.fixed_sizes[name]} in the layout, cannot draw {size!r}")
        is_shape = name in core_variadics or name == variadic_batch
        if isinstance(size, st.SearchStrategy):
            fixed[name] = size
        elif is_shape and isinstance(size, tuple) and all(isinstance(s, int) and s >= 0 for s in size):
            fixed[name] = st.just(size)
        elif not is_shape and isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            fixed[name] = size
        else:
            wanted = "a tuple of sizes (it is a '*name' dim)" if is_shape else "a non-negative int"
            raise ValueError(f"{where}: {name}= must be {wanted} or a strategy of them, got {size!r}")
    return fixed


def _dtypes_for(array: ArrayType, parameter: str, where: str) -> tuple[str, ...]:
    """The dtypes to draw for an annotation, most common first (see ``_COMMON_DTYPES``)."""
    if array.dtypes is None:
        return ("float32",)
    x64 = bool(jax.config.read("jax_enable_x64"))
    common = _COMMON_DTYPES + (_COMMON_DTYPES_X64 if x64 else ())
    admitted = tuple(name for name in common if array.admits_dtype(jnp.dtype(name)))
    if admitted:
        return admitted
    if array.admits_dtype(_key_dtype()):
        return (_KEY,)
    others = tuple(name for name in _OTHER_DTYPES if array.admits_dtype(jnp.dtype(name)))
    if others:
        return others[:1]
    hint = f"; set jax.config.update('jax_enable_x64', True) for {array.dtype_description()}" if not x64 else ""
    raise ValueError(
        f"{where}: cannot draw arrays for parameter '{parameter}': its annotation admits "
        f"{array.dtype_description()} dtypes, none of which inputs() generates{hint}"
    )


def _key_dtype() -> Any:
    return jax.eval_shape(lambda: jax.random.key(0)).dtype


@dataclass
class _Context:
    """The draws shared by every argument of one example."""

    sizes: dict[str, int]
    shapes: dict[str, tuple[int, ...]]
    structures: dict[str, Any] = field(default_factory=dict)
    statics: dict[str, Any] = field(default_factory=dict)


@st.composite
def _draw_inputs(draw: st.DrawFn, spec: _InputSpec) -> tuple[tuple[Any, ...], dict[str, Any]]:
    statics = {
        p.name: draw(p.static) if p.static is not None else _OMIT for p in spec.parameters if p.placement is None
    }
    sizes = {name: _draw_size(draw, spec, name) for name in spec.names}
    shapes = {name: _draw_shape(draw, spec, name, spec.max_size) for name in spec.core_variadics}
    context = _Context(sizes, shapes, statics={n: _static_value(spec, n, v) for n, v in statics.items()})
    # Which optional arrays are None, then one broadcastable batch shape per remaining argument.
    present = {
        p.name: not (p.argument.value.optional and draw(st.booleans()))
        for p in spec.parameters
        if p.placement is not None
    }
    batch_shapes = _draw_batch_shapes(draw, spec, [p for p in spec.parameters if present.get(p.name)])
    values: dict[str, Any] = dict(statics)
    for parameter in spec.parameters:
        if parameter.placement is None:
            continue
        if not present[parameter.name]:
            values[parameter.name] = _OMIT if parameter.argument.default is None else None
            continue
        values[parameter.name] = _draw_argument(draw, spec, parameter, context, batch_shapes.get(parameter.name, ()))
    return _arrange(draw, spec, values)


def _draw_size(draw: st.DrawFn, spec: _InputSpec, name: str) -> int:
    fixed = spec.fixed.get(name)
    if isinstance(fixed, int):
        return fixed
    if fixed is not None:
        return draw(fixed)
    smallest = 0 if spec.allow_empty and name in spec.batch_names else 1
    return draw(st.integers(smallest, spec.max_size))


def _draw_shape(draw: st.DrawFn, spec: _InputSpec, name: str | None, max_size: int) -> tuple[int, ...]:
    fixed = spec.fixed.get(name) if name is not None else None
    if fixed is not None:
        return tuple(draw(fixed))
    return tuple(draw(st.lists(st.integers(1, max_size), max_size=2)))


def _draw_batch_shapes(draw: st.DrawFn, spec: _InputSpec, present: list[_ParameterSpec]) -> dict[str, tuple[int, ...]]:
    """``*batch`` shapes, one per argument that has it: mutually broadcastable."""
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
            min_dims=0,
            max_dims=_MAX_VARIADIC_DIMS,
            min_side=smallest,
            max_side=spec.max_size,
        )
    )
    return {p.name: shape for p, shape in zip(carriers, drawn.input_shapes, strict=True)}


def _static_value(spec: _InputSpec, name: str, value: Any) -> Any:
    if value is not _OMIT:
        return value
    argument = next(p.argument for p in spec.parameters if p.name == name)
    return argument.default if argument.default is not inspect.Parameter.empty else None


def _draw_argument(
    draw: st.DrawFn, spec: _InputSpec, parameter: _ParameterSpec, context: _Context, batch_shape: tuple[int, ...]
) -> Any:
    argument = parameter.argument
    placement = parameter.placement
    dtype = draw(st.sampled_from(parameter.dtypes))
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
        shape = _leaf_shape(draw, spec, placement, context, batch_shape, ones, symbolic)
        return _draw_array(draw, dtype, shape, parameter.elements)

    if argument.value.kind == "array":
        return leaf()
    structure = _structure_for(draw, argument, context)
    return _fill(structure, leaf)


def _evaluate(dim: SymbolicDim, context: _Context, spec: _InputSpec) -> int:
    size = evaluate_symbolic(dim, context.sizes, context.statics)
    hypothesis.assume(size >= 1 or (size == 0 and spec.allow_empty))
    return size


def _leaf_shape(
    draw: st.DrawFn,
    spec: _InputSpec,
    placement: Placement,
    context: _Context,
    batch_shape: tuple[int, ...],
    ones: set[int],
    symbolic: dict[int, int],
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
        else:
            key = f"*{dim.name}"
            if dim.name is None or key not in per_leaf:
                per_leaf[key] = _draw_shape(draw, spec, None, spec.max_size)
            shape.extend(per_leaf[key])
    return tuple(shape)


def _draw_array(draw: st.DrawFn, dtype: str, shape: tuple[int, ...], elements: st.SearchStrategy[Any] | None) -> Any:
    if dtype == _KEY:
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


# -- PyTree structures ----------------------------------------------------------------------


def _structure_for(draw: st.DrawFn, argument: Argument, context: _Context) -> Any:
    """A PyTree skeleton with ``_LEAF`` where arrays go, following the annotation."""
    value = argument.value
    if argument.kind is inspect.Parameter.VAR_POSITIONAL:
        return tuple(draw(st.lists(st.just(_LEAF), min_size=1, max_size=2)))
    if argument.kind is inspect.Parameter.VAR_KEYWORD:
        keys = st.sampled_from(["extra_a", "extra_b"])
        return draw(st.dictionaries(keys, st.just(_LEAF), min_size=1, max_size=2))
    name = getattr(value, "structure", None)
    if name is not None:
        if name not in context.structures:
            context.structures[name] = draw(_skeleton(value.hint))
        return context.structures[name]
    return draw(_skeleton(value.hint))


_GENERIC_TREE = st.recursive(
    st.just(_LEAF),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=2).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), children, min_size=1, max_size=2),
    ),
    max_leaves=3,
)


def _skeleton(hint: Any) -> st.SearchStrategy[Any]:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_skeleton(member) for member in arguments if member is not type(None)))
    if hint is None or hint is jax.Array or hint is np.ndarray:
        return st.just(_LEAF)
    if isinstance(hint, type) and issubclass(hint, AbstractArray):
        return st.just(_LEAF)
    if isinstance(hint, type) and issubclass(hint, PyTree):
        return _GENERIC_TREE
    if origin is tuple:
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return st.lists(_skeleton(arguments[0]), min_size=1, max_size=3).map(tuple)
        return st.tuples(*(_skeleton(item) for item in arguments))
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return st.lists(_skeleton(arguments[0]) if arguments else _GENERIC_TREE, min_size=1, max_size=3)
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        child = _skeleton(arguments[1]) if len(arguments) == 2 else _GENERIC_TREE
        return st.dictionaries(st.sampled_from(["a", "b", "c"]), child, min_size=1, max_size=2)
    if origin is not None or isinstance(hint, type):
        return st.from_type(hint)  # a non-array item of a container (``tuple[Float[...], int]``)
    return _GENERIC_TREE


def _fill(structure: Any, leaf: Callable[[], Any]) -> Any:
    if structure is _LEAF:
        return leaf()
    if isinstance(structure, tuple):
        return tuple(_fill(item, leaf) for item in structure)
    if isinstance(structure, list):
        return [_fill(item, leaf) for item in structure]
    if isinstance(structure, dict):
        return {key: _fill(item, leaf) for key, item in structure.items()}
    return structure


# -- arranging values into args and kwargs -----------------------------------------------------


def _arrange(draw: st.DrawFn, spec: _InputSpec, values: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments; trailing positional-or-keyword ones sometimes by keyword."""
    parameters = [p.argument for p in spec.parameters if not p.bound]
    positional = [a for a in parameters if a.kind in _POSITIONAL]
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


# -- the property ----------------------------------------------------------------------------


def check_batched(
    fn: Callable[..., Any],
    /,
    *,
    max_examples: int | None = None,
    jit: bool = True,
    settings: hypothesis.settings | None = None,
    data: st.DataObject | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    static: dict[str, Any] | None = None,
    elements: dict[str, st.SearchStrategy[Any]] | None = None,
    sizes: dict[str, Any] | None = None,
    max_size: int = 4,
    allow_empty: bool = False,
    **fixed_sizes: Any,
) -> None:
    """Check that ``fn`` equals the naive loop over its batch, eagerly and under ``jax.jit``.

    For inputs drawn by ``inputs(fn, ...)``: the batched call must not raise, every output
    must match its annotated (batched) shape and dtype, and for every batch index (every
    combination of every batch name) the batched output at that index must equal
    ``fn.fn`` called on the arguments at that index — an argument that lacks a batch name
    is passed whole, a size-1 broadcast dim at index 0.

    How many examples: ``check_batched`` runs its own Hypothesis test under ``settings``
    (default: the current profile, ``hypothesis.settings.default``, with ``deadline=None``),
    with ``max_examples`` if given. Inside a ``@given`` test, pass ``data=`` (from
    ``st.data()``) instead: one example is drawn from it per call, so the outer test's
    ``@settings``, shrinking and database drive everything.

    Args:
        fn: a function made by ``shapedmap.batched``.
        max_examples: the number of examples (overrides ``settings``).
        jit: also compare ``jax.jit(fn)`` with the loop.
        settings: the Hypothesis settings to run under.
        data: a ``st.data()`` object: check one example drawn from it, run no test of our own.
        rtol, atol: tolerances for inexact dtypes (default by dtype: 1e-5 for 32-bit,
            1e-2 for 16-bit, 1e-10 for 64-bit, both).
        static, elements, sizes, max_size, allow_empty, **fixed_sizes: as for ``inputs``.

    Raises:
        BatchedCheckError: (an ``AssertionError``) on the first failure, after Hypothesis
            shrank it: the inputs' shapes, the first differing batch index, both values
            there and the largest difference.

    Example:
        >>> from shapedmap.examples import pairwise
        >>> check_batched(pairwise, max_examples=10, f=3)
    """
    strategy = inputs(
        fn, static=static, elements=elements, sizes=sizes, max_size=max_size, allow_empty=allow_empty, **fixed_sizes
    )
    checker = _Checker(fn, plan_of(fn), jit, rtol, atol)
    if data is not None:
        if max_examples is not None or settings is not None:
            raise TypeError(
                f"check_batched({checker.function}): with data=, the outer @given test's settings decide how "
                "many examples run; drop max_examples=/settings= or call check_batched outside @given"
            )
        checker.check(data.draw(strategy, label=f"inputs({checker.function})"))
        return
    if hypothesis.currently_in_test_context():
        raise TypeError(
            f"check_batched({checker.function}) was called inside a @given test: that nests one Hypothesis "
            "test in another. Pass data= (from st.data()) to draw one example per outer example, or call it "
            "from a plain test function"
        )
    if settings is None:
        parent = hypothesis.settings.default
        settings = hypothesis.settings(parent, deadline=None, report_multiple_bugs=False)
    if max_examples is not None:
        settings = hypothesis.settings(settings, max_examples=max_examples)

    def test(example: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        checker.check(example)

    test.__name__ = test.__qualname__ = "check_batched_" + re.sub(r"\W", "_", checker.function)
    property_test = hypothesis.settings(settings)(hypothesis.given(strategy)(test))
    # Keep each function's failing examples apart in the example database.
    property_test.hypothesis.inner_test._hypothesis_internal_add_digest = (
        f"shapedmap.check_batched:{getattr(fn, '__module__', '')}.{checker.function}:{getattr(fn, 'signature', '')}"
    ).encode()
    property_test()


class _Checker:
    """One example: call batched (eager, jit), check outputs, loop, compare."""

    def __init__(self, fn: Callable[..., Any], plan: Plan, jit: bool, rtol: float | None, atol: float | None) -> None:
        self.fn = fn
        self.plan = plan
        self.function = plan.function
        self.jit = jit
        self.rtol = rtol
        self.atol = atol
        # A bound method (obj.method) is called through its function, with obj first.
        self.call_fn = fn.__func__ if inspect.ismethod(fn) else fn
        self.bound_first = (fn.__self__,) if inspect.ismethod(fn) else ()
        self.signature = inspect.signature(self.call_fn)
        self._jitted: dict[Any, Callable[[dict[str, Any]], Any]] = {}

    def check(self, example: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        args, kwargs = example
        bound = self.signature.bind(*self.bound_first, *args, **kwargs)
        bound.apply_defaults()
        described = self.describe(bound)
        try:
            output = self.fn(*args, **kwargs)
        except Exception as error:
            self.fail(
                "raised",
                f"the batched call raised {type(error).__name__} on inputs drawn from its own annotations",
                described,
                _indent(str(error)),
                cause=error,
            )
        self.check_annotations(bound, output, described, "eager")
        loop = list(self.loop(bound, described))
        self.compare(output, loop, described, "eager")
        if self.jit:
            dynamic = {a.name: bound.arguments[a.name] for a in self.plan.arguments if a.placement is not None}
            try:
                jitted = self.jitted(bound)(dynamic)
            except Exception as error:
                self.fail(
                    "raised",
                    f"the batched call raised {type(error).__name__} under jax.jit (but not eagerly)",
                    described,
                    _indent(str(error)),
                    mode="jit",
                    cause=error,
                )
            self.check_annotations(bound, jitted, described, "jit")
            self.compare(jitted, loop, described, "jit")

    # -- pieces --------------------------------------------------------------------------

    def jitted(self, bound: inspect.BoundArguments) -> Callable[[dict[str, Any]], Any]:
        """``jax.jit`` of the call with the static arguments closed over; one per static values,
        so examples of shapes seen before reuse the compiled program.

        Static values are told apart by type and ``repr``, not ``==``: ``0.0`` and ``-0.0``, or
        ``(1, 2)`` and ``(1, 2.0)``, compare equal but compute differently.
        """
        statics = tuple(
            (a.name, type(bound.arguments[a.name]), repr(bound.arguments[a.name]))
            for a in self.plan.arguments
            if a.placement is None
        )
        try:
            return self._jitted[statics]
        except (KeyError, TypeError):
            pass

        def call(values: dict[str, Any]) -> Any:
            rebound = inspect.BoundArguments(self.signature, {**bound.arguments, **values})
            return self.call_fn(*rebound.args, **rebound.kwargs)

        compiled = jax.jit(call)
        with contextlib.suppress(TypeError):  # unhashable static values: not cached
            self._jitted[statics] = compiled
        return compiled

    def describe(self, bound: inspect.BoundArguments) -> str:
        parts = []
        for argument in self.plan.arguments:
            value = bound.arguments.get(argument.name)
            if argument.placement is None:
                if argument.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) and not value:
                    continue
                text = repr(value)
                parts.append(f"{argument.name}={text if len(text) <= 40 else text[:37] + '...'}")
            elif argument.value.kind == "array" or value is None:
                parts.append(f"{argument.name}: {describe_value(value)}")
            else:
                shapes = jax.tree_util.tree_map(describe_value, value)
                parts.append(f"{argument.name}: {shapes!r}".replace("'", ""))
        return ", ".join(parts)

    def fail(
        self,
        reason: str,
        what: str,
        described: str,
        details: str,
        *,
        mode: str | None = "eager",
        batch_index: dict[str, Any] | None = None,
        cause: BaseException | None = None,
    ) -> NoReturn:
        message = f"check_batched({self.function}): {what}\n  inputs: {described}\n{details}"
        raise BatchedCheckError(
            message, function=self.function, reason=reason, mode=mode, batch_index=batch_index
        ) from cause

    def check_annotations(self, bound: inspect.BoundArguments, output: Any, described: str, mode: str) -> None:
        """Every output leaf against its batched layout and dtype (even with checks off)."""
        values = [bound.arguments[argument.name] for argument in self.plan.arguments]
        try:
            bindings, _ = check_arguments(self.plan, values)
            check_results(self.plan, bindings, output)
        except ShapeError as error:
            where = " under jax.jit" if mode == "jit" else ""
            self.fail(
                "annotation", f"the output contradicts its annotation{where}", described, _indent(str(error)), mode=mode
            )

    def loop(self, bound: inspect.BoundArguments, described: str) -> Iterator[tuple[dict[str, Any], Any]]:
        """``(batch index, fn.fn output)`` for every batch index, outermost name first."""
        space = _index_space(self.plan, bound)
        for index in itertools.product(*(values for _, values in space)):
            batch_index = {name: i for (name, _), i in zip(space, index, strict=True)}
            updates = {}
            for argument in self.plan.arguments:
                value = bound.arguments.get(argument.name)
                if argument.placement is not None and value is not None:
                    take = functools.partial(_take, argument.placement, batch_index=batch_index, broadcast=True)
                    updates[argument.name] = jax.tree_util.tree_map(take, value)
            rebound = inspect.BoundArguments(self.signature, {**bound.arguments, **updates})
            try:
                output = self.fn.fn(*rebound.args, **rebound.kwargs)
            except Exception as error:
                hint = ""
                if "unbound axis name" in str(error):
                    hint = (
                        "\n  the per-example function uses a collective over a batch name (jax.lax.psum...), "
                        "which a Python loop cannot evaluate: check_batched does not apply to it"
                    )
                self.fail(
                    "loop raised",
                    f"the per-example function {self.function} raised {type(error).__name__} at batch "
                    f"index {_index_text(batch_index)} of the loop",
                    described,
                    _indent(str(error)) + hint,
                    mode=None,
                    batch_index=batch_index,
                    cause=error,
                )
            yield batch_index, output

    def compare(self, output: Any, loop: list[tuple[dict[str, Any], Any]], described: str, mode: str) -> None:
        results = output if self.plan.returns_tuple else (output,)
        for batch_index, expected in loop:
            per_example = expected if self.plan.returns_tuple else (expected,)
            for position, (result, batched_value, loop_value) in enumerate(
                zip(self.plan.results, results, per_example, strict=True)
            ):
                place = f"result {position}" if self.plan.returns_tuple else "the return value"
                take = functools.partial(_take, result.placement, batch_index=batch_index)
                got = jax.tree_util.tree_map(take, batched_value)
                problem = self.difference(got, loop_value)
                if problem is not None:
                    how = "under jax.jit" if mode == "jit" else "eagerly"
                    self.fail(
                        "mismatch",
                        f"the batched call ({how}) differs from the loop over the batch",
                        described,
                        f"  first differing batch index: {_index_text(batch_index)}\n  {place}{problem}",
                        mode=mode,
                        batch_index=batch_index,
                    )

    def difference(self, batched: Any, loop: Any) -> str | None:
        batched_leaves, batched_tree = jax.tree_util.tree_flatten_with_path(batched)
        loop_leaves, loop_tree = jax.tree_util.tree_flatten_with_path(loop)
        if batched_tree != loop_tree:
            return f" there: the batched tree structure {batched_tree} differs from the loop's {loop_tree}"
        for (path, got), (_, want) in zip(batched_leaves, loop_leaves, strict=True):
            problem = _leaf_difference(_host(got), _host(want), self.rtol, self.atol)
            if problem is not None:
                where = f" at {jax.tree_util.keystr(path)}" if path else ""
                return f"{where} there:\n{problem}"
        return None


def _host(value: Any) -> np.ndarray:
    """A NumPy copy of an output leaf (PRNG keys as their key data)."""
    if hasattr(value, "dtype") and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        value = jax.random.key_data(value)
    return np.asarray(value)


def _tolerances(dtype: np.dtype[Any], rtol: float | None, atol: float | None) -> tuple[float, float]:
    bits = dtype.itemsize * 8 // (2 if np.issubdtype(dtype, np.complexfloating) else 1)
    default = 1e-2 if bits <= 16 else 1e-5 if bits <= 32 else 1e-10
    return (default if rtol is None else rtol), (default if atol is None else atol)


def _leaf_difference(got: np.ndarray, want: np.ndarray, rtol: float | None, atol: float | None) -> str | None:
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"    batched: {_short(got)}\n    loop:    {_short(want)}\n    (shape or dtype differ)"
    inexact = jnp.issubdtype(want.dtype, jnp.inexact)
    if inexact:
        r, a = _tolerances(want.dtype, rtol, atol)
        wide = np.complex128 if jnp.issubdtype(want.dtype, jnp.complexfloating) else np.float64
        got_wide, want_wide = got.astype(wide), want.astype(wide)
        close = np.isclose(got_wide, want_wide, rtol=r, atol=a, equal_nan=True)
    else:
        close = got == want
    if close.all():
        return None
    position = tuple(int(i) for i in np.argwhere(~close)[0])
    text = f"    batched: {_values(got)}\n    loop:    {_values(want)}\n"
    if inexact:
        difference = np.abs(got_wide - want_wide)
        worst = float(np.nanmax(np.where(np.isnan(difference), -np.inf, difference)))
        text += f"    max |batched - loop| = {worst:.6g} (rtol={r:g}, atol={a:g}); first at element {position}"
    else:
        text += f"    first different element: {position}"
    return text


def _short(array: np.ndarray) -> str:
    return f"{array.dtype}{list(array.shape)} {_values(array)}"


def _values(array: np.ndarray) -> str:
    text = np.array2string(array, threshold=24, precision=6, separator=", ")
    return text.replace("\n", "\n" + " " * 13)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _index_text(batch_index: dict[str, Any]) -> str:
    return ", ".join(f"{name}={index}" for name, index in batch_index.items()) or "(no batch dims)"


# -- indexing along batch dims by name ---------------------------------------------------------


def _batch_axes(placement: Placement, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """``(batch name, its axes, their sizes)`` for each batch token of an array of ``shape``."""
    batch_at = dict(placement.batch)
    found = []
    axis = 0
    for index, size in enumerate(placement.batched.split(tuple(shape))):
        sizes = size if isinstance(size, tuple) else (size,)
        if index in batch_at:
            found.append((batch_at[index], tuple(range(axis, axis + len(sizes))), sizes))
        axis += len(sizes)
    return found


def _take(placement: Placement, leaf: Any, batch_index: dict[str, Any], *, broadcast: bool = False) -> Any:
    """``leaf`` at ``batch_index`` (a size-1 broadcast axis at 0 when ``broadcast``)."""
    index: list[Any] = [slice(None)] * len(leaf.shape)
    for name, axes, sizes in _batch_axes(placement, leaf.shape):
        position = batch_index[name]
        # '*batch' positions are tuples, right-aligned with the broadcast shape.
        position = position[len(position) - len(axes) :] if isinstance(position, tuple) else (position,)
        for axis, size, i in zip(axes, sizes, position, strict=True):
            index[axis] = 0 if broadcast and size == 1 else i
    return leaf[tuple(index)]


def _index_space(plan: Plan, bound: inspect.BoundArguments) -> list[tuple[str, list[Any]]]:
    """For each batch name (outermost first): its indices, from the arguments' shapes."""
    sizes: dict[str, int] = {}
    shapes: list[tuple[int, ...]] = []
    core_sizes: dict[str, int] = {}
    for argument in plan.arguments:
        value = bound.arguments.get(argument.name)
        if argument.placement is None or value is None:
            continue
        for leaf in jax.tree_util.tree_leaves(value):
            for name, _, dims in _batch_axes(argument.placement, leaf.shape):
                if name == plan.variadic_batch:
                    shapes.append(dims)
                elif dims[0] != 1 or name not in sizes:
                    sizes[name] = dims[0]
            layout = argument.placement.batched
            for dim, size in zip(layout.dims, layout.split(tuple(leaf.shape)), strict=True):
                if isinstance(dim, NamedDim) and not (dim.broadcastable and size == 1):
                    core_sizes.setdefault(dim.name, size)
    space = []
    for name in plan.order:
        if name == plan.variadic_batch:
            space.append((name, list(np.ndindex(*np.broadcast_shapes(*shapes))) if shapes else [()]))
            continue
        size = sizes.get(name, plan.fixed_sizes.get(name, core_sizes.get(name)))
        if size is None:
            raise TypeError(f"check_batched({plan.function}): cannot tell the size of the batch dim '{name}'")
        space.append((name, list(range(size))))
    return space
