"""What ``inputs`` draws for one batched function, read off its plan and checked once.

``InputSpec.build`` turns the plan and the options of ``inputs`` into: how to draw each
parameter (its dtypes, its element strategy, or the value of a static one), the dim names
drawn once per example, the ``*name`` core dims drawn as one shape per example, and the
sizes fixed by the layouts or by the user. Every mistake in the options (an unknown dim or
parameter name, a size of the wrong kind, a static parameter with nothing to call it with)
is a ``ValueError`` here, before anything is drawn.

Example:
    >>> from shapedmap.examples import message_passing
    >>> spec = InputSpec.build(message_passing, {}, {}, {"feat": 3}, max_size=4, allow_empty=False)
    >>> spec.names, spec.fixed["feat"], spec.parameters[0].dtypes
    (('graph', 'node', 'feat'), 3, ('float32',))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import hypothesis.strategies as st
import jax
import jax.numpy as jnp

from .._binding import Bindings
from .._checks import bind_fixed_values
from .._grammar import FixedDim, NamedDim, VariadicDim
from .._levels import Placement
from .._plan import Argument, Plan, plan_of
from .._value_types import ArrayType
from ._given import Options, read_given
from ._trees import is_bare_tree

__all__ = ["KEY", "RAW_KEY", "InputSpec", "ParameterSpec"]

# Dtypes drawn for an annotation, in shrinking order: the first few whenever the annotation
# admits them (``Num`` draws float32, int32, complex64, uint32), else the first admitted one
# of the rest (``Float16``, ``Int8``…). 64-bit dtypes only when ``jax_enable_x64`` is on.
_COMMON_DTYPES = ("float32", "int32", "bool", "complex64", "uint32")
_COMMON_DTYPES_X64 = ("float64", "int64", "complex128", "uint64")
_OTHER_DTYPES = ("float16", "bfloat16", "int8", "int16", "uint8", "uint16")
KEY = "key"  # the "dtype" of a PRNG key array (``jax.random.key``)
RAW_KEY = "raw key"  # a legacy uint32 key (``jax.random.PRNGKey``): the key data of one ``KEY``


@dataclass(frozen=True)
class ParameterSpec:
    """How to draw one parameter."""

    argument: Argument
    dtypes: tuple[str, ...] = ()
    elements: st.SearchStrategy[Any] | None = None
    static: st.SearchStrategy[Any] | None = None
    bound: bool = False  # the ``self``/``cls`` of a bound method: never passed
    given: st.SearchStrategy[Any] | None = None  # an array argument's whole value (``given=``)
    # A union of shapes (``PRNGKeyArray``): ``(dtype, one example's shape)`` per member drawn.
    choices: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @property
    def name(self) -> str:
        return self.argument.name

    @property
    def placement(self) -> Placement | None:
        """The layout of the value drawn: a ``SplitKey`` parameter's is one key's."""
        return self.argument.passed


@dataclass(frozen=True)
class InputSpec:
    """Everything ``inputs`` needs, validated once when the strategy is made."""

    plan: Plan
    parameters: tuple[ParameterSpec, ...]
    names: tuple[str, ...]  # dim names drawn once per example, in first-seen order
    core_variadics: tuple[str, ...]  # ``*name`` core dims: one shape per example
    fixed: dict[str, Any]  # sizes (or strategies of sizes or shapes) fixed by the layouts or the user
    batch_names: frozenset[str]
    max_size: int
    allow_empty: bool

    def __repr__(self) -> str:  # Hypothesis prints the strategy's arguments in its notes
        return f"InputSpec({self.plan.function})"

    @classmethod
    def build(
        cls,
        fn: Callable[..., Any],
        static: dict[str, Any],
        elements: dict[str, Any],
        sizes: dict[str, Any],
        max_size: int,
        allow_empty: bool,
        given: dict[str, Any] | None = None,
    ) -> InputSpec:
        """The spec for ``fn`` and the options of ``inputs`` (``ValueError`` for a wrong one)."""
        plan = plan_of(fn)
        where = f"inputs({plan.function})"
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"{where}: max_size must be a positive int, got {max_size!r}")
        given = given or {}
        arguments = list(plan.arguments)
        bound = arguments[0].name if inspect.ismethod(fn) and arguments else None
        options = Options.resolve(plan, static, elements, given, where, bound)
        parameters: list[ParameterSpec] = []
        if inspect.ismethod(fn) and arguments:  # obj.method: its first parameter is bound already
            parameters.append(ParameterSpec(arguments.pop(0), static=st.just(fn.__self__), bound=True))
        parameters += [_parameter_spec(argument, options, where) for argument in arguments]
        # What a partial binds is not drawn (not passed: the partial gives it); its sizes are fixed.
        parameters = [ParameterSpec(replace(p.argument, placement=None)) if p.argument.bound else p for p in parameters]
        names: dict[str, None] = {}
        core_variadics: dict[str, None] = {}
        labels: dict[str, int] = {}  # 'xyz=3': a size the layout fixes, under a name
        for argument in plan.arguments:
            if argument.placement is None:
                continue
            for dim in (dim for leaf in argument.placement.leaves for dim in leaf.batched.dims):
                if isinstance(dim, NamedDim) and not dim.treepath:
                    names.setdefault(dim.name)
                elif isinstance(dim, VariadicDim) and dim.name not in (None, plan.variadic_batch) and not dim.treepath:
                    core_variadics.setdefault(dim.name)
                elif isinstance(dim, FixedDim) and dim.label is not None and dim.label not in plan.fixed_sizes:
                    labels.setdefault(dim.label, dim.size)
        fixed = _check_sizes(where, sizes, plan, names, core_variadics, labels)
        fixed.update(_bound_sizes(plan, fixed, where))
        values = {name: value for name, value in given.items() if name in options.given}
        _check_given_values(where, plan, values, fixed)
        return cls(
            plan=plan,
            parameters=tuple(parameters),
            names=tuple(names),
            core_variadics=tuple(core_variadics),
            fixed=fixed,
            batch_names=frozenset(plan.order),
            max_size=max_size,
            allow_empty=allow_empty,
        )


def _parameter_spec(argument: Argument, options: Options, where: str) -> ParameterSpec:
    name = argument.name
    if argument.placement is not None:
        if name in options.given:
            return ParameterSpec(argument, given=options.given[name])
        if argument.value.kind == "tree" and is_bare_tree(argument.value.hint) and _any_shape(argument.placement):
            raise ValueError(
                f"{where}: give a value for '{name}': given={{{name!r}: ...}} (a value or a strategy, such as "
                f"a model's parameters). Its annotation, {_hint_text(argument.value.hint)}, states neither the "
                "tree's structure nor its leaves' shapes, so a drawn tree would be one the function cannot use"
            )
        array = argument.value.array
        if array.alternatives:
            return ParameterSpec(
                argument, choices=_choices_for(array, name, where), elements=options.elements.get(name)
            )
        dtypes = _dtypes_for(array, name, where)
        return ParameterSpec(argument, dtypes=dtypes, elements=options.elements.get(name))
    if name in options.static:
        return ParameterSpec(argument, static=options.static[name])
    if argument.default is inspect.Parameter.empty and not argument.variadic:
        hint = argument.value.hint
        annotated = f" (annotated {getattr(hint, '__name__', hint)})" if hint is not None else ""
        raise ValueError(
            f"{where}: the static parameter '{name}'{annotated} has no default, so there is "
            f"nothing to call it with; give a value or a strategy: given={{{name!r}: ...}}"
        )
    return ParameterSpec(argument)


def _hint_text(hint: Any) -> str:
    """``PyTree[Float[Array, '...']]``, as written (not ``jaxtyping.PyTree[jaxtyping.Float[...]]``)."""
    text = hint.__name__ if isinstance(hint, type) else repr(hint)
    return text.replace("jaxlib._jax.Array", "Array").replace("jaxtyping.", "")


def _any_shape(placement: Placement) -> bool:
    """Does one example's leaf take any shape (``...``)?"""
    dims = placement.per_example.dims
    return len(dims) == 1 and isinstance(dims[0], VariadicDim) and dims[0].name is None


