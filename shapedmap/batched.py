"""The ``@batched`` decorator and the call path of a batched function.

Decoration reads the annotations and builds the plan (``annotation`` -> ``plan``), so a
spec that can never work fails right there. A call then:

1. binds the arguments with the signature (keyword arguments follow their layouts,
   defaults apply, non-array parameters are held static);
2. checks every array argument against its batched layout (``check``) — skipped when
   this exact abstract signature (shapes, dtypes, static values) already passed;
3. runs the nest of ``jax.vmap`` over the per-example function, checked by
   ``jaxtyped(typechecker=beartype)`` inside the map, with ``axis_name`` per batch name;
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
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import jax
from beartype import beartype
from jaxtyping import PyTree, TypeCheckError, jaxtyped

from .annotation import UnresolvedAnnotation, ValueType, read_function
from .cache import BoundedCache
from .check import Bindings, check_arguments, check_results, split_shape
from .config import config
from .docs import with_shapes_section
from .errors import ShapeError, SpecError, describe_value
from .layout import Layout, SymbolicDim
from .plan import Expansion, Level, Placement, Plan, make_plan, variadic_key
from .sharding import Sharding, make_sharding

__all__ = ["batched", "plan_of"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_MISSING = object()


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
        ``.in_axes`` and ``.out_axes`` show what was derived.

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
    return _PerCall(fn, (spec, layouts, out), check, (shard, mesh)).wrapper


def plan_of(fn: Any) -> Plan:
    """The plan behind a batched function (raises ``TypeError`` for anything else)."""
    runner = getattr(fn, "__shapedmap__", None)
    if runner is None:
        raise TypeError(f"{describe_value(fn)} is not a function made by shapedmap.batched")
    return runner.resolve()


class _PerCall:
    """What a call needs, prepared at decoration: the plan, the checked per-example function.

    The plan is built when the decorator is applied. If an annotation names something not
    defined yet (a forward reference, such as a method annotated with its own class), it is
    built at the first call instead, and a name still undefined then is a ``SpecError``.
    """

    def __init__(
        self, fn: Callable[..., Any], options: tuple[Any, Any, Any], check: bool, shard_options: tuple[Any, Any]
    ) -> None:
        self.fn = fn
        self.options = options
        self.shard_options = shard_options
        self.check = check
        self.plan: Plan | None = None
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
            plan = make_plan(read_function(self.fn), *self.options)
            self.sharding = make_sharding(plan, *self.shard_options)
            self.checked_fn = self.fn if _already_checked(self.fn) else _checked(self.fn, plan)
            self.signature = plan.types.signature
            self.positional_only_call = all(a.kind in _POSITIONAL for a in plan.arguments)
            # Bind sizes on every call when the levels or the placement depend on them.
            self.dynamic = plan.levels is None or bool(plan.unsized_levels) or self.sharding is not None
            # Validated abstract signatures; f-string dims read argument values: no caching then.
            self.passed = BoundedCache(maxsize=512) if not _has_fstring_dims(plan) else None
            _describe(self.wrapper, plan, self.sharding)
            self.plan = plan  # published last: other threads see a complete runner

    # -- 1. binding ----------------------------------------------------------------------

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
        checking = self.check and config.checks
        key = self.abstract_key(values) if checking and self.passed is not None else None
        if key is not None and key in self.passed and not self.dynamic:
            return self.run(values, plan.levels, (), self.fn)
        bindings: Bindings | None = None
        if checking or self.dynamic:
            bindings, values = check_arguments(plan, values, abstract=False)
        expansion = self.expansion(values, bindings)
        fresh = checking and (key is None or key not in self.passed)
        inner = self.checked_fn if fresh else self.fn
        if self.sharding is None:
            output = self.run(values, expansion.levels, expansion.squeeze, inner)
        else:
            output = self.run_sharded(values, expansion, bindings, inner)
        if fresh:
            check_results(plan, bindings, output)
            if key is not None:
                self.passed.add(key, True)
        return output

    def abstract_key(self, values: list[Any]) -> Any:
        """Shapes and dtypes of the arrays, types and values of the rest; None if unhashable.

        None too for anything unreadable (a ``shape`` that raises, a dict JAX cannot flatten):
        the checks then run and name the argument.
        """
        parts = []
        try:
            for argument, value in zip(self.plan.arguments, values, strict=True):
                if argument.placement is None:
                    parts.append((type(value), value))
                elif argument.value.kind == "array":
                    parts.append((getattr(value, "shape", _MISSING), getattr(value, "dtype", _MISSING), type(value)))
                else:
                    leaves, treedef = jax.tree_util.tree_flatten(value)
                    parts.append(
                        (treedef, tuple((getattr(x, "shape", x), getattr(x, "dtype", None), type(x)) for x in leaves))
                    )
            key = tuple(parts)
            hash(key)
        except Exception:
            return None
        return key

    def expansion(self, values: list[Any], bindings: Bindings | None) -> Expansion:
        """The levels for this call: the plan's own, or expanded from the bound sizes."""
        plan = self.plan
        if plan.levels is None:
            return _expand_for_call(plan, values, bindings)
        levels = plan.levels
        if plan.unsized_levels:
            levels = tuple(_sized(level, bindings) for level in levels)
        return Expansion(levels, ())

    def run(
        self,
        values: list[Any],
        levels: tuple[Level, ...],
        squeeze: tuple[tuple[int, ...], ...],
        inner: Callable[..., Any],
        wrap_nest: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
        *,
        sharded: bool = True,
    ) -> Any:
        """The nest of ``jax.vmap`` over ``inner``, statics closed over.

        ``wrap_nest`` wraps the nest (for sharding); ``sharded=False`` leaves out ``spmd_axis_name``
        (to learn result shapes without a mesh).
        """
        plan = self.plan
        mapped = [values[i] for i in plan.array_arguments]
        if squeeze:
            mapped = [_squeeze(value, axes) if axes else value for value, axes in zip(mapped, squeeze, strict=True)]

        def per_example(*mapped_values: Any) -> Any:
            full = list(values)
            for index, value in zip(plan.array_arguments, mapped_values, strict=True):
                full[index] = value
            call_args, call_kwargs = self.recompose(full)
            output = inner(*call_args, **call_kwargs)
            if plan.returns_tuple and not (isinstance(output, tuple) and len(output) == len(plan.results)):
                raise ShapeError(
                    f"{plan.function}: returned {describe_value(output)}, but its return annotation "
                    f"is a tuple of {len(plan.results)}"
                )
            return output

        vmapped = per_example
        for level in reversed(levels):
            out_axes = level.out_axes if plan.returns_tuple else level.out_axes[0]
            unmapped = all(axis is None for axis in level.in_axes)
            vmapped = jax.vmap(
                vmapped,
                in_axes=level.in_axes,
                out_axes=out_axes,
                axis_name=level.axis_name,
                axis_size=level.size if unmapped else None,
                spmd_axis_name=self.sharding.spmd_axis_name(level.key) if sharded and self.sharding else None,
            )
        if wrap_nest is not None:
            vmapped = wrap_nest(vmapped)
        try:
            return vmapped(*mapped)
        except TypeCheckError as error:
            raise ShapeError(
                f"{plan.function}: the per-example check failed {_inside(plan, levels, mapped)}:\n{_indent(str(error))}"
            ) from error
        except ValueError as error:
            if "but out_axes is None" not in str(error):
                error.add_note(f"(raised {_inside(plan, levels, mapped)})")
                raise
            level = next((lv for lv in levels if f"axis_name={lv.axis_name})" in str(error)), levels[0])
            raise ShapeError(
                f"{plan.function}: the result varies over the batch dim '{level.key}', but the output "
                f"layout has no '{level.key}'. Add '{level.key}' to the output layout, or reduce over "
                f"it inside (e.g. jax.lax.psum(x, '{level.key}'))"
            ) from None
        except ShapeError as error:
            if not getattr(error, "_shapedmap_inside", False):
                error.add_note(f"(raised {_inside(plan, levels, mapped)})")
                error._shapedmap_inside = True
            raise
        except Exception as error:
            error.add_note(f"(raised {_inside(plan, levels, mapped)}; shapes there are per example)")
            raise

    def run_sharded(
        self, values: list[Any], expansion: Expansion, bindings: Bindings, inner: Callable[..., Any]
    ) -> Any:
        """Place the arguments on the mesh, run the nest with ``spmd_axis_name``, place the results."""
        plan, sharding = self.plan, self.sharding
        mesh = sharding.mesh_for_call()
        sharding.check_divisible(mesh, bindings)
        explicit = sharding.explicit(mesh)
        values = list(values)
        for index in plan.array_arguments:
            placement = plan.arguments[index].placement
            values[index] = jax.tree.map(
                lambda leaf, placement=placement: sharding.place(
                    leaf, mesh, sharding.partition_spec(placement, leaf.shape, bindings), explicit
                ),
                values[index],
            )
        with sharding.context(mesh, explicit):
            out_specs = self.result_specs(values, expansion, bindings, inner)
            output = self.run(
                values,
                expansion.levels,
                expansion.squeeze,
                inner,
                wrap_nest=lambda nest: sharding.run_nest(nest, explicit, out_specs),
            )
            return jax.tree.map(
                lambda spec, result: jax.tree.map(lambda leaf: sharding.place(leaf, mesh, spec, explicit), result),
                out_specs,
                output,
                is_leaf=lambda node: isinstance(node, jax.sharding.PartitionSpec),
            )

    def result_specs(
        self, values: list[Any], expansion: Expansion, bindings: Bindings, inner: Callable[..., Any]
    ) -> Any:
        """One ``PartitionSpec`` per result (a tuple for a tuple result), from the output layouts."""
        plan, sharding = self.plan, self.sharding
        specs = []
        for result in plan.results:
            layout = result.placement.batched
            variadic = layout.variadic_index
            sharded = [i for i, name in result.placement.batch if name in sharding.axes]
            if variadic is not None and any(i > variadic for i in sharded):
                # A sharded batch dim after a variadic: its axis depends on the rank, so trace for it.
                shapes = jax.eval_shape(
                    lambda *v: self.run(list(v), expansion.levels, expansion.squeeze, inner), *values
                )
                leaf = jax.tree.leaves(shapes if not plan.returns_tuple else shapes[len(specs)])[0]
                specs.append(sharding.partition_spec(result.placement, leaf.shape, bindings))
                continue
            stop = max(sharded, default=-1) + 1
            specs.append(
                jax.sharding.PartitionSpec(
                    *(sharding.spmd_axis_name(dict(result.placement.batch).get(i, "")) for i in range(stop))
                )
            )
        return tuple(specs) if plan.returns_tuple else specs[0]

    def result_shapes(self, values: list[Any], expansion: Expansion) -> Any:
        """The results' shapes and dtypes for a call, traced without running or placing anything."""
        return jax.eval_shape(
            lambda *v: self.run(list(v), expansion.levels, expansion.squeeze, self.fn, sharded=False), *values
        )

    def partition_specs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``{parameter: PartitionSpec (a PyTree of them for a PyTree), ..., "return": ...}`` for a call."""
        plan = self.resolve()
        if self.sharding is None:
            raise SpecError(f"{plan.function}: partition_specs needs shard= (this function is not sharded)")
        values = self.bind(args, kwargs)
        bindings, values = check_arguments(plan, values)
        specs: dict[str, Any] = {}
        for index in plan.array_arguments:
            argument = plan.arguments[index]
            specs[argument.name] = jax.tree.map(
                lambda leaf, placement=argument.placement: self.sharding.partition_spec(
                    placement, leaf.shape, bindings
                ),
                values[index],
            )
        shapes = self.result_shapes(values, self.expansion(values, bindings))
        outputs = shapes if plan.returns_tuple else (shapes,)
        returned = tuple(
            jax.tree.map(lambda leaf, r=result: self.sharding.partition_spec(r.placement, leaf.shape, bindings), value)
            for result, value in zip(plan.results, outputs, strict=True)
        )
        specs["return"] = returned if plan.returns_tuple else returned[0]
        return specs


def _inside(plan: Plan, levels: tuple[Level, ...], mapped: list[Any]) -> str:
    """``inside the map of message_passing over 'graph' (size 13)``."""
    sizes = _level_sizes(levels, mapped)
    described = ", ".join(
        f"'{level.key}'" + (f" (size {size})" if size is not None else "")
        for level, size in zip(levels, sizes, strict=True)
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
        for position, axis in enumerate(level.in_axes):
            shape = shapes[position]
            if axis is None or shape is None or not -len(shape) <= axis < len(shape):
                continue
            size = shape.pop(axis) if size is None else (shape.pop(axis), size)[1]
        sizes.append(size)
    return sizes


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _sized(level: Level, bindings: Bindings | None) -> Level:
    if level.size is not None or any(axis is not None for axis in level.in_axes) or bindings is None:
        return level
    return Level(level.key, level.axis_name, level.in_axes, level.out_axes, bindings.size_of(level.key))


def _squeeze(value: Any, axes: tuple[int, ...]) -> Any:
    return jax.tree_util.tree_map(lambda leaf: jax.numpy.squeeze(leaf, axis=axes), value)


def _expand_for_call(plan: Plan, values: list[Any], bindings: Bindings) -> Expansion:
    """Settle ``*batch`` lengths and size-1 broadcasting for this call (``jnp.vectorize``'s rule).

    A size-1 dim of a broadcastable batch dim (``*batch`` or ``#graph``) whose bound size is
    not 1 is squeezed and left unmapped, so the one example is shared.
    """
    variadic = plan.variadic_batch
    broadcast_shape = bindings.variadics[variadic][0] if variadic in bindings.variadics else ()
    lengths, squeezed = [], []
    for index in plan.array_arguments:
        argument = plan.arguments[index]
        placement = argument.placement
        per_leaf = {
            _squeezed_batch_dims(placement, tuple(leaf.shape), broadcast_shape, bindings)
            for leaf in jax.tree_util.tree_leaves(values[index])
        }
        if len(per_leaf) > 1:
            raise ShapeError(
                f"{plan.function}: the leaves of argument '{argument.name}' disagree on their batch dims "
                f"({', '.join(describe_value(leaf) for leaf in jax.tree_util.tree_leaves(values[index]))}); "
                "one in_axes entry maps the whole PyTree, so every leaf needs the same batch shape"
            )
        own, dropped = per_leaf.pop() if per_leaf else (0, frozenset())
        lengths.append(own)
        squeezed.append(dropped)
    expansion = plan.expand(len(broadcast_shape), tuple(lengths), tuple(squeezed))
    if plan.unsized_levels:
        expansion = Expansion(tuple(_sized(level, bindings) for level in expansion.levels), expansion.squeeze)
    return expansion


def _squeezed_batch_dims(
    placement: Placement, shape: tuple[int, ...], broadcast_shape: tuple[int, ...], bindings: Bindings
) -> tuple[int, frozenset[str]]:
    """How many ``*batch`` dims this array has, and the level keys of its size-1 broadcast dims."""
    batch_at = dict(placement.batch)
    own, dropped = 0, set()
    for token_index, size in enumerate(split_shape(placement.batched, shape)):
        name = batch_at.get(token_index)
        if name is None:
            continue
        if name == placement.variadic_batch:
            own = len(size)
            for j, dim_size in enumerate(size):
                level_index = len(broadcast_shape) - own + j
                if dim_size == 1 and broadcast_shape[level_index] != 1:
                    dropped.add(variadic_key(name, level_index))
        elif name in placement.broadcastable_batch and size == 1 and bindings.size_of(name) not in (None, 1):
            dropped.add(name)
    return own, frozenset(dropped)


def _already_checked(fn: Any) -> bool:
    """Is ``fn`` already checked per call (a batched function, or jaxtyped by hand or import hook)?"""
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


def _make_wrapper(fn: Callable[..., Any], runner: _PerCall) -> Any:
    target = _unwrap_partial(fn)

    @functools.wraps(target)
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
    annotations, signature = _signature_for(plan, batched=True)
    wrapper.__signature__ = signature
    wrapper.__annotations__ = annotations
    mesh_axes = None if sharding is None else sharding.axes
    wrapper.__doc__ = with_shapes_section(_unwrap_partial(wrapper.fn).__doc__, plan, mesh_axes)
    wrapper.signature = plan.signature_text()
    wrapper.in_axes, wrapper.out_axes = _axes_by_name(plan)


def _checked(fn: Callable[..., Any], plan: Plan) -> Callable[..., Any]:
    """``fn`` under ``jaxtyped(typechecker=beartype)``, checked against the per-example annotations.

    The check runs on a shim whose signature carries the annotations as shapedmap resolved them
    (strings resolved, ``np.ndarray`` read as ``jax.Array`` since inside the map every array is
    a tracer), so partials, callable objects and NumPy-annotated functions are checked alike.
    """

    def per_example(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    target = _unwrap_partial(fn)
    per_example.__module__ = getattr(target, "__module__", __name__)
    per_example.__qualname__ = plan.function
    per_example.__name__ = getattr(target, "__name__", "per_example")
    per_example.__annotations__, per_example.__signature__ = _signature_for(plan, batched=False)
    return jaxtyped(typechecker=beartype)(per_example)


def _unwrap_partial(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _annotation_for(argument_kind: Any, value: ValueType, layout: Layout) -> Any:
    annotation = value.array.with_layout(layout)
    if value.kind == "tree" and argument_kind not in _VARIADIC_KINDS:
        annotation = PyTree[annotation] if value.structure is None else PyTree[annotation, value.structure]
    if value.optional:
        annotation = annotation | None
    return annotation


def _signature_for(plan: Plan, *, batched: bool) -> tuple[dict[str, Any], inspect.Signature]:
    """The batched (or the per-example) signature, with readable jaxtyping annotations."""
    annotations: dict[str, Any] = {}
    parameters = []
    for argument, parameter in zip(plan.arguments, plan.types.signature.parameters.values(), strict=True):
        if argument.placement is not None:
            layout = argument.placement.batched if batched else argument.placement.per_example
            annotation = _annotation_for(argument.kind, argument.value, layout)
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
        layout = result.placement.batched if batched else result.placement.per_example
        results.append(_annotation_for(None, result.value, layout))
    if plan.types.outputs[0].hint is None and not plan.returns_tuple and not batched:
        returned = inspect.Signature.empty  # unannotated: nothing to check per example
    else:
        returned = tuple[tuple(results)] if plan.returns_tuple else results[0]
        annotations["return"] = returned
    return annotations, plan.types.signature.replace(parameters=parameters, return_annotation=returned)


def _axes_by_name(plan: Plan) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``in_axes``/``out_axes`` per batch name, as one would write them by hand."""
    if plan.levels is None:
        return None, None
    in_axes, out_axes = {}, {}
    for level in plan.levels:
        per_parameter: list[int | None] = [None] * len(plan.arguments)
        for index, axis in zip(plan.array_arguments, level.in_axes, strict=True):
            per_parameter[index] = axis
        in_axes[level.key] = tuple(per_parameter)
        out_axes[level.key] = level.out_axes if plan.returns_tuple else level.out_axes[0]
    return in_axes, out_axes
