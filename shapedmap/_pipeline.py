"""The path of one call of a batched function: bind, check, settle the nest, map, check the results.

Each step is a pure function of the call's arguments and the ``Batched`` description (its plan,
options and per-example bodies); the only state is the plan's bounded memo:

1. bind the arguments to the signature (keyword arguments follow their layouts, defaults
   apply, non-array parameters are held static);
2. check the static values, and every array argument against its batched layout: the sizes
   by name (``Bindings``), remembered per abstract signature on the plan;
3. split each ``SplitKey`` parameter's one key into one key per example (``split_keys``), then
   settle this call's ``VmapNest`` (``nest_for``; sharding adds its mesh axes);
4. run it with ``jax.vmap`` (``_call.run``): the per-example function, checked against its own
   annotations on the first call of each abstract signature;
5. check every result against its batched layout.

Example:
    >>> from shapedmap.examples import mv
    >>> plan = mv.__shapedmap__.plan
    >>> [value.shape for value in bind(plan, (jnp.ones((4, 3)),), {"y": jnp.ones(3)})]
    [(4, 3), (3,)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import jax

from ._binding import Bindings
from ._call import result_shapes, run, runner_for
from ._checks import check_arguments, check_results, check_static_values, convert_arguments
from ._config import config
from ._errors import SpecError
from ._key_checks import split_keys
from ._layout_trees import map_placed
from ._levels import VmapNest
from ._nest import nest_for
from ._plan import Plan

if TYPE_CHECKING:
    from ._batched import Batched

__all__ = ["bind", "call", "partition_specs", "plan_for_call"]

_NO_BINDINGS = Bindings("")  # a remembered call whose sizes nothing reads again


def call(described: Batched, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """One call of a batched function: bind, check, settle the nest, map, check the results."""
    # The plan once built sits in the description's __dict__ (read there: a call's hot path); a call
    # that passes again a keyword a partial binds takes a variant of it (``plan_for_call``).
    plan = described.__dict__.get("_plan") or described.resolved_plan()
    replay = described.__dict__.get("_replay")
    if replay is not None and not kwargs and described.check and config.checks:
        # JAX arrays (PyTrees of them) with the shapes of the last call: replayed, nothing bound,
        # converted or checked.
        key, defaults, runner = replay
        try:
            same = _arrays_key(args) == key
        except Exception:  # not all JAX arrays, or sizes JAX cannot compare: the checked path below
            same = False
        if same:
            return runner((*args, *defaults) if defaults else args)
    if kwargs and plan.bound_keywords and not plan.bound_keywords.isdisjoint(kwargs):
        plan = described.plan_for(plan.bound_keywords.intersection(kwargs))
    defaulted: set[str] = set()
    values = bind(plan, args, kwargs, defaulted)
    if not (described.check and config.checks):
        # Unchecked; levels or placement that depend on the call still read its sizes.
        bindings = Bindings(plan.function)
        if plan.static_nest is None or described.sharding is not None or plan.split_keys:
            bindings = check_arguments(plan, values, abstract=False)[0]
        return _map(described, plan, values, bindings, described.fn)
    values = convert_arguments(plan, values)
    default_unchecked = bool(plan.annotated_statics) and check_static_values(plan, values, defaulted)
    key = None if plan.has_fstring_dims else _shapes_key(plan, values)
    seen = None if key is None else plan.memo_get(("arguments", key))
    if seen is None:
        bindings, values = check_arguments(plan, values, abstract=False)
        arguments_only = bindings.snapshot()  # taken before the results bind their own dims
        # A default the caller did not pass is the function's own: not checked per example either.
        body = described.results_body if default_unchecked else described.first_body
    else:
        # The sizes are needed again only to settle levels, place on a mesh or check results.
        if plan.static_nest is None or plan.has_statics or described.sharding is not None or plan.split_keys:
            bindings = Bindings.restore(plan.function, seen)
        else:
            bindings = _NO_BINDINGS
        body = described.results_body if plan.has_statics else described.fn
        if (
            plan.replays_by_shapes
            and not plan.has_statics  # a static value, or an object's state the body reads, can change the results
            and described.sharding is None
            and not kwargs
            and len(args) <= plan.leading_positionals  # each argument its own parameter's value
        ):
            # The next call with these shapes and types, passed the same way, replays this one (above):
            # the parameters after the positional arguments take the same defaults (or bound values).
            runner = runner_for(plan, plan.static_nest, body)  # type: ignore[arg-type]
            described.__dict__["_replay"] = (key[: 1 + len(args)], tuple(values[len(args) :]), runner)
            return runner(values)
    output = _map(described, plan, values, bindings, body)
    if seen is None or plan.has_statics:
        # With no static argument, the results' shapes follow from the key alone (JAX's purity
        # contract, which jit's cache relies on too): checked once. Static values (an object's
        # state, say) can change them: checked on every call, from the arguments' sizes alone.
        check_results(plan, bindings, output)
    if seen is None and key is not None:
        plan.memo_add(("arguments", key), arguments_only)
    return output


def plan_for_call(described: Batched, kwargs: dict[str, Any]) -> Plan:
    """The plan of a call: a keyword a partial binds, passed again, overrides the bound value and
    follows its layout (a variant of the plan); otherwise the bound values are shared."""
    plan = described.resolved_plan()
    if kwargs and plan.bound_keywords and not plan.bound_keywords.isdisjoint(kwargs):
        plan = described.plan_for(plan.bound_keywords.intersection(kwargs))
    return plan


def bind(plan: Plan, args: tuple[Any, ...], kwargs: dict[str, Any], defaulted: set[str] | None = None) -> list[Any]:
    """One value per parameter, in signature order (``*args`` a tuple, ``**kwargs`` a dict).

    ``defaulted``, when given, receives the names of the parameters the caller did not pass
    (filled from the function's own defaults, which are not checked against the annotations:
    ``state: State = sentinel`` is the function's business, as it is for ``jax.vmap``).
    """
    if not kwargs and plan.positional_and_mapped and len(args) == len(plan.arguments):
        return list(args)
    try:
        bound = plan.types.signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{plan.function}: {error}") from None
    if defaulted is not None:
        # A keyword a partial binds is the caller's value, not the function's default: checked.
        defaulted.update(
            name
            for name in plan.types.signature.parameters
            if name not in bound.arguments and name not in plan.bound_keywords
        )
    bound.apply_defaults()
    return [bound.arguments[argument.name] for argument in plan.arguments]


def _map(described: Batched, plan: Plan, values: list[Any], bindings: Bindings, body: Callable[..., Any]) -> Any:
    """Run this call's nest over ``body`` (placed on the mesh when sharded), each ``SplitKey``'s key
    split first, on the whole batch: the same keys whatever the chunk or the mesh."""
    values = split_keys(plan, values, bindings)
    nest = plan.static_nest or nest_for(plan, values, bindings)
    sharding = described.sharding
    if sharding is None:
        return run(plan, nest, body, values)

    def run_placed(
        placed: list[Any], sharded: VmapNest, wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None
    ) -> Any:
        if wrap is None:
            return run(plan, sharded, body, placed)
        return wrap(lambda *mapped: run(plan, sharded, body, plan.with_mapped(placed, mapped)))(
            *(placed[i] for i in plan.array_arguments)
        )

    return sharding.call(
        plan, nest, values, bindings, run_placed, lambda: result_shapes(plan, nest, described.fn, values)
    )


def partition_specs(described: Batched, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``{parameter: PartitionSpec (a PyTree of them for a PyTree), ..., "return": ...}`` for a call.

    Raises the call's ``ShapeError`` for arguments that do not fit, or (with a mesh given or set)
    a sharded batch its mesh axes cannot split evenly.
    """
    plan = plan_for_call(described, kwargs)
    sharding = described.sharding
    if sharding is None:
        raise SpecError(f"{plan.function}: partition_specs needs shard= (this function is not sharded)")
    bindings, values = check_arguments(plan, bind(plan, args, kwargs))
    values = split_keys(plan, values, bindings)
    if sharding.known_mesh() is not None:  # specs the mesh cannot use get the call's error
        sharding.check_divisible(sharding.mesh_for_call(), bindings)
    specs: dict[str, Any] = {}
    for index in plan.array_arguments:
        argument = plan.arguments[index]
        specs[argument.name] = map_placed(
            lambda placement, leaf: sharding.partition_spec(placement, tuple(leaf.shape), bindings),
            argument.placement,
            values[index],
        )
    shapes = result_shapes(plan, nest_for(plan, values, bindings), described.fn, values)
    specs["return"] = sharding.result_specs(plan, shapes, bindings)
    return specs


def _shapes_key(plan: Plan, values: list[Any]) -> Any:
    """What the argument check depends on: per array leaf its shape, dtype, weak type and type.

    None when anything is unreadable (the checks then run and name the argument).
    """
    try:
        key = _arrays_key([values[index] for index in plan.array_arguments])
        hash(key)
    except Exception:
        return None
    return key


def _arrays_key(values: Sequence[Any]) -> tuple[Any, ...]:
    """``_shapes_key`` of these values, unhashed (the replay compares it with the last call's):
    x64, then per value its shape, dtype, weak type and type, or its PyTree structure (and its text,
    which tells static data 2 from 2.0) and those of each leaf.

    Raises ``AttributeError`` for a leaf that is no JAX array (NumPy, a Python number).
    """
    key: list[Any] = [jax.config.jax_enable_x64]
    for value in values:  # loops, not a call per value: on the replay's path a call costs ~1 µs
        if isinstance(value, jax.Array):
            aval = value.aval  # read once: ``shape``, ``dtype`` and ``weak_type`` each read it again
            key.append((aval.shape, aval.dtype, aval.weak_type, type(value)))
            continue
        leaves, treedef = jax.tree_util.tree_flatten(value)
        # Its text too: treedefs compare their static data with ==, and 2 == 2.0 == True (an
        # equinox static field 2.0 after 2 would change the results' dtype unchecked).
        tree: list[Any] = [treedef, str(treedef)]
        for leaf in leaves:
            aval = leaf.aval
            tree.append((aval.shape, aval.dtype, aval.weak_type, type(leaf)))
        key.append(tuple(tree))
    return tuple(key)
