"""Result fuzzing: a per-example function whose *body* is wrong gives the naive loop's answer or a
``ShapeError`` that names the function and the result (docs/architecture.md, Guarantees: results).

A corpus of per-example functions covers every spec form (batch names leading and not, several of them,
full signatures, ``out=``, ``layouts=``, tuple, PyTree and ``Optional`` results, ``*batch``, ``#name``,
symbolic and fixed output dims, static parameters, batch dims the output lacks). Each case wraps one
of them in a body that corrupts what it returns: a wrong rank, a wrong core or symbolic size, a wrong
dtype, a Python scalar, ``None``, a string, a list, a dict, ``object()``, a tuple of the wrong length or
no tuple for a tuple result, a PyTree of the wrong structure, NaN, a result that varies over a batch dim
its layout lacks, and more. The body is decorated afresh for each case (shapedmap remembers the shapes
it checked, so one function must always return alike) and called twice, eagerly or under ``jax.jit``,
with checks on, on valid arguments (``tests/test_fuzz_inputs.py`` draws them).

The oracle is the naive loop: it calls the body on every example, takes Python and NumPy numbers for
arrays (as ``jax.vmap`` does), checks each per-example result against the return annotation with
jaxtyping (``is_bearable``, in the context of the arguments' dims), and stacks the results, refusing one
that varies over a batch dim its layout lacks. If the oracle refuses, the call must raise a ``ShapeError``
whose message (``str(error)``, without notes) starts with the function's name and names the result:
``result <i>`` when one element of a tuple was corrupted, else ``the return value`` (or ``result <i>``).
Anything else (a bare JAX error, ``OverflowError``, a refused valid result, a wrong or a silently
accepted answer) is an internal error.

``python -m tests.fuzz results --cases 2000`` runs the long campaign and counts internal errors.
"""

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Bool, Float, PyTree
from test_fuzz_inputs import (
    Draw,
    Entry,
    FakeArray,
    InternalError,
    Invalid,
    Loop,
    Param,
    RaisingRepr,
    add,
    add_trees,
    any_number,
    apply_op,
    base_name,
    body_error,
    build_call,
    call_example,
    center,
    compare,
    concat,
    count,
    dim_names,
    double_tree,
    entry_name,
    linear,
    make_value,
    matmat,
    mp,
    output_sizes,
    pad_add,
    per_leaf,
    rest_double,
    rest_sum,
    rotate,
    run_loop,
    scale,
    scale_offset,
    sum_vector,
    to_array,
    twice,
    unannotated_return,
    vecvec,
    weighted,
)

from shapedmap import ShapeError, batched, config

# A generator is one of the corruptions; JAX warns that it will stop treating one as a PyTree leaf.
pytestmark = pytest.mark.filterwarnings("ignore:Python iterable type 'generator':DeprecationWarning")

# -- per-example functions the input fuzzer's corpus lacks ----------------------------------------


def from_weights(x: Float[Array, "n"], w: Float[Array, "n"]) -> Float[Array, "n"]:
    return 2 * w  # the same for every x: fine where the output lacks x's batch dim