def _check_given_values(where: str, plan: Plan, values: dict[str, Any], fixed: dict[str, Any]) -> None:
    """Given values (not strategies) fit their layouts, agree with each other and with the sizes
    fixed by name, before anything is drawn."""
    plain = {name: value for name, value in values.items() if not isinstance(value, st.SearchStrategy)}
    read = read_given(plan, plain, where)
    for name, size in read.sizes.items():
        if isinstance(fixed.get(name), int) and fixed[name] != size:
            raise ValueError(f"{where}: '{name}' has size {size} in the values given=, but {name}={fixed[name]}")


def _check_sizes(
    where: str,
    sizes: dict[str, Any],
    plan: Plan,
    names: dict[str, None],
    core_variadics: dict[str, None],
    labels: dict[str, int],
) -> dict[str, Any]:
    """The fixed sizes: the layouts', then the user's (an int, a tuple for ``*name``, or a strategy)."""
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


def _bound_sizes(plan: Plan, fixed: dict[str, Any], where: str) -> dict[str, int]:
    """The sizes of the values a partial binds: drawn arguments must agree with them."""
    if not plan.fixed and not plan.bound_keywords:
        return {}
    bindings = Bindings(plan.function)
    bind_fixed_values(plan, bindings, keywords=True)
    bound = {name: size for name, (size, _) in bindings.sizes.items()}
    for name, size in bound.items():
        if isinstance(fixed.get(name), int) and fixed[name] != size:
            origin = bindings.sizes[name][1]
            raise ValueError(f"{where}: '{name}' has size {size} in {origin}, cannot draw {fixed[name]!r}")
    return bound


