"""The ``@batched`` decorator and the call path of a batched function.

Decoration reads the annotations and builds the plan (``annotation`` -> ``plan``), so a
spec that can never work fails right there. A call then:

1. binds the arguments with the signature (keyword arguments follow their layouts,
   defaults apply, non-array parameters are held static) and converts NumPy arrays and
   Python scalars to JAX arrays;
2. checks the static values against their annotations, and every array argument against
   its batched layout (``check``) — the array check is remembered per abstract signature
   (shapes, dtypes, weak types, array types, x64), the only things it depends on;
3. runs the nest of ``jax.vmap`` (one per batch name, ``axis_name`` each) over the
   per-example function, whose parameters ``jaxtyped(typechecker=beartype)`` checks inside
   the map on the first call of each abstract signature;
4. checks every result against its batched layout.

Example:
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
    >>> message_passing.in_axes
    {'graph': (0, 0)}
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import sys
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr
from jaxtyping import TypeCheckError

from .annotation import UnresolvedAnnotation, read_function, unwrap_partial
from .cache import BoundedCache
from .check import (
    Bindings,
    check_arguments,
    check_results,
    check_results_per_example,
    check_static_values,
    convert_arguments,
    is_result_leaf,
)
from .config import config
from .docs import with_shapes_section
from .errors import ShapeError, SpecError, describe_value
from .layout import SymbolicDim
from .plan import Expansion, Level, Plan, expansion_for, make_plan
from .sharding import Sharding, make_sharding
from .signatures import checked_per_example, signature_of

__all__ = ["Batched", "batched"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

# The values of the call being mapped, read by the per-example function inside the map: the
# vmap nests are built once, so they cannot close over one call's static arguments.
_CALL_VALUES: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("shapedmap_call_values")


def batched(
    fn: Callable[..., Any] | str | None = None,
    /,
    spec: str | None = None,
    *,
    layouts: dict[str, str] | None = None,
    out: str | tuple[str, ...] | None = None,
    check: bool = True,
    shard: dict[str, str | tuple[str, ...]] | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Any:
    """Batch a per-example function over named dims, deriving every ``vmap`` axis.

    Args:
        fn: the per-example function, annotated with jaxtyping (``Float[Array, "n"]``).
        spec: ``"graph"`` / ``"graph time"`` (batch dims leading on every array parameter
            and result), ``"*batch"`` (any number of broadcast leading dims), or a full
            signature ``"b a, a c -> b c"`` (one layout per array parameter, then per result).
        layouts: ``{"param": "layout"}`` overriding the spec for those parameters; a
            layout without a batch name leaves that argument unmapped.
        out: the result layout, or a tuple of them for a tuple result.
        check: ``False`` turns the shape checks off for this function.
        shard: ``{"graph": "data"}`` splits batch dims over mesh axes (a name or a tuple of
            names); see ``shapedmap.sharding``.
        mesh: the ``jax.sharding.Mesh`` for ``shard``; default: the one set with
            ``jax.set_mesh`` at call time.

    Returns:
        A function with the batched signature and annotations; ``.fn``, ``.signature``,
        ``.in_axes`` and ``.out_axes`` show what was derived, ``.partition_specs(*args)`` the
        shardings of a call.

    Raises:
        SpecError: when the spec can never work (at decoration, not at call time).

    Example:
        >>> mv = batched(vv, "b a, a -> b")   # vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]
        >>> mv.in_axes, mv.out_axes
        ({'b': (0, None)}, {'b': 0})
    """
    if fn is None or isinstance(fn, str):
        if fn is not None and spec is not None:
            raise SpecError(f"batched got two specs, {fn!r} and {spec!r}")
        spec = fn if fn is not None else spec

        def decorate(function: Callable[..., Any]) -> Any:
            return batched(function, spec, layouts=layouts, out=out, check=check, shard=shard, mesh=mesh)

        return decorate
    if isinstance(fn, classmethod | staticmethod):
        return type(fn)(batched(fn.__func__, spec, layouts=layouts, out=out, check=check, shard=shard, mesh=mesh))
    if not callable(fn):
        raise SpecError(f"batched expects a function, got {describe_value(fn)}")
    if not isinstance(check, bool):
        raise SpecError(f"check= must be True or False, got {describe_value(check)}")
    return Batched(fn, (spec, layouts, out), check, (shard, mesh), defined_in=_caller_module()).wrapper


def _caller_module() -> str | None:
    """The module that called ``batched`` (``functools.wraps`` gives the wrapper ``fn``'s)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return None if frame is None else frame.f_globals.get("__name__")


class Batched:
    """Everything behind one batched function: its plan, its checker, its caches.

    The plan is built when the decorator is applied. If an annotation names something not
    defined yet (a forward reference, such as a method annotated with its own class), it is
    built at the first call instead, and a name still undefined then is a ``SpecError``.
    ``wrapper`` is the plain function users hold (a function, so it binds as a method).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        options: tuple[Any, Any, Any],
        check: bool,
        shard_options: tuple[Any, Any],
        *,
        defined_in: str | None = None,
    ) -> None:
        self.fn = fn
        self.check = check
        self.defined_in = defined_in  # the module whose code made it (documented and tested there)
        self.plan: Plan | None = None
        self.sharding: Sharding | None = None
        self.checked_fn: Callable[..., Any] = fn  # parameters and results checked per example
        self.results_checked_fn: Callable[..., Any] = fn  # results checked per example
        self.signature: inspect.Signature | None = None
        self.positional_only_call = False
        self.statics_free = False  # every parameter positional and mapped: no per-example shim needed
        self.levels_vary = False  # the levels depend on the call's sizes (*batch, #graph, unsized)
        # Per abstract signature: (the arguments' Bindings.snapshot, whether the results passed for
        # good, whether the vmaps must bind the batch names).
        self.checked_shapes: BoundedCache[tuple[tuple[Any, ...], bool, bool]] | None = None
        self.names_always = False  # set when a body used a name its jaxpr did not show
        self.unchecked_uses: BoundedCache[bool] = BoundedCache(maxsize=512)  # body_uses_names, checks off
        self.has_statics = False
        self.nests: BoundedCache[Callable[..., Any]] = BoundedCache(maxsize=64)
        self.static_expansion: Expansion | None = None  # the levels, when they do not depend on the call
        self._options = options
        self._shard_options = shard_options
        self._lock = threading.Lock()
        self.wrapper = _make_wrapper(fn, self)
        with contextlib.suppress(UnresolvedAnnotation):
            self._build()

    def resolve(self) -> Plan:
        """The plan, building it (and describing the wrapper) on first use."""
        if self.plan is None:
            try:
                self._build()
            except UnresolvedAnnotation as error:
                raise SpecError(str(error)) from None
        return self.plan

    def _build(self) -> None:
        with self._lock:
            if self.plan is not None:
                return
            plan = make_plan(read_function(self.fn), *self._options)
            if hasattr(unwrap_partial(self.fn), "__shapedmap__"):
                # Batched again: name the layer, or every layer's errors would read 'vv: ...'.
                plan = dataclasses.replace(plan, function=f"{plan.function} [{plan.signature_text()}]")
            self.sharding = make_sharding(plan, *self._shard_options)
            checked = self.fn if _already_checked(self.fn) else checked_per_example(self.fn, plan)
            self.checked_fn = _checking_results(checked, plan)
            self.results_checked_fn = _checking_results(self.fn, plan)
            self.signature = plan.types.signature
            self.positional_only_call = all(a.kind in _POSITIONAL for a in plan.arguments)
            self.statics_free = self.positional_only_call and all(a.placement is not None for a in plan.arguments)
            self.levels_vary = plan.levels is None or bool(plan.unsized_levels)
            self.static_expansion = None if self.levels_vary else Expansion(plan.levels, ())
            self.has_statics = any(argument.placement is None for argument in plan.arguments)
            # f-string dims ({self.n}) read argument values: then nothing is remembered.
            self.checked_shapes = None if _has_fstring_dims(plan) else BoundedCache(maxsize=512)
            _describe(self.wrapper, plan, self.sharding)
            self.plan = plan  # published last: other threads see a complete runner

    # -- binding --------------------------------------------------------------------------

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """One value per parameter, in signature order (``*args`` a tuple, ``**kwargs`` a dict)."""
        if not kwargs and self.positional_only_call and len(args) == len(self.plan.arguments):
            return list(args)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self.plan.function}: {error}") from None
        bound.apply_defaults()
        return [bound.arguments[argument.name] for argument in self.plan.arguments]

    def recompose(self, values: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for the per-example function."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for argument, value in zip(self.plan.arguments, values, strict=True):
            if argument.kind in _POSITIONAL:
                args.append(value)
            elif argument.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(value)
            elif argument.kind is inspect.Parameter.KEYWORD_ONLY:
                kwargs[argument.name] = value
            else:
                kwargs.update(value)
        return args, kwargs

    # -- the call -------------------------------------------------------------------------

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        plan = self.plan or self.resolve()
        values = self.bind(args, kwargs)
        if not (self.check and config.checks):
            # Unchecked; levels or placement that depend on the call still read its sizes.
            needs_sizes = self.levels_vary or self.sharding is not None
            bindings = check_arguments(plan, values, abstract=False)[0] if needs_sizes else None
            key = self.shapes_key(values)
            uses = (
                True
                if key is None
                else self.unchecked_uses.get_or_compute(key, lambda: self.body_uses_names(values, bindings))
            )
            return self.map(values, bindings, self.fn, self.binds_names(uses))
        values = convert_arguments(plan, values)
        check_static_values(plan, values)
        key = self.shapes_key(values) if self.checked_shapes is not None else None
        known = self.checked_shapes.get(key) if key is not None else None
        if known is not None and known[1] and not self.levels_vary and self.sharding is None:
            return self.run(values, self.static_expansion, self.fn, named=self.binds_names(known[2]))
        if known is None:
            bindings, values = check_arguments(plan, values, abstract=False)
            inner = self.checked_fn  # the first call with these shapes: checked per example too
            uses = self.body_uses_names(values, bindings) if key is not None else True
        else:
            # Results not passed for good (static values may change them) are checked again.
            inner = self.fn if known[1] else self.results_checked_fn
            bindings, uses = Bindings.restore(plan.function, known[0]), known[2]
        output = self.map(values, bindings, inner, self.binds_names(uses))
        if known is None or not known[1]:
            check_results(plan, bindings, output)
            if key is not None:
                # With no static argument, the results' shapes follow from the key alone (JAX's own
                # purity contract, which jit's cache relies on too): checked once. Static values
                # (an object's state, say) can change them between calls: checked on every call.
                self.checked_shapes.add(key, (bindings.snapshot(), not self.has_statics, uses))
        return output

    def shapes_key(self, values: list[Any]) -> Any:
        """What the argument check depends on: per array leaf its shape, dtype, weak type and type.

        None when anything is unreadable (the checks then run and name the argument).
        """
        parts: list[Any] = [jax.config.jax_enable_x64]
        try:
            for index in self.plan.array_arguments:
                value = values[index]
                if isinstance(value, jax.Array):
                    parts.append((value.shape, value.dtype, value.aval.weak_type, type(value)))
                else:
                    leaves, treedef = jax.tree_util.tree_flatten(value)
                    parts.append((treedef, *((x.shape, x.dtype, x.aval.weak_type, type(x)) for x in leaves)))
            key = tuple(parts)
            hash(key)
        except Exception:
            return None
        return key

    def binds_names(self, uses: bool) -> bool:
        """Do this call's vmaps bind the batch names (``axis_name=``)?

        In an eager call a bound name sends every ``jnp`` call of the body through JAX's slower
        Python dispatch, so they are bound only when the body uses one (``uses``: see
        ``body_uses_names``). Under any transformation (``jit``, ``grad``, an outer ``vmap``, even
        one the arguments do not come from) they cost nothing and are bound, so that an inner
        name shadows an outer one of the same name; and when sharded.
        """
        return uses or self.names_always or self.sharding is not None or not _no_trace_active()

    def body_uses_names(self, values: list[Any], bindings: Bindings | None) -> bool:
        """Does the body use a batch name (a collective such as ``psum(x, "graph")``, ``axis_index``)?

        Read off the body's jaxpr, traced with the batch names in its axis environment; asked once
        per abstract signature. Not asked (True) under a transformation, where the names are bound
        anyway. A use no jaxpr shows (``jax.lax.axis_size``) still works: see ``run``.
        """
        if self.sharding is not None or self.names_always or not _no_trace_active():
            return True
        token = None
        try:
            expansion = self.expansion(values, bindings)
            if all(level.axis_name is None for level in expansion.levels):
                return False
            per_example, sizes = self.per_example_values(values, expansion)
            axis_env = [(level.axis_name, sizes[level.key]) for level in expansion.levels if level.axis_name]
            inner = self.fn if self.statics_free else self.per_example(self.fn)
            token = None if self.statics_free else _CALL_VALUES.set(values)
            jaxpr = jax.make_jaxpr(inner, axis_env=axis_env)(*(per_example[i] for i in self.plan.array_arguments))
        except Exception:
            return True  # the call itself will raise it, with the names bound
        finally:
            if token is not None:
                _CALL_VALUES.reset(token)
        return _mentions(jaxpr.jaxpr, {name for name, _ in axis_env})

    def map(self, values: list[Any], bindings: Bindings | None, inner: Callable[..., Any], named: bool = True) -> Any:
        """Run the nest of ``vmap`` for this call (placed on the mesh when sharded)."""
        expansion = self.expansion(values, bindings)
        if self.sharding is None:
            return self.run(values, expansion, inner, named=named)
        return self.sharding.call(
            self.plan,
            values,
            bindings,
            lambda placed, wrap: self.run(placed, expansion, inner, wrap),
            lambda: self.result_shapes(values, expansion),
        )

    def expansion(self, values: list[Any], bindings: Bindings | None) -> Expansion:
        """The levels of this call: the plan's own, or settled by the call's sizes."""
        plan = self.plan
        if not self.levels_vary:
            return self.static_expansion
        leaf_shapes = [[tuple(leaf.shape) for leaf in jax.tree.leaves(values[i])] for i in plan.array_arguments]
        sizes = {name: size for name, (size, _) in bindings.sizes.items()}
        variadic = bindings.variadics.get(plan.variadic_batch)
        return expansion_for(plan, leaf_shapes, sizes, () if variadic is None else variadic[0])

    def run(
        self,
        values: list[Any],
        expansion: Expansion,
        inner: Callable[..., Any],
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
        *,
        sharded: bool = True,
        named: bool = True,
    ) -> Any:
        """Call the ``vmap`` nest over ``inner`` on this call's arrays.

        ``wrap`` wraps the nest (sharding on Explicit mesh axes); ``sharded=False`` leaves out
        ``spmd_axis_name`` (to trace the results' shapes without a mesh); ``named=False`` leaves
        out the axis names (see ``binds_names``).
        """
        plan = self.plan
        mapped = [values[i] for i in plan.array_arguments]
        if expansion.squeeze:
            mapped = [
                value if not axes else jax.tree.map(lambda leaf, axes=axes: jax.numpy.squeeze(leaf, axes), value)
                for value, axes in zip(mapped, expansion.squeeze, strict=True)
            ]
        # The plan's own levels need no hashing; levels settled per call are keyed by value.
        levels_key = "plan" if expansion is self.static_expansion else expansion.levels
        nest = self.nests.get_or_compute(
            (levels_key, inner, sharded, named),
            lambda: self.nest(expansion.levels, inner, sharded, named),
        )
        if wrap is not None:
            nest = wrap(nest)
        token = None if self.statics_free else _CALL_VALUES.set(values)
        try:
            return nest(*mapped)
        except TypeCheckError as error:
            raise ShapeError(
                f"{plan.function}: the per-example check failed {_inside(plan, expansion.levels, mapped)}:\n"
                + "\n".join("    " + line for line in str(error).splitlines())
            ) from error
        except _UnmappedResultVaries as error:
            level = error.level
            name = level.batch_name if level.index is None else f"*{level.batch_name}"
            advice = f"Add '{name}' to the output layout"
            if level.axis_name is not None:  # only a named dim can be reduced by name
                advice += f", or reduce over it inside (e.g. jax.lax.psum(x, '{name}'))"
            # The results this level does not map: one of them varies.
            unmapped = (
                [f"result {i}" for i, axis in enumerate(level.out_axes) if axis is None]
                if plan.returns_tuple
                else ["the return value"]
            )
            lack = "its layout has" if len(unmapped) == 1 else "their layouts have"
            raise ShapeError(
                f"{plan.function}: {' or '.join(unmapped)} varies over the batch dim '{name}', but {lack} "
                f"no '{name}'. {advice}"
            ) from None
        except Exception as error:
            if isinstance(error, NameError) and not named and "unbound axis name" in str(error):
                # The body used a batch name its jaxpr did not show: bind the names from now on.
                self.names_always = True
                return self.run(values, expansion, inner, wrap, sharded=sharded, named=True)
            note = f"(raised {_inside(plan, expansion.levels, mapped)}; shapes there are per example"
            if isinstance(error, NameError):
                names = ", ".join(f"'{level.axis_name}'" for level in expansion.levels if level.axis_name)
                note += f"; the batch names bound there: {names or 'none'}"
            error.add_note(note + ")")
            raise
        finally:
            if token is not None:
                _CALL_VALUES.reset(token)

    def nest(
        self, levels: tuple[Level, ...], inner: Callable[..., Any], sharded: bool, named: bool = True
    ) -> Callable[..., Any]:
        """The nest of ``jax.vmap`` over ``inner``, outermost level first; built once per levels."""
        plan = self.plan
        vmapped = inner if self.statics_free else self.per_example(inner)
        for level in reversed(levels):
            out_axes = level.out_axes if plan.returns_tuple else level.out_axes[0]
            unmapped = all(axis is None for axis in level.in_axes)
            vmapped = jax.vmap(
                vmapped,
                in_axes=level.in_axes,
                out_axes=out_axes,
                axis_name=level.axis_name if named else None,
                axis_size=level.size if unmapped else None,
                spmd_axis_name=self.sharding.spmd_axis_name(level.key) if sharded and self.sharding else None,
            )
            if None in level.out_axes:
                vmapped = _naming_unmapped_results(vmapped, level)
        if not levels or any(None in level.out_axes for level in levels):
            vmapped = _as_jax_results(vmapped)  # what vmap does to the results it maps
        return vmapped

    def per_example(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        """``inner`` called with the mapped arrays put back among this call's other arguments."""
        plan = self.plan

        def per_example(*mapped_values: Any) -> Any:
            values = list(_CALL_VALUES.get())
            for index, value in zip(plan.array_arguments, mapped_values, strict=True):
                values[index] = value
            call_args, call_kwargs = self.recompose(values)
            return inner(*call_args, **call_kwargs)

        return per_example

    def per_example_values(self, values: list[Any], expansion: Expansion) -> tuple[list[Any], dict[str, int]]:
        """What the body sees inside the nest, and the size of each level (by its key).

        Each array argument becomes ``jax.ShapeDtypeStruct``s with its squeezed size-1 axes and
        every level's axis removed; the other values stay as they are.
        """
        values, sizes = list(values), {}
        for position, index in enumerate(self.plan.array_arguments):
            squeeze = expansion.squeeze[position] if expansion.squeeze else ()

            def per_example(leaf: Any, position: int = position, squeeze: tuple[int, ...] = squeeze) -> Any:
                squeezed = {axis % leaf.ndim for axis in squeeze} if leaf.ndim else set()
                shape = [size for axis, size in enumerate(leaf.shape) if axis not in squeezed]
                for level in expansion.levels:
                    axis = level.in_axes[position]
                    if axis is not None:
                        sizes.setdefault(level.key, shape[axis])
                        del shape[axis]
                weak_type = getattr(getattr(leaf, "aval", None), "weak_type", False)
                return jax.ShapeDtypeStruct(tuple(shape), leaf.dtype, weak_type=weak_type)

            if values[index] is not None:
                values[index] = jax.tree.map(per_example, values[index])
        for level in expansion.levels:  # a level no argument maps has its size in the plan
            sizes.setdefault(level.key, level.size)
        return values, sizes

    def result_shapes(self, values: list[Any], expansion: Expansion) -> Any:
        """The results' shapes and dtypes for a call, traced without running or placing anything."""
        indices = self.plan.array_arguments

        def trace(*mapped: Any) -> Any:
            full = list(values)
            for index, value in zip(indices, mapped, strict=True):
                full[index] = value
            return self.run(full, expansion, self.fn, sharded=False)

        return jax.eval_shape(trace, *(values[i] for i in indices))

    def partition_specs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``{parameter: PartitionSpec (a PyTree of them for a PyTree), ..., "return": ...}`` for a call.

        Raises the call's ``ShapeError`` for arguments that do not fit, or (with a mesh given or set)
        a sharded batch its mesh axes cannot split evenly.
        """
        plan = self.resolve()
        if self.sharding is None:
            raise SpecError(f"{plan.function}: partition_specs needs shard= (this function is not sharded)")
        bindings, values = check_arguments(plan, self.bind(args, kwargs))
        if self.sharding.known_mesh() is not None:  # specs the mesh cannot use get the call's error
            self.sharding.check_divisible(self.sharding.mesh_for_call(), bindings)
        specs: dict[str, Any] = {}
        for index in plan.array_arguments:
            argument = plan.arguments[index]
            specs[argument.name] = jax.tree.map(
                lambda leaf, placement=argument.placement: self.sharding.partition_spec(
                    placement, tuple(leaf.shape), bindings
                ),
                values[index],
            )
        shapes = self.result_shapes(values, self.expansion(values, bindings))
        specs["return"] = self.sharding.result_specs(plan, shapes, bindings)
        return specs


try:  # JAX's own test that no transformation is tracing here (what jax.set_mesh checks)
    from jax._src.core import trace_state_clean as _no_trace_active
except ImportError:  # pragma: no cover - then never take a call for eager: always bind the names

    def _no_trace_active() -> bool:
        return False


def _mentions(jaxpr: Any, names: set[str]) -> bool:
    """Does any equation of ``jaxpr`` (or of a jaxpr inside one) name one of ``names``?"""
    return any(_mentions_in(value, names) for equation in jaxpr.eqns for value in equation.params.values())


def _mentions_in(value: Any, names: set[str]) -> bool:
    if isinstance(value, str):
        return value in names
    if isinstance(value, tuple | list | set | frozenset):
        return any(_mentions_in(item, names) for item in value)
    if isinstance(value, ClosedJaxpr):
        return _mentions(value.jaxpr, names)
    if isinstance(value, Jaxpr):
        return _mentions(value, names)
    return False


def _as_jax_results(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` whose Python-number and NumPy result leaves become JAX arrays.

    ``jax.vmap`` converts the results it maps; one it does not map (``out_axes=None``), or a
    call with no batch dim to map, would come back as the body returned it.
    """

    def converted(*args: Any) -> Any:
        return jax.tree.map(_as_jax_leaf, function(*args))

    return converted


def _as_jax_leaf(leaf: Any) -> Any:
    if isinstance(leaf, bool | int | float | complex) or (
        isinstance(leaf, np.ndarray | np.generic) and is_result_leaf(leaf)
    ):
        return jax.numpy.asarray(leaf)
    return leaf


def _checking_results(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    """``fn`` whose results are checked per example, before ``jax.vmap`` reads them."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        output = fn(*args, **kwargs)
        check_results_per_example(plan, output)
        return output

    checked.__wrapped__ = fn  # type: ignore[attr-defined]
    return checked


class _UnmappedResultVaries(Exception):
    """JAX's "mapped output but out_axes is None", tagged with the level that raised it."""

    def __init__(self, level: Level) -> None:
        super().__init__(level.key)
        self.level = level


def _naming_unmapped_results(vmapped: Callable[..., Any], level: Level) -> Callable[..., Any]:
    """The ``vmap`` of a level with an unmapped result, telling which level a varying result broke."""

    def call(*args: Any) -> Any:
        try:
            return vmapped(*args)
        except ValueError as error:
            # JAX's wording, named and unnamed axes; the innermost such level tags it first.
            if "but out_axes is None" in str(error) or "got axis spec None but output was batched" in str(error):
                raise _UnmappedResultVaries(level) from error
            raise

    return call


def _inside(plan: Plan, levels: tuple[Level, ...], mapped: list[Any]) -> str:
    """``inside the map of message_passing over 'graph' (size 13)``."""
    described = ", ".join(
        f"'{level.key}'" + (f" (size {size})" if size is not None else "")
        for level, size in zip(levels, _level_sizes(levels, mapped), strict=True)
    )
    maps = "map" if len(levels) == 1 else "maps"
    return f"inside the {maps} of {plan.function} over {described}"


def _level_sizes(levels: tuple[Level, ...], mapped: list[Any]) -> list[int | None]:
    """The size of each level, read off the mapped arguments as each vmap removes its axis."""
    shapes = []
    for value in mapped:
        leaves = jax.tree_util.tree_leaves(value)
        shapes.append(list(leaves[0].shape) if leaves and hasattr(leaves[0], "shape") else None)
    sizes = []
    for level in levels:
        size = level.size
        for shape, axis in zip(shapes, level.in_axes, strict=True):
            if axis is None or shape is None or not -len(shape) <= axis < len(shape):
                continue
            removed = shape.pop(axis)  # this level's vmap removes the axis for the levels inside
            size = removed if size is None else size
        sizes.append(size)
    return sizes


def _already_checked(fn: Any) -> bool:
    """Is ``fn`` checked per call already (a batched function, or jaxtyped by hand or the import hook)?

    jaxtyped's wrapper is recognised the way jaxtyped itself recognises it on dataclasses: by the
    module its code lives in.
    """
    current = fn
    while current is not None:
        if hasattr(current, "__shapedmap__"):
            return True
        if getattr(current, "__globals__", {}).get("__name__") == "jaxtyping._decorator":
            return True
        current = getattr(current, "__wrapped__", None)
    return False


def _has_fstring_dims(plan: Plan) -> bool:
    return any(
        isinstance(dim, SymbolicDim) and "{" in dim.expression
        for placement in plan.placements()
        for dim in placement.batched.dims
    )


# -- the wrapper users hold ----------------------------------------------------------------


def _make_wrapper(fn: Callable[..., Any], runner: Batched) -> Any:
    @functools.wraps(unwrap_partial(fn))
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return runner(args, kwargs)

    wrapper.__shapedmap__ = runner
    wrapper.fn = fn
    wrapper.partition_specs = lambda *args, **kwargs: runner.partition_specs(args, kwargs)
    # Filled in by _describe once the plan exists (at once, or at the first call for forward refs).
    wrapper.signature = wrapper.in_axes = wrapper.out_axes = None
    return wrapper


def _describe(wrapper: Any, plan: Plan, sharding: Sharding | None) -> None:
    """Give the wrapper the batched signature, annotations, docstring and derived axes."""
    wrapper.__annotations__, wrapper.__signature__ = signature_of(plan, batched=True)
    mesh_axes = None if sharding is None else sharding.axes
    wrapper.__doc__ = with_shapes_section(unwrap_partial(wrapper.fn).__doc__, plan, mesh_axes)
    wrapper.signature = plan.signature_text()
    if plan.levels is not None:  # else they depend on the call: see explain(fn, *args)
        wrapper.in_axes = {level.key: level.in_axes for level in plan.levels}
        wrapper.out_axes = {
            level.key: level.out_axes if plan.returns_tuple else level.out_axes[0] for level in plan.levels
        }