def total_weight(x: Float[Array, "n"], w: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.sum(w)


def spread(x: Float[Array, "n"], w: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
    return jnp.sum(x), 2 * w


def maybe(x: Float[Array, "n"], keep: bool) -> Optional[Float[Array, "n"]]:  # noqa: UP045
    return x if keep else None


def summary(x: Float[Array, "n"]) -> tuple[Float[Array, ""], PyTree[Float[Array, "n"]]]:
    return x.sum(), {"x": x, "twice": 2 * x}


def negate(x: Float[Array, "..."]) -> Float[Array, "..."]:
    return -x


def positive(x: Float[Array, "n"]) -> Bool[Array, "n"]:
    return x > 0


# -- the corpus: one template per spec form ---------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A correct per-example function, how it is batched, and its layouts as this file states them.

    ``results``: per result, ``array``, ``optional`` (an array or ``None``), ``tree`` or ``unannotated``.
    ``source``: the argument a varying result adds (mapped over the batch dims some output lacks).
    ``bound``: keyword arguments bound with ``functools.partial``.
    """

    label: str
    fn: Callable[..., Any]
    spec: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    batch: tuple[str, ...]
    layouts: dict[str, str] | None = None
    out: str | tuple[str, ...] | None = None
    results: tuple[str, ...] = ("array",)
    tuple_output: bool = False
    source: str = ""
    bound: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> Entry:
        """An undecorated entry: what the argument drawing of ``tests/test_fuzz_inputs.py`` reads."""
        return Entry(self.label, None, self.params, self.outputs, self.batch, tuple_output=self.tuple_output)

    def absent(self) -> set[str]:
        """Batch names (``*batch`` included) some output layout lacks."""
        return {
            name
            for name in self.batch
            for layout in self.outputs
            if name not in {"*batch" if t == "*batch" else base_name(t) for t in layout.split()}
        }


def _a(name, layout, **options):
    return Param(name, layout, **options)


def _s(name, valid, **options):
    return Param(name, kind="static", valid=valid, **options)


CORPUS: tuple[Template, ...] = (
    Template("batch name", mp, "graph", (_a("a", "graph node node"), _a("f", "graph node feat")),
             ("graph node feat",), ("graph",)),
    Template("two batch names", mp, "graph time", (_a("a", "graph time node node"), _a("f", "graph time node feat")),
             ("graph time node feat",), ("graph", "time")),
    Template("signature, non-leading, scalar result", sum_vector, "n col -> col", (_a("x", "n col"),), ("col",),
             ("col",)),
    Template("signature 'n b -> n b'", twice, "n b -> n b", (_a("x", "n b"),), ("n b",), ("b",)),
    Template("symbolic output '2*f'", concat, "i f, j f -> i j 2*f", (_a("u", "i f"), _a("v", "j f")),
             ("i j 2*f",), ("i", "j")),
    Template("symbolic output 'n+1'", pad_add, "b", (_a("x", "b n"), _a("y", "b n+1")), ("b n+1",), ("b",)),
    Template("out=", twice, "b", (_a("x", "b n"),), ("n b",), ("b",), out="n b"),
    Template("layouts=", linear, "batch", (_a("x", "batch feat"), _a("w", "feat out"), _a("bias", "out")),
             ("batch out",), ("batch",), layouts={"w": "feat out", "bias": "out"}),
    Template("keyword-only array", weighted, "b", (_a("x", "b n"), _a("w", "b n", keyword_only=True)), ("b",),
             ("b",)),
    Template("static int", scale, "b", (_a("x", "b n"), _s("factor", (2, 3))), ("b n",), ("b",)),
    Template("static callable and unannotated", apply_op, "b",
             (_a("x", "b n"), _s("op", (jnp.sin, jnp.cos)), _s("mode", ("sum", "max"))), ("b",), ("b",)),
    Template("partial, scalar unmapped", scale_offset, "b n, -> b n",
             (_a("x", "b n"), _a("factor", ""), _s("offset", (1.0, 2.5), keyword_only=True)), ("b n",), ("b",),
             bound={"offset": 1.0}),
    Template("*batch", matmat, "*batch", (_a("x", "*batch n m"), _a("y", "*batch m k")), ("*batch n k",),
             ("*batch",)),
    Template("*batch, scalar result", vecvec, "*batch", (_a("x", "*batch m"), _a("y", "*batch m")), ("*batch",),
             ("*batch",)),
    Template("#name", add, "#graph", (_a("x", "#graph n"), _a("y", "#graph n")), ("graph n",), ("graph",)),
    Template("PyTree", double_tree, "b", (_a("params", "b n", kind="tree"),), ("b n",), ("b",), results=("tree",)),
    Template("PyTree 'T'", add_trees, "b",
             (_a("x", "b n", kind="tree", structure="T"), _a("y", "b n", kind="tree", structure="T")), ("b n",),
             ("b",), results=("tree",)),
    Template("treepath '?n'", per_leaf, "b",
             (_a("x", "b ?n", kind="tree", structure="T"), _a("y", "b ?n", kind="tree", structure="T")), ("b ?n",),
             ("b",), results=("tree",)),
    Template("fixed size", rotate, "points", (_a("p", "points xyz=3"),), ("points 3",), ("points",)),
    Template("output-only batch dim", twice, "n -> rep=3 n", (_a("x", "n"),), ("rep=3 n",), ("rep",)),
    Template("batch size fixed by out=", twice, "b", (_a("x", "b n"),), ("b=3 n",), ("b",), out="b=3 n"),
    Template("tuple result", center, "b", (_a("x", "b n"),), ("b", "b n"), ("b",), results=("array", "array"),
             tuple_output=True),
    Template("tuple result, out=", center, "b", (_a("x", "b n"),), ("b", "n b"), ("b",), out=("b", "n b"),
             results=("array", "array"), tuple_output=True),
    Template("tuple with a PyTree", summary, "b", (_a("x", "b n"),), ("b", "b n"), ("b",),
             results=("array", "tree"), tuple_output=True),
    Template("tuple, one result without the batch dim", spread, "b n, n -> b, n", (_a("x", "b n"), _a("w", "n")),
             ("b", "n"), ("b",), results=("array", "array"), tuple_output=True, source="x"),
    Template("batch dim absent from the result", from_weights, "b n, n -> n", (_a("x", "b n"), _a("w", "n")),
             ("n",), ("b",), source="x"),
    Template("scalar result without the batch dim", total_weight, "b n, n -> ", (_a("x", "b n"), _a("w", "n")),
             ("",), ("b",), source="x"),
    Template("one of two batch names absent", from_weights, "b n, c n -> c n", (_a("x", "b n"), _a("w", "c n")),
             ("c n",), ("b", "c"), source="x"),
    Template("*batch absent from the result", from_weights, "*batch", (_a("x", "*batch n"), _a("w", "n")), ("n",),
             ("*batch",), layouts={"w": "n"}, out="n", source="x"),
    Template("Optional result", maybe, "b", (_a("x", "b n"), _s("keep", (True, False))), ("b n",), ("b",),
             results=("optional",)),
    Template("unannotated return", unannotated_return, "b", (_a("x", "b n"),), ("b ...",), ("b",),
             results=("unannotated",)),
    Template("Int result", count, "b", (_a("x", "b n", dtype="int"),), ("b",), ("b",)),
    Template("Bool result", positive, "b", (_a("x", "b n"),), ("b n",), ("b",)),
    Template("dtype union result", any_number, "b", (_a("x", "b n", dtype="number"),), ("b",), ("b",)),
    Template("core variadic result", rest_sum, "b", (_a("x", "b n *rest"),), ("b *rest",), ("b",)),
    Template("batch after a variadic", rest_double, "*rest b -> *rest b", (_a("x", "*rest b"),), ("*rest b",),
             ("b",)),
    Template("ellipsis result", negate, "b", (_a("x", "b ..."),), ("b ...",), ("b",)),
)  # fmt: skip


# -- corruptions -------------------------------------------------------------------------------------

# One array result (or one leaf of a PyTree result) replaced or changed.
ARRAY_CORRUPTIONS = (
    "valid", "extra dim", "missing dim", "resize axis", "zero axis", "swap axes",
    "int32", "bool", "complex64", "uint8", "float16", "numpy float64",
    "python float", "python int", "python bool", "python complex", "big int", "0-d array",
    "numpy constant", "constant", "nan", "inf", "varies",
    "none", "str", "list", "dict", "object", "tuple of one", "type", "generator",
    "numpy str", "numpy object", "fake array", "ShapeDtypeStruct", "raising repr",
)  # fmt: skip
# A whole PyTree result: its structure changed, or replaced.
TREE_CORRUPTIONS = ("extra key", "missing key", "wrapped in list", "leaf to None", "empty dict", "bare leaf",
                    "mixed-key dict")  # fmt: skip
WHOLE_TREE_CORRUPTIONS = ("valid", "none", "str", "object", "python float", "varies", *TREE_CORRUPTIONS)
# A whole tuple result.
TUPLE_CORRUPTIONS = ("valid", "tuple too long", "tuple too short", "list for tuple", "first only", "nested tuple",
                     "dict for tuple", "none", "str", "array for tuple")  # fmt: skip


def corrupt_array(value: Any, kind: str, choice: int, term: Any) -> Any:
    """One corruption of one per-example array (a tracer inside the map, an array in the loop).

    ``choice`` picks an axis or a position; ``term`` is a number that varies with the source argument.
    """
    shape = tuple(value.shape) if hasattr(value, "shape") else ()
    dtype = value.dtype if hasattr(value, "dtype") else np.dtype("float32")
    replaced = {
        "none": lambda: None,
        "str": lambda: "abc",
        "list": lambda: [value],
        "dict": lambda: {"a": value},
        "object": object,
        "tuple of one": lambda: (value,),
        "type": lambda: float,
        "generator": lambda: (i for i in range(3)),
        "python float": lambda: 1.5,
        "python int": lambda: 2,
        "python bool": lambda: True,
        "python complex": lambda: 1 + 2j,
        "big int": lambda: 2**70,
        "0-d array": lambda: jnp.float32(1.5),
        "numpy str": lambda: np.full(shape, "a"),
        "numpy object": lambda: np.full(shape, None, dtype=object),
        "fake array": lambda: FakeArray(shape, dtype),
        "ShapeDtypeStruct": lambda: jax.ShapeDtypeStruct(shape, dtype),
        "raising repr": RaisingRepr,
        "numpy float64": lambda: np.ones(shape, np.float64),
    }
    if kind in replaced:
        return replaced[kind]()
    if not hasattr(value, "shape"):  # None (an Optional result) or a number: nothing to change
        return value
    casts = {"int32": jnp.int32, "bool": jnp.bool_, "complex64": jnp.complex64, "uint8": jnp.uint8}
    casts |= {"float16": jnp.float16}
    if kind in casts:
        return value.astype(casts[kind])
    if kind == "numpy constant":
        return np.ones(shape, dtype)
    if kind == "constant":
        return jnp.ones(shape, dtype)
    if kind == "varies":
        return jnp.logical_xor(value, term > 0) if dtype == np.bool_ else value + term.astype(dtype)
    if kind in ("nan", "inf"):
        if not jnp.issubdtype(dtype, jnp.floating) or not value.size:
            return value
        flat = value.reshape(-1)
        return flat.at[choice % flat.size].set(jnp.nan if kind == "nan" else -jnp.inf).reshape(shape)
    if kind == "extra dim":
        return jnp.expand_dims(value, choice % (len(shape) + 1))
    if not shape:
        return value  # no axis to drop, resize or swap
    axis = choice % len(shape)
    if kind == "missing dim":
        return jnp.take(value, 0, axis=axis) if shape[axis] else jnp.zeros(shape[:axis] + shape[axis + 1 :], dtype)
    if kind in ("resize axis", "zero axis"):
        size = 0 if kind == "zero axis" else max(1, shape[axis] + (-1, 1, 2)[choice % 3])
        size = shape[axis] + 1 if size == shape[axis] else size
        resized = (*shape[:axis], size, *shape[axis + 1 :])
        return jnp.resize(value, resized) if size and value.size else jnp.zeros(resized, dtype)
    if kind == "swap axes" and len(shape) >= 2:
        return jnp.swapaxes(value, 0, -1)
    return value


def corrupt_tree(value: Any, kind: str, choice: int) -> Any:
    """One change of a PyTree result's structure."""
    leaves, treedef = jax.tree.flatten(value)
    first = leaves[0] if leaves else jnp.zeros(())
    if kind == "extra key":
        if isinstance(value, dict):
            return {**value, "extra": first}
        return (*value, first) if isinstance(value, tuple | list) else (value, first)
    if kind == "missing key":
        if isinstance(value, dict) and value:
            return {k: v for i, (k, v) in enumerate(value.items()) if i != choice % len(value)}
        return value[:-1] if isinstance(value, tuple | list) else {}
    if kind == "leaf to None" and leaves:
        leaves[choice % len(leaves)] = None
        return treedef.unflatten(leaves)
    return {
        "wrapped in list": [value],
        "empty dict": {},
        "bare leaf": first,
        "mixed-key dict": {1: first, "a": first},
    }.get(kind, value)


def corrupt_tuple(value: tuple[Any, ...], kind: str) -> Any:
    """One corruption of a whole tuple result."""
    return {
        "tuple too long": lambda: (*value, value[0]),
        "tuple too short": lambda: value[:-1],
        "list for tuple": lambda: list(value),
        "first only": lambda: value[0],
        "nested tuple": lambda: (value,),
        "dict for tuple": lambda: {str(i): item for i, item in enumerate(value)},
        "none": lambda: None,
        "str": lambda: "abc",
        "array for tuple": lambda: jnp.stack([jnp.ravel(item)[0] for item in value]),
    }.get(kind, lambda: value)()


def corrupt_result(value: Any, kind: str, leaf: bool, choice: int, term: Any) -> Any:
    """One result (a tuple element, or the whole return value) corrupted."""
    if kind in TREE_CORRUPTIONS:
        return corrupt_tree(value, kind, choice)
    leaves, treedef = jax.tree.flatten(value)
    if leaf and leaves:
        position = choice % len(leaves)
        leaves[position] = corrupt_array(leaves[position], kind, choice // len(leaves), term)
        return treedef.unflatten(leaves)
    if kind == "varies":
        return treedef.unflatten([corrupt_array(x, kind, choice, term) for x in leaves])
    return corrupt_array(value, kind, choice, term)


# -- one case -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """Everything drawn for one call.

    ``component``: the tuple element corrupted (``None``: the whole result); ``leaf``: one leaf of a
    PyTree result corrupted, not the whole tree; ``empty``: a batch dim the outputs have is size 0.
    """

    entry: int
    draw: Draw
    corruption: str
    component: int | None
    leaf: bool
    choice: int
    empty: str | None
    jit: bool
    seed: int

    def describe(self) -> str:
        template = CORPUS[self.entry]
        where = f" on result {self.component}" if self.component is not None else ""
        where += " (one leaf)" if self.leaf else ""
        empty = f", '{self.empty}' of size 0" if self.empty else ""
        name = template.fn.__name__
        return f"{template.label} ({name}): {self.corruption}{where}, {'jit' if self.jit else 'eager'}{empty}"


def corrupted_body(case: Case) -> Callable[..., Any]:
    """The template's per-example function, returning a corrupted result; same name and annotations."""
    template = CORPUS[case.entry]
    fn = template.fn
    signature = inspect.signature(fn)
    source = template.source or next(p.name for p in template.params if p.kind != "static")

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        output = fn(*args, **kwargs)
        leaves = jax.tree.leaves(signature.bind(*args, **kwargs).arguments[source])
        term = jnp.sum(leaves[0]) if leaves else jnp.float32(0)
        if not template.tuple_output:
            return corrupt_result(output, case.corruption, case.leaf, case.choice, term)
        if case.component is None:
            return corrupt_tuple(output, case.corruption)
        items = list(output)
        items[case.component] = corrupt_result(items[case.component], case.corruption, case.leaf, case.choice, term)
        return tuple(items)

    return body


def decorate(case: Case) -> Entry:
    """The corrupted body, batched as its template says (afresh: shapedmap remembers what it checked)."""
    template = CORPUS[case.entry]
    body = corrupted_body(case)
    fn = functools.partial(body, **template.bound) if template.bound else body
    function = batched(fn, template.spec, layouts=template.layouts, out=template.out)
    return Entry(template.label, function, template.params, template.outputs, template.batch,
                 tuple_output=template.tuple_output)  # fmt: skip


def make_values(case: Case) -> dict[str, Any]:
    """Valid arguments (a batch dim of size 0 if drawn)."""
    template = CORPUS[case.entry]
    draw = case.draw
    if case.empty == "*batch":
        draw = Draw(draw.sizes, draw.variadic, {k: (0,) for k in draw.broadcast}, {}, draw.structure,
                    draw.leaf_sizes)  # fmt: skip
    elif case.empty is not None:
        draw = Draw({**draw.sizes, case.empty: 0}, draw.variadic, draw.broadcast, {}, draw.structure,
                    draw.leaf_sizes)  # fmt: skip
    rng = np.random.default_rng(case.seed)
    return {param.name: make_value(param, template.shape, draw, rng) for param in template.params}


# -- the oracle: the naive loop, with the result checked against the return annotation --------------


def as_result(value: Any, entry: Entry) -> Any:
    """A per-example result as ``jax.vmap`` reads it: Python and NumPy numbers are arrays; nothing else is."""
    if entry.tuple_output and not (isinstance(value, tuple) and len(value) == len(entry.outputs)):
        raise Invalid(f"not a tuple of {len(entry.outputs)}: {type(value).__name__}")
    try:
        return jax.tree.map(to_array, value)
    except (TypeError, ValueError) as error:  # not a PyTree JAX can flatten
        raise Invalid(f"{type(error).__name__}: {error}") from None


def oracle(entry: Entry, values: dict[str, Any]) -> Any:
    """The naive loop's result, or ``Invalid`` (``Varies`` for a result varying over a dropped batch dim)."""
    loop = Loop()
    arrays: dict[str, Any] = {}
    for param in entry.params:
        value = values[param.name]
        if param.kind == "static" or value is None:
            arrays[param.name] = value
            continue
        try:
            for leaf in jax.tree.leaves(value):
                loop.bind(entry, param.layout.split(), tuple(leaf.shape))
        except Invalid as error:
            raise RuntimeError(f"the fuzzer drew arguments that do not fit together: {error}") from None
        arrays[param.name] = value
    # An example its annotations refuse is the fuzzer's bug here: only the result is corrupted.
    call = functools.partial(call_example, entry, refused=RuntimeError, as_result=lambda out: as_result(out, entry))
    return run_loop(entry, arrays, loop, call)


# -- judging ------------------------------------------------------------------------------------------


def names_result(text: str, case: Case) -> bool:
    """Does the message name the result: ``result <i>`` for a corrupted tuple element, else the return value?"""
    if case.component is not None:
        return re.search(rf"\bresult {case.component}\b", text) is not None
    if CORPUS[case.entry].tuple_output:
        return "the return value" in text or re.search(r"\bresult \d", text) is not None
    return "the return value" in text


def check_error(case: Case, entry: Entry, invalid: Invalid | None, error: Exception) -> str:
    text, kind, name = str(error), type(error).__name__, entry_name(entry)
    found = f"{case.describe()}: {kind}"
    if invalid is None:
        raise InternalError(f"{found} on a valid result: {text[:600]}") from error
    if invalid.raised is not None and isinstance(error, invalid.raised):
        return body_error(found, name, error)
    if not isinstance(error, ShapeError):
        raise InternalError(f"{found} is not a ShapeError: {text[:600]}") from error
    if not text.startswith(f"{name}: "):
        raise InternalError(f"{found} does not start with '{name}: ': {text[:600]}") from error
    if not names_result(text, case):
        wanted = f"result {case.component}" if case.component is not None else "the return value"
        raise InternalError(f"{found} does not name {wanted}: {text[:600]}") from error
    return "named error"


def call(case: Case, entry: Entry, function: Any, args: list[Any], kwargs: dict[str, Any], expected: Any,
         invalid: Invalid | None) -> str:  # fmt: skip
    try:
        result = function(*args, **kwargs)
    except Exception as error:
        return check_error(case, entry, invalid, error)
    if invalid is not None:
        raise InternalError(f"{case.describe()}: accepted a result the loop refuses ({invalid})")
    compare(case, result, expected)
    return "result"


def run_case(case: Case) -> str:
    """Run one case; returns its outcome (``"result"``, ``"named error"``…), or raises ``InternalError``."""
    entry = decorate(case)
    values = make_values(case)
    try:
        expected, invalid = oracle(entry, values), None
    except Invalid as verdict:
        expected, invalid = None, verdict
    args, kwargs = build_call(entry, values, 0)
    statics = tuple(p.name for p in entry.params if p.kind == "static")
    function = jax.jit(entry.fn, static_argnames=statics or None) if case.jit else entry.fn
    first = call(case, entry, function, args, kwargs, expected, invalid)
    again = call(case, entry, function, args, kwargs, expected, invalid)  # shapes remembered, trace cached
    if again != first:
        raise InternalError(f"{case.describe()}: the first call gave a {first}, the second a {again}")
    return first


# -- the strategy -------------------------------------------------------------------------------------


def zero_candidates(template: Template) -> list[str]:
    """Batch names that may be size 0: an argument has them, every output too, and no output fixes them."""
    absent = template.absent()
    fixed = set(output_sizes(template.shape))
    in_params = {"*batch" if t == "*batch" else base_name(t) for p in template.params for t in p.layout.split()}
    return [n for n in template.batch if n in in_params and n not in absent and n not in fixed]


@st.composite
def cases(draw: st.DrawFn, entries: tuple[int, ...] | None = None) -> Case:
    """One case: a template, valid sizes, one corruption of its result, eager or jit."""
    index = draw(st.sampled_from(entries or range(len(CORPUS))))
    template = CORPUS[index]
    shape = template.shape
    component = draw(st.sampled_from([None, *range(len(template.outputs))])) if template.tuple_output else None
    leaf = False
    if template.tuple_output and component is None:
        corruption = draw(st.sampled_from(TUPLE_CORRUPTIONS))
    else:
        if template.results[component or 0] in ("tree", "unannotated"):
            leaf = draw(st.booleans())
        corruption = draw(st.sampled_from(ARRAY_CORRUPTIONS if leaf or template.results[component or 0] not in ("tree", "unannotated") else WHOLE_TREE_CORRUPTIONS))  # fmt: skip
    # A result varying over a dropped batch dim must vary in value too (the loop sees values): size >= 2.
    least = 2 if corruption == "varies" and template.absent() else 1
    sizes = {name: draw(st.integers(1, 3)) for name in sorted(dim_names(shape))}
    sizes |= {name: max(least, sizes[name]) for name in template.absent() & sizes.keys()}
    sizes |= output_sizes(shape)  # arguments that fit the output's fixed batch sizes: only results are wrong
    variadic = {"*rest": tuple(draw(st.lists(st.integers(1, 3), max_size=2)))}
    variadic |= {f"...{p.name}": tuple(draw(st.lists(st.integers(1, 3), max_size=2))) for p in template.params}
    full = tuple(draw(st.lists(st.integers(least, 3), min_size=least - 1, max_size=2)))
    broadcast = {}
    for param in template.params:
        length = len(full) if least == 2 else draw(st.integers(0, len(full)))
        tail = full[len(full) - length :]
        broadcast[param.name] = tuple(size if least == 2 or draw(st.booleans()) else 1 for size in tail)
    shrink = {p.name: draw(st.integers(0, 3)) == 0 for p in template.params}
    structure = tuple(draw(st.lists(st.sampled_from(["u", "v", "w"]), min_size=1, max_size=3, unique=True)))
    leaf_sizes = {key: draw(st.integers(1, 3)) for key in structure}
    candidates = zero_candidates(template)
    # No size-0 batch for a result varying over a dropped dim: the loop would see no example to vary,
    # while vmap, which traces, still sees the result batched over that dim and refuses it.
    empty = draw(st.sampled_from(candidates)) if candidates and least == 1 and draw(st.integers(0, 9)) == 0 else None
    return Case(index, Draw(sizes, variadic, broadcast, shrink, structure, leaf_sizes), corruption, component, leaf,
                draw(st.integers(0, 2**16)), empty, draw(st.booleans()), draw(st.integers(0, 2**32 - 1)))  # fmt: skip


# -- the tests ----------------------------------------------------------------------------------------


def examples_per_entry() -> int:
    """CI: a few cases per template (the whole file within ~40 s on 2 cores); long: 2 000 over the corpus."""
    if settings.get_current_profile_name() == "long":
        return -(-2_000 // len(CORPUS))
    return 6


def phases() -> tuple[Phase, ...]:
    """CI: no shrinking (a failing case's description says what it is, and shrinking each costs a minute)."""
    if settings.get_current_profile_name() == "long":
        return tuple(Phase)
    return (Phase.explicit, Phase.reuse, Phase.generate)


@pytest.fixture(autouse=True)
def checks_on():
    saved, config.checks = config.checks, True
    yield
    config.checks = saved


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[template.label for template in CORPUS])
def test_corrupted_results_give_the_loop_or_a_named_error(index):
    @settings(max_examples=examples_per_entry(), phases=phases(), report_multiple_bugs=False)
    @given(cases(entries=(index,)))
    def check(case):
        run_case(case)

    check()


def test_every_template_with_a_valid_body_gives_the_loop():
    """The oracle itself is sound: every template, its body unchanged, gives the loop's answer."""
    for index, template in enumerate(CORPUS):
        sizes = dict.fromkeys(dim_names(template.shape), 2) | output_sizes(template.shape)
        draw = Draw(sizes, {"*rest": (2,)} | {f"...{p.name}": (3,) for p in template.params},
                    {p.name: (2,) for p in template.params}, {}, ("u", "v"), {"u": 2, "v": 3})  # fmt: skip
        for use_jit in (False, True):
            case = Case(index, draw, "valid", None, False, 0, None, use_jit, seed=index)
            assert run_case(case) == "result", template.label


def test_corpus_covers_every_spec_form():
    labels = " ".join(template.label for template in CORPUS)
    for form in ("signature", "'n b -> n b'", "two batch names", "layouts=", "out=", "static", "*batch", "#name",
                 "PyTree", "'T'", "'?n'", "'2*f'", "tuple", "Optional", "without the batch dim", "absent",
                 "unannotated", "variadic", "ellipsis", "Bool", "Int"):  # fmt: skip
        assert form in labels, form


def test_the_oracle_refuses_what_the_annotations_refuse():
    """Spot checks of the oracle: a Python float is a scalar result; a list, a wrong size or a varying result is not."""
    scalar = next(i for i, t in enumerate(CORPUS) if t.fn is vecvec)
    absent = next(i for i, t in enumerate(CORPUS) if t.label == "batch dim absent from the result")
    for index, corruption, valid in ((scalar, "python float", True), (scalar, "python int", False),
                                     (absent, "list", False), (absent, "resize axis", False),
                                     (absent, "varies", False), (absent, "nan", True)):  # fmt: skip
        template = CORPUS[index]
        draw = Draw(dict.fromkeys(dim_names(template.shape), 2), {}, {p.name: (2,) for p in template.params}, {},
                    ("u",), {"u": 1})  # fmt: skip
        case = Case(index, draw, corruption, None, False, 0, None, False, seed=0)
        try:
            oracle(decorate(case), make_values(case))
        except Invalid:
            assert not valid, corruption
        else:
            assert valid, corruption


def test_errors_name_the_function_and_the_result():
    """A spot check of the message contract the fuzzer enforces."""
    index = next(i for i, t in enumerate(CORPUS) if t.label == "tuple result")
    draw = Draw({"n": 3, "b": 2}, {}, {}, {}, ("u",), {"u": 1})
    case = Case(index, draw, "int32", 1, False, 0, None, False, seed=0)
    entry = decorate(case)
    with pytest.raises(ShapeError) as info:
        entry.fn(jnp.ones((2, 3)))
    assert str(info.value) == "center: result 1 has dtype int32 (i32[2,3]) but its annotation admits only Float dtypes"
    assert names_result(str(info.value), case) and not names_result("center: result 0 has dtype int32", case)