def _dtypes_for(array: ArrayType, parameter: str, where: str) -> tuple[str, ...]:
    """The dtypes to draw for an annotation, most common first (see ``_COMMON_DTYPES``)."""
    if array.dtypes is None:
        return ("float32",)
    x64 = bool(jax.config.read("jax_enable_x64"))
    common = _COMMON_DTYPES + (_COMMON_DTYPES_X64 if x64 else ())
    admitted = tuple(name for name in common if array.admits_dtype(jnp.dtype(name)))
    if admitted:
        return admitted
    if array.admits_dtype(jax.eval_shape(lambda: jax.random.key(0)).dtype):
        return (KEY,)
    others = tuple(name for name in _OTHER_DTYPES if array.admits_dtype(jnp.dtype(name)))
    if others:
        return others[:1]
    hint = f"; set jax.config.update('jax_enable_x64', True) for {array.dtype_description()}" if not x64 else ""
    raise ValueError(
        f"{where}: cannot draw arrays for parameter '{parameter}': its annotation admits "
        f"{array.dtype_description()} dtypes, none of which inputs() generates{hint}"
    )


def _choices_for(array: ArrayType, parameter: str, where: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """For a union of shapes: ``(dtype, one example's shape)`` per member drawn, typed keys first.

    A key union (``PRNGKeyArray``) draws typed keys and raw ``uint32`` keys of the default PRNG
    implementation's shape (``uint32[2]`` for threefry): other widths are not keys JAX takes.
    """
    key = jax.eval_shape(lambda: jax.random.key(0))
    choices: list[tuple[str, tuple[int, ...]]] = []
    if array.admits_example(key.dtype, ()):
        raw = tuple(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape)
        choices.append((KEY, ()))
        if array.admits_example(jnp.dtype("uint32"), raw):
            choices.append((RAW_KEY, raw))
        return tuple(choices)
    for member in array.alternatives:
        if all(isinstance(dim, FixedDim) for dim in member.layout.dims):
            shape = tuple(dim.size for dim in member.layout.dims)
            choices += [(dtype, shape) for dtype in _dtypes_for(member, parameter, where)[:1]]
    if not choices:
        raise ValueError(
            f"{where}: cannot draw arrays for parameter '{parameter}': no member of its union of shapes has "
            f"a fixed shape; give it: given={{{parameter!r}: ...}}"
        )
    return tuple(choices)
