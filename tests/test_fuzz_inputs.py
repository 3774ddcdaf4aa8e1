"""Input fuzzing: every batched function, called with one argument corrupted, gives the naive loop's answer
or a ``ShapeError``/``TypeError`` naming the function and that parameter (docs/architecture.md, Guarantees: reliability).

A corpus of batched functions covers every spec form. Each case draws valid arguments from the
layouts *as this file states them* (not as shapedmap derived them), corrupts one argument (or none),
and calls the function eagerly or under ``jax.jit``. An independent oracle decides what must happen:
it matches each argument's batch dims by name, then loops over every batch index, checking each
example against the per-example annotations with jaxtyping (``jaxtyped("context")`` + ``is_bearable``,
which work under ``python -O`` too) and calling ``fn.fn``. If the oracle refuses the arguments, the
call must raise a named error; otherwise it must return the loop's result. Anything else (an
``IndexError``, a bare JAX error, a wrong or a silently accepted answer) is an internal error.

``python -m tests.fuzz inputs --cases 10000`` runs the long campaign and counts internal errors.
"""

import functools
import itertools
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from beartype.door import is_bearable
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float, Int, Key, PyTree, Shaped, jaxtyped

from shapedmap import ShapeError, batched

# A generator is one of the corruptions; JAX warns that it will stop treating one as a PyTree leaf.
pytestmark = pytest.mark.filterwarnings("ignore:Python iterable type 'generator':DeprecationWarning")

# -- the corpus: one per-example function per spec form ------------------------------------------


def mp(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    return a @ f


def sum_vector(x: Float[Array, "n"]) -> Float[Array, ""]:
    return x.sum()


def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    return jnp.vdot(x, y)


mv = batched(vv, "b a, a -> b")


def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
    return jnp.concatenate([u, v])


def step(x: Float[Array, "batch feat"], w: Float[Array, "feat hidden"]) -> Float[Array, "batch hidden"]:
    return jnp.tanh(x @ w)


def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"], bias: Float[Array, "out"]) -> Float[Array, "out"]:
    return x @ w + bias


def twice(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return 2 * x


def weighted(x: Float[Array, "n"], *, w: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.sum(x * w)


def scale(x: Float[Array, "n"], factor: int) -> Float[Array, "n"]:
    return x * factor


def apply_op(x: Float[Array, "n"], op: Callable[[Array], Array], mode="sum") -> Float[Array, ""]:
    return jnp.sum(op(x)) if mode == "sum" else jnp.max(op(x))


def matmat(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return jnp.dot(x, y)


def vecvec(x: Float[Array, "m"], y: Float[Array, "m"]) -> Float[Array, ""]:
    return jnp.dot(x, y)


def add(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
    return x + y


def double_tree(params: PyTree[Float[Array, "n"]]) -> PyTree[Float[Array, "n"]]:
    return jax.tree.map(lambda leaf: 2 * leaf, params)


def add_trees(x: PyTree[Float[Array, "n"], "T"], y: PyTree[Float[Array, "n"], "T"]) -> PyTree[Float[Array, "n"], "T"]:
    return jax.tree.map(jnp.add, x, y)


def pad_add(x: Float[Array, "n"], y: Float[Array, "n+1"]) -> Float[Array, "n+1"]:
    return y + jnp.concatenate([x, jnp.zeros(1, x.dtype)])


def diag_plus(m: Float[Array, "n n"], v: Float[Array, "n"]) -> Float[Array, "n"]:
    return jnp.diagonal(m) + v


def shift(x: Float[Array, "n"], bias: Optional[Float[Array, "n"]] = None) -> Float[Array, "n"]:  # noqa: UP045
    return x if bias is None else x + bias


class Model:
    """Batched methods: ``self`` is a static parameter."""

    factor = 3.0

    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * self.factor

    @classmethod
    @batched("b")
    def build(cls, x: Float[Array, "n"]) -> Float[Array, ""]:
        return jnp.sum(x) * cls.factor


def total(*xs: Float[Array, "n"]) -> Float[Array, ""]:
    return sum((x.sum() for x in xs), start=jnp.float32(0))


def count(x: Int[Array, "n"]) -> Int[Array, ""]:
    return x.sum()


def rotate(p: Float[Array, "xyz=3"]) -> Float[Array, "3"]:
    return p[::-1]


def norm(x: Float[Array, "..."]) -> Float[Array, ""]:
    return jnp.sqrt(jnp.sum(x**2))


def noise(key: Key[Array, ""], x: Float[Array, "n"]) -> Float[Array, "n"]:
    return x + jax.random.normal(key, x.shape)


def center(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
    return x.mean(), x - x.mean()


def unannotated_return(x: Float[Array, "n"]):
    return x * 2


def generic(x: jax.Array, y: np.ndarray) -> jax.Array:
    return x + y


def any_number(x: Float[Array, "n"] | Int[Array, "n"]) -> Shaped[Array, ""]:
    return x.sum()


def scale_offset(x: Float[Array, "n"], factor: Float[Array, ""], *, offset: float) -> Float[Array, "n"]:
    return x * factor + offset


def rest_sum(x: Float[Array, "n *rest"]) -> Float[Array, "*rest"]:
    return x.sum(axis=0)


def rest_double(x: Float[Array, "*rest"]) -> Float[Array, "*rest"]:
    return 2 * x


def per_leaf(x: PyTree[Float[Array, "?n"], "T"], y: PyTree[Float[Array, "?n"], "T"]) -> PyTree[Float[Array, "?n"], "T"]:
    return jax.tree.map(jnp.multiply, x, y)


@dataclass(frozen=True)
class Param:
    """One parameter as this test states it: its batched layout and what values it takes.

    ``kind``: ``array``, ``tree`` (a PyTree of arrays, ``structure`` its name), ``varargs``
    (``*xs``, one array per entry) or ``static`` (``valid`` values to draw from, ``invalid``
    ones its annotation refuses).
    """

    name: str
    layout: str = ""
    kind: str = "array"
    dtype: str = "float"
    optional: bool = False
    keyword_only: bool = False
    structure: str | None = None
    valid: tuple[Any, ...] = ()
    invalid: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Entry:
    """A batched function, its parameters and output layouts, and its batch names (outermost first)."""

    label: str
    fn: Any
    params: tuple[Param, ...]
    outputs: tuple[str, ...]
    batch: tuple[str, ...]
    name: str = ""
    tuple_output: bool = False
    prefix: tuple[Any, ...] = ()

    @property
    def statics(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.kind == "static")


def _a(name, layout, **options):
    return Param(name, layout, **options)


def _s(name, valid, invalid=(), **options):
    return Param(name, kind="static", valid=valid, invalid=invalid, **options)


MODEL = Model()

CORPUS: tuple[Entry, ...] = (
    Entry("batch name", batched(mp, "graph"), (_a("a", "graph node node"), _a("f", "graph node feat")),
          ("graph node feat",), ("graph",)),
    Entry("two batch names", batched(mp, "graph time"),
          (_a("a", "graph time node node"), _a("f", "graph time node feat")), ("graph time node feat",),
          ("graph", "time")),
    Entry("signature, non-leading", batched(sum_vector, "n col -> col"), (_a("x", "n col"),), ("col",), ("col",)),
    Entry("signature, shared", mv, (_a("x", "b a"), _a("y", "a")), ("b",), ("b",)),
    Entry("batched of batched", batched(mv, "b a, a c -> b c"), (_a("x", "b a"), _a("y", "a c")), ("b c",), ("c",),
          name="vv"),
    Entry("symbolic output", batched(concat, "i f, j f -> i j 2*f"), (_a("u", "i f"), _a("v", "j f")),
          ("i j 2*f",), ("i", "j")),
    Entry("non-leading, unmapped", batched(step, "batch time feat, feat hidden -> batch time hidden"),
          (_a("x", "batch time feat"), _a("w", "feat hidden")), ("batch time hidden",), ("time",)),
    Entry("layouts=", batched(linear, "batch", layouts={"w": "feat out", "bias": "out"}),
          (_a("x", "batch feat"), _a("w", "feat out"), _a("bias", "out")), ("batch out",), ("batch",)),
    Entry("out=", batched(twice, "b", out="n b"), (_a("x", "b n"),), ("n b",), ("b",)),
    Entry("keyword-only array", batched(weighted, "b"), (_a("x", "b n"), _a("w", "b n", keyword_only=True)),
          ("b",), ("b",)),
    Entry("static int", batched(scale, "b"), (_a("x", "b n"), _s("factor", (2, 3, True), ("three", 2.5, None))),
          ("b n",), ("b",)),
    Entry("static callable and unannotated", batched(apply_op, "b"),
          (_a("x", "b n"), _s("op", (jnp.sin, jnp.cos), (3, "sin")), _s("mode", ("sum", "max"))), ("b",), ("b",)),
    Entry("*batch", batched(matmat, "*batch"), (_a("x", "*batch n m"), _a("y", "*batch m k")), ("*batch n k",),
          ("*batch",)),
    Entry("*batch, scalar result", batched(vecvec, "*batch"), (_a("x", "*batch m"), _a("y", "*batch m")),
          ("*batch",), ("*batch",)),
    Entry("#name", batched(add, "#graph"), (_a("x", "#graph n"), _a("y", "#graph n")), ("graph n",), ("graph",)),
    Entry("PyTree", batched(double_tree, "b"), (_a("params", "b n", kind="tree"),), ("b n",), ("b",)),
    Entry("PyTree 'T'", batched(add_trees, "b"),
          (_a("x", "b n", kind="tree", structure="T"), _a("y", "b n", kind="tree", structure="T")), ("b n",), ("b",)),
    Entry("treepath '?n'", batched(per_leaf, "b"),
          (_a("x", "b ?n", kind="tree", structure="T"), _a("y", "b ?n", kind="tree", structure="T")), ("b ?n",),
          ("b",)),
    Entry("symbolic argument", batched(pad_add, "b"), (_a("x", "b n"), _a("y", "b n+1")), ("b n+1",), ("b",)),
    Entry("repeated dims", batched(diag_plus, "b"), (_a("m", "b n n"), _a("v", "b n")), ("b n",), ("b",)),
    Entry("Optional", batched(shift, "b"), (_a("x", "b n"), _a("bias", "b n", optional=True)), ("b n",), ("b",)),
    Entry("method", Model.apply, (_s("self", (MODEL,), (None,)), _a("x", "b n")), ("b n",), ("b",),
          name="Model.apply"),
    Entry("*args", batched(total, "b"), (_a("xs", "b n", kind="varargs"),), ("b",), ("b",)),
    Entry("Int", batched(count, "b"), (_a("x", "b n", dtype="int"),), ("b",), ("b",)),
    Entry("fixed size", batched(rotate, "points"), (_a("p", "points xyz=3"),), ("points 3",), ("points",)),
    Entry("ellipsis", batched(norm, "b"), (_a("x", "b ..."),), ("b",), ("b",)),
    Entry("PRNG keys", batched(noise, "b"), (_a("key", "b", dtype="key"), _a("x", "b n")), ("b n",), ("b",)),
    Entry("output-only batch dim", batched(twice, "n -> rep=3 n"), (_a("x", "n"),), ("rep=3 n",), ("rep",)),
    Entry("batch size fixed by out=", batched(twice, "b", out="b=3 n"), (_a("x", "b n"),), ("b=3 n",), ("b",)),
    Entry("tuple result", batched(center, "b"), (_a("x", "b n"),), ("b", "b n"), ("b",), tuple_output=True),
    Entry("unannotated return", batched(unannotated_return, "b"), (_a("x", "b n"),), ("b n",), ("b",)),
    Entry("np.ndarray hint", batched(generic, "b"), (_a("x", "b *rest"), _a("y", "b *rest")), ("b *rest",), ("b",)),
    Entry("dtype union", batched(any_number, "b"), (_a("x", "b n", dtype="number"),), ("b",), ("b",)),
    Entry("partial, scalar unmapped", batched(functools.partial(scale_offset, offset=1.0), "b n, -> b n"),
          (_a("x", "b n"), _a("factor", ""), _s("offset", (1.0, 2.5), ("one",), keyword_only=True)), ("b n",), ("b",),
          name="scale_offset"),
    Entry("core variadic after", batched(rest_sum, "b"), (_a("x", "b n *rest"),), ("b *rest",), ("b",)),
    Entry("batch after a variadic", batched(rest_double, "*rest b -> *rest b"), (_a("x", "*rest b"),),
          ("*rest b",), ("b",)),
    Entry("classmethod", Model.build, (_a("x", "b n"),), ("b",), ("b",), name="Model.build", prefix=(Model,)),
)  # fmt: skip


def entry_name(entry: Entry) -> str:
    """The function name errors must give."""
    if entry.name:
        return entry.name
    fn = entry.fn.fn
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn.__qualname__.rsplit("<locals>.", 1)[-1]


# -- drawing valid arguments --------------------------------------------------------------------


def is_batch(token: str, entry: Entry) -> bool:
    return base_name(token) in entry.batch or token == "*batch"


def base_name(token: str) -> str:
    """``#graph`` -> ``graph``, ``rep=3`` -> ``rep``, ``?n`` -> ``n``; other tokens unchanged."""
    return token.lstrip("#?").split("=")[0]


def is_variadic(token: str) -> bool:
    return token == "..." or token.startswith("*")


def token_size(token: str, sizes: dict[str, int]) -> int:
    """The size of a single-dim token (a name, ``3``, ``xyz=3``, ``n+1``, ``2*f``)."""
    body = token.lstrip("#?")
    if "=" in body:
        return int(body.split("=")[1])
    if body.isdigit():
        return int(body)
    if body.isidentifier():
        return sizes[body]
    functions = {"min": min, "max": max, "abs": abs}
    return int(eval(body, functions, {k: v for k, v in sizes.items() if k not in functions}))


@dataclass
class Draw:
    """The choices behind one case's valid arguments."""

    sizes: dict[str, int]
    variadic: dict[str, tuple[int, ...]]
    broadcast: dict[str, tuple[int, ...]]
    shrink: dict[str, bool]
    structure: tuple[str, ...]
    leaf_sizes: dict[str, int] = field(default_factory=dict)


def shape_of(param: Param, entry: Entry, draw: Draw, leaf: str = "") -> tuple[int, ...]:
    shape: list[int] = []
    for token in param.layout.split():
        if token == "*batch":
            shape.extend(draw.broadcast[param.name])
        elif is_variadic(token):
            shape.extend(draw.variadic[token if token != "..." else f"...{param.name}"])
        elif token.startswith("?"):
            shape.append(draw.leaf_sizes[leaf])
        elif token.startswith("#") and draw.shrink.get(param.name, False):
            shape.append(1)
        else:
            shape.append(token_size(token, draw.sizes))
    return tuple(shape)


def make_leaf(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> Any:
    if dtype == "key":
        return jax.random.split(jax.random.key(int(rng.integers(2**31))), shape)
    if dtype == "int":
        return jnp.asarray(rng.integers(-4, 5, size=shape), jnp.int32)
    if dtype == "number" and rng.random() < 0.5:
        return jnp.asarray(rng.integers(-4, 5, size=shape), jnp.int32)
    return jnp.asarray(rng.normal(size=shape), jnp.float32)


def make_value(param: Param, entry: Entry, draw: Draw, rng: np.random.Generator) -> Any:
    if param.kind == "static":
        return param.valid[int(rng.integers(len(param.valid)))]
    if param.kind == "varargs":
        return tuple(make_leaf(shape_of(param, entry, draw), param.dtype, rng) for _ in range(1 + int(rng.integers(3))))
    if param.kind == "tree":
        leaves = {key: make_leaf(shape_of(param, entry, draw, key), param.dtype, rng) for key in draw.structure}
        if param.structure is None and rng.random() < 0.3:
            return (leaves[draw.structure[0]], list(leaves.values()))  # a tuple holding a list
        return leaves
    return make_leaf(shape_of(param, entry, draw), param.dtype, rng)


# -- corruptions ----------------------------------------------------------------------------------

VALUE_CORRUPTIONS = (
    "none", "str", "dict", "dict of str", "nested list", "list of array", "object", "type",
    "python float", "python int", "python bool", "python complex", "big int", "numpy scalar", "0-d array",
    "numpy", "numpy float64", "numpy str", "int32", "bool", "complex64", "uint8", "float16",
    "extra dim", "missing dim", "resize axis", "zero axis", "swap axes", "nan", "inf",
)  # fmt: skip
VALUE_CORRUPTIONS += ("fake array", "raising repr", "raising shape", "generator", "numpy object", "mixed-key dict")
VALUE_CORRUPTIONS += ("ShapeDtypeStruct",)
GLOBAL_CORRUPTIONS = ("valid", "size-0 batch", "unknown keyword", "missing argument", "extra positional")
STATIC_CORRUPTIONS = ("bad static", "none", "str", "object", "array for static")


class FakeArray:
    """Has a shape and a dtype, but is no array JAX can convert."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.shape, self.dtype = shape, dtype


class RaisingRepr:
    """An object whose ``repr`` fails (error messages must still be written)."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class RaisingShape:
    """An object whose ``shape`` raises something other than ``AttributeError``."""

    @property
    def shape(self) -> tuple[int, ...]:
        raise RuntimeError("no shape")


def corrupt_leaf(leaf: Any, kind: str, rng: np.random.Generator) -> Any:
    """One corruption of one array (or array-like) value."""
    shape = tuple(np.shape(leaf)) if hasattr(leaf, "shape") else ()
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.dtype("float32")
    simple = {
        "fake array": lambda: FakeArray(shape, dtype),
        "raising repr": RaisingRepr,
        "raising shape": RaisingShape,
        "generator": lambda: (i for i in range(3)),
        "numpy object": lambda: np.full(shape, None, dtype=object),
        "mixed-key dict": lambda: {1: leaf, "a": leaf},
        "ShapeDtypeStruct": lambda: jax.ShapeDtypeStruct(shape, dtype),
        "none": lambda: None,
        "str": lambda: "abc",
        "dict": lambda: {"leaf": leaf},
        "dict of str": lambda: {"leaf": "abc"},
        "list of array": lambda: [leaf],
        "object": object,
        "type": lambda: float,
        "python float": lambda: 1.5,
        "python int": lambda: 2,
        "python bool": lambda: True,
        "python complex": lambda: 1 + 2j,
        "big int": lambda: 2**70,
        "numpy scalar": lambda: np.float32(1.5),
        "0-d array": lambda: jnp.float32(1.5),
        "numpy str": lambda: np.full(shape, "a"),
    }
    if kind in simple:
        return simple[kind]()
    if not hasattr(leaf, "shape") or jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        if kind in ("numpy", "nan", "inf", "float16", "numpy float64"):
            return leaf  # keys have no NumPy or float form: leave them as they are
        leaf = jnp.zeros(shape, jnp.float32)
    array = np.asarray(leaf)
    dtypes = {"numpy float64": np.float64, "int32": np.int32, "bool": np.bool_, "complex64": np.complex64}
    dtypes |= {"uint8": np.uint8, "float16": np.float16}
    if kind == "numpy":
        return array
    if kind == "nested list":
        return array.tolist()
    if kind in dtypes:
        converted = array.astype(dtypes[kind])
        return converted if kind == "numpy float64" else jnp.asarray(converted)
    if kind in ("nan", "inf") and array.size:
        array = array.astype(np.float32) if array.dtype.kind != "f" else array.copy()
        array.flat[int(rng.integers(array.size))] = np.nan if kind == "nan" else -np.inf
        return jnp.asarray(array)
    if kind == "extra dim":
        return jnp.expand_dims(leaf, int(rng.integers(len(shape) + 1)))
    if shape and kind == "missing dim":
        return jnp.take(leaf, 0, axis=int(rng.integers(len(shape)))) if 0 not in shape else leaf.sum(axis=0)
    if shape and kind in ("resize axis", "zero axis"):
        axis = int(rng.integers(len(shape)))
        new = 0 if kind == "zero axis" else max(1, shape[axis] + int(rng.choice([-1, 1, 2])))
        resized = [*shape]
        resized[axis] = new
        return jnp.resize(leaf, tuple(resized)) if np.prod(resized) and leaf.size else jnp.zeros(resized, leaf.dtype)
    if len(shape) >= 2 and kind == "swap axes":
        return jnp.swapaxes(leaf, 0, -1)
    return leaf


# -- the oracle: the naive loop over batch indices --------------------------------------------


class Invalid(Exception):
    """The oracle's verdict: these arguments must be refused.

    ``raised`` is the exception the per-example function itself raised on values its annotations
    admit (an unannotated static parameter): the batched call must let that same error through.
    """

    def __init__(self, message: str, raised: type[BaseException] | None = None) -> None:
        super().__init__(message)
        self.raised = raised


class Varies(Invalid):
    """The result changes along a batch dim its layout lacks: the call must be refused."""


def to_array(leaf: Any) -> Any:
    """What shapedmap promises to accept as an array: JAX arrays, NumPy numbers, Python numbers."""
    if isinstance(leaf, jax.Array):
        return leaf
    if isinstance(leaf, np.ndarray | np.generic) and leaf.dtype.kind in "biufc":
        return jnp.asarray(leaf)
    if isinstance(leaf, bool | int | float | complex):
        try:
            return jnp.asarray(leaf)
        except (OverflowError, TypeError) as error:
            raise Invalid(f"{leaf!r} is no JAX number: {error}") from None
    raise Invalid(f"not an array: {type(leaf).__name__}")


def split_tokens(tokens: list[str], shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Pair each token with the sizes it covers; a wrong rank is ``Invalid``."""
    variadic = next((i for i, t in enumerate(tokens) if is_variadic(t)), None)
    if variadic is None:
        if len(shape) != len(tokens):
            raise Invalid(f"rank {len(shape)} for {tokens}")
        return [(t, (s,)) for t, s in zip(tokens, shape, strict=True)]
    after = len(tokens) - variadic - 1
    if len(shape) < len(tokens) - 1:
        raise Invalid(f"rank {len(shape)} for {tokens}")
    stop = len(shape) - after
    pieces = [(t, (s,)) for t, s in zip(tokens[:variadic], shape[:variadic], strict=True)]
    pieces.append((tokens[variadic], tuple(shape[variadic:stop])))
    pieces += [(t, (s,)) for t, s in zip(tokens[variadic + 1 :], shape[stop:], strict=True)]
    return pieces


@dataclass
class Loop:
    """Batch sizes bound from the arguments, and how each leaf is indexed."""

    sizes: dict[str, int] = field(default_factory=dict)
    broadcast: tuple[int, ...] | None = None

    def bind(self, entry: Entry, tokens: list[str], shape: tuple[int, ...]) -> None:
        for token, sizes in split_tokens(tokens, shape):
            if token == "*batch":
                try:
                    self.broadcast = tuple(np.broadcast_shapes(self.broadcast or (), sizes))
                except ValueError:
                    raise Invalid(f"*batch {self.broadcast} vs {sizes}") from None
            elif token.endswith("__core") and base_name(token[: -len("__core")]) in entry.batch:
                name, (size,) = base_name(token[: -len("__core")]), sizes  # a core dim sizing a batch dim
                if self.sizes.get(name) not in (None, size):
                    raise Invalid(f"{name}: {self.sizes[name]} vs {size}")
                self.sizes[name] = size
            elif base_name(token) in entry.batch:
                name, (size,) = base_name(token), sizes
                if "=" in token and size != int(token.split("=")[1]):
                    raise Invalid(f"{token} has size {size}")
                if token.startswith("#") and size == 1:
                    self.sizes.setdefault(name, None)
                    continue
                if self.sizes.get(name) not in (None, size):
                    raise Invalid(f"{name}: {self.sizes[name]} vs {size}")
                self.sizes[name] = size

    def axes(self, entry: Entry) -> list[tuple[str, int]]:
        """(key, size) of every loop axis, outermost first: ``*batch`` dims, then the names.

        A name only the outputs have takes their ``rep=3``; one that only size-1 ``#name`` dims have
        is 1; one no array has at all (every argument over it an empty PyTree) cannot be sized.
        """
        fixed = {base_name(t): int(t.split("=")[1]) for out in entry.outputs for t in out.split() if "=" in t}
        keys = [(f"*{i}", size) for i, size in enumerate(self.broadcast or ())]
        for name in entry.batch:
            if name == "*batch":
                continue
            if name not in self.sizes and name not in fixed:
                raise Invalid(f"no array gives the size of '{name}'")
            if name in fixed and self.sizes.get(name) not in (None, fixed[name]):
                raise Invalid(f"{name}: {self.sizes[name]} in the arguments, {fixed[name]} in the outputs")
            size = self.sizes.get(name)
            keys.append((name, fixed.get(name, 1 if size is None else size)))
        return keys

    def index(self, entry: Entry, tokens: list[str], shape: tuple[int, ...], point: dict[str, int]) -> tuple:
        index: list[Any] = []
        for token, sizes in split_tokens(tokens, shape):
            if token == "*batch":
                offset = len(self.broadcast or ()) - len(sizes)
                index.extend(0 if size == 1 else point[f"*{offset + j}"] for j, size in enumerate(sizes))
            elif base_name(token) in entry.batch:
                index.append(0 if sizes == (1,) and token.startswith("#") else point[base_name(token)])
            else:
                index.extend(slice(None) for _ in sizes)
        return tuple(index)


def per_example_target(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def type_hints(fn: Any) -> dict[str, Any]:
    return typing.get_type_hints(per_example_target(fn), include_extras=True)


def place_output(tokens: list[str], entry: Entry, stacked: np.ndarray, axes: list[tuple[str, int]]) -> np.ndarray:
    """Move the loop axes (leading in ``stacked``) to where ``tokens`` puts the batch dims.

    A loop axis the layout lacks must not change the result (``out_axes=None``): it is dropped,
    or the call is ``Invalid`` (``Varies``).
    """
    keys = [key for key, _ in axes]
    named = {base_name(t) for t in tokens} | ({"*"} if "*batch" in tokens else set())
    for position in reversed(range(len(keys))):
        if (keys[position].lstrip("*").isdigit() and "*" in named) or keys[position] in named:
            continue
        first = np.take(stacked, [0], axis=position)
        if not np.allclose(stacked, first, equal_nan=True, rtol=1e-5, atol=1e-5):
            raise Varies(f"the result varies over '{keys[position]}', which its layout {' '.join(tokens)!r} lacks")
        stacked = np.squeeze(first, axis=position)
        del keys[position]
    core_rank = stacked.ndim - len(keys)
    core_tokens = [t for t in tokens if not (is_batch(t, entry) or base_name(t) in entry.batch)]
    widths = [core_rank - (len(core_tokens) - 1) if is_variadic(t) else 1 for t in core_tokens]
    order: list[int] = []
    core_axis = len(keys)
    core_iter = iter(widths)
    for token in tokens:
        if token == "*batch":
            order.extend(keys.index(key) for key in keys if key.startswith("*"))
        elif base_name(token) in entry.batch:
            order.append(keys.index(base_name(token)))
        else:
            width = next(core_iter)
            order.extend(range(core_axis, core_axis + width))
            core_axis += width
    return np.transpose(stacked, order)


def oracle(entry: Entry, values: dict[str, Any]) -> Any:
    """The naive loop's result for these arguments, or ``Invalid``."""
    loop = Loop()
    arrays: dict[str, Any] = {}
    for param in entry.params:
        value = values[param.name]
        if param.kind == "static" or (param.optional and value is None):
            arrays[param.name] = value
            continue
        if param.kind == "array":
            value = to_array(value)
            leaves = [value]
        elif param.kind == "varargs":
            value = tuple(to_array(item) for item in value)  # one array per entry
            leaves = list(value)
        else:
            try:
                value = jax.tree.map(to_array, value)
            except (TypeError, ValueError) as error:  # not a PyTree JAX can flatten
                raise Invalid(f"{type(error).__name__}: {error}") from None
            leaves = jax.tree.leaves(value)
        for leaf in leaves:
            loop.bind(entry, param.layout.split(), tuple(leaf.shape))
        arrays[param.name] = value
    return run_loop(entry, arrays, loop, functools.partial(call_example, entry))


def run_loop(entry: Entry, arrays: dict[str, Any], loop: Loop, call: Callable[[dict[str, Any]], Any]) -> Any:
    """The naive loop: ``call`` on every example, results stacked; a size-0 batch calls one
    stand-in example for the result's core shapes and dtypes."""
    axes = loop.axes(entry)
    if any(size == 0 for _, size in axes):
        padded = map_arrays(entry, arrays, lambda _, leaf: pad_zero_axes(leaf))
        out = call(example_values(entry, padded, loop, {key: 0 for key, _ in axes}))
        return stack_results(entry, [out], [(key, 1) for key, _ in axes], sizes=axes)
    points = itertools.product(*([(key, i) for i in range(size)] for key, size in axes))
    return stack_results(entry, [call(example_values(entry, arrays, loop, dict(point))) for point in points], axes)


def map_arrays(entry: Entry, arrays: dict[str, Any], leaf_fn: Callable[[Param, Any], Any]) -> dict[str, Any]:
    """``leaf_fn(param, leaf)`` on every array leaf; static values and ``None`` pass through."""
    return {
        p.name: arrays[p.name]
        if p.kind == "static" or arrays[p.name] is None
        else jax.tree.map(lambda leaf, p=p: leaf_fn(p, leaf), arrays[p.name])
        for p in entry.params
    }


def example_values(entry: Entry, arrays: dict[str, Any], loop: Loop, point: dict[str, int]) -> dict[str, Any]:
    """The values of the example at ``point`` (one index per batch key)."""
    return map_arrays(entry, arrays, lambda p, leaf: leaf[loop.index(entry, p.layout.split(), leaf.shape, point)])


def call_example(
    entry: Entry,
    examples: dict[str, Any],
    *,
    refused: type[Exception] = Invalid,
    as_result: Callable[[Any], Any] = lambda out: out,
) -> Any:
    """Check one example against the per-example annotations (jaxtyping), then call ``fn.fn``.

    An example its annotations refuse raises ``refused``; ``as_result`` reads the result as
    ``jax.vmap`` would, before it is checked against the return annotation.
    """
    fn = entry.fn.fn
    hints = {name: jax.Array if hint is np.ndarray else hint for name, hint in type_hints(fn).items()}
    args, kwargs = list(entry.prefix), {}
    structures: dict[str, Any] = {}
    with jaxtyped("context"):
        for param in entry.params:
            value = examples[param.name]
            hint = hints.get(param.name)
            items = value if param.kind == "varargs" else (value,)
            if hint is not None and not all(bearable(item, hint, structures) for item in items):
                raise refused(f"example of {param.name} does not match its annotation")
            if param.kind == "varargs":
                args.extend(value)
            elif param.keyword_only:
                kwargs[param.name] = value
            else:
                args.append(value)
        try:
            out = fn(*args, **kwargs)
        except Exception as error:
            raise Invalid(f"the per-example function raised {type(error).__name__}: {error}", type(error)) from None
        out = as_result(out)
        if "return" in hints and not bearable(out, hints["return"], structures):
            raise Invalid("the per-example result does not match its annotation")
    return out


def bearable(value: Any, hint: Any, structures: dict[str, Any]) -> bool:
    """``is_bearable`` in the current jaxtyping context, with PyTrees checked leaf by leaf.

    jaxtyping's own PyTree check admits ``None`` for any PyTree and does not unify the leaves' dims
    with the other arguments, so here a named structure (``"T"``) must match exactly, every leaf is
    checked as an array (unifying its dims), and ``?n`` is one name per leaf path.
    """
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        return len(value) == len(items) and all(bearable(v, h, structures) for v, h in zip(value, items, strict=True))
    if not (isinstance(hint, type) and issubclass(hint, PyTree) and hasattr(hint, "leaftype")):
        return _is_bearable(value, hint)
    structure = jax.tree.structure(value)
    if hint.structure is not None and structures.setdefault(hint.structure, structure) != structure:
        return False
    leaf_type = hint.leaftype
    for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
        dims = leaf_type.dim_str.replace("?n", f"n_{abs(hash(jax.tree_util.keystr(path)))}")
        if not _is_bearable(leaf, leaf_type.dtype[Array, dims]):
            return False
    return True


def _is_bearable(value: Any, hint: Any) -> bool:
    """``is_bearable``; a symbolic dim jaxtyping cannot evaluate (``n//0``) refuses the value."""
    try:
        return is_bearable(value, hint)
    except ArithmeticError:
        return False


def pad_zero_axes(leaf: Any) -> Any:
    shape = tuple(max(size, 1) for size in leaf.shape)
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return jax.random.split(jax.random.key(0), shape)
    return jnp.zeros(shape, leaf.dtype)


def stack_results(entry: Entry, results: list[Any], axes: list[tuple[str, int]], sizes=None) -> Any:
    """The loop's outputs stacked over the loop axes and moved into place; ``sizes`` empties them."""
    loop_shape = tuple(size for _, size in axes)
    outputs = [r if entry.tuple_output else (r,) for r in results]
    placed = []
    for index, tokens in enumerate(entry.outputs):
        leaves_per_point = [jax.tree.leaves(out[index]) for out in outputs]
        treedef = jax.tree.structure(outputs[0][index])
        leaves = []
        for position in range(len(leaves_per_point[0])):
            stacked = np.stack([np.asarray(leaves[position]) for leaves in leaves_per_point])
            stacked = stacked.reshape(loop_shape + stacked.shape[1:])
            if sizes is not None:
                stacked = np.zeros(tuple(size for _, size in sizes) + stacked.shape[len(loop_shape) :], stacked.dtype)
            leaves.append(place_output(tokens.split(), entry, stacked, axes if sizes is None else sizes))
        placed.append(jax.tree.unflatten(treedef, leaves))
    return tuple(placed) if entry.tuple_output else placed[0]


# -- one case -----------------------------------------------------------------------------------


class InternalError(AssertionError):
    """shapedmap broke a promise of docs/architecture.md, Guarantees (reliability, results, specs) on this case."""


@dataclass(frozen=True)
class Case:
    """Everything drawn for one call."""

    entry: int
    draw: Draw
    corruption: str
    target: str | None
    keywords: int
    jit: bool
    seed: int

    def describe(self) -> str:
        entry = CORPUS[self.entry]
        where = f" on '{self.target}'" if self.target else ""
        return f"{entry.label} ({entry_name(entry)}): {self.corruption}{where}, {'jit' if self.jit else 'eager'}"


_JITTED: dict[int, Any] = {}


def jitted(entry: Entry) -> Any:
    """One ``jax.jit`` per corpus entry (statics by name), so its compile cache is reused."""
    key = id(entry)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(entry.fn, static_argnames=entry.statics or None)
    return _JITTED[key]


def build_call(entry: Entry, values: dict[str, Any], keywords: int) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments; the last ``keywords`` positional parameters go by keyword."""
    positional = [p for p in entry.params if not p.keyword_only and p.kind != "varargs"]
    by_keyword = {p.name for p in positional[len(positional) - keywords :]} if keywords else set()
    args, kwargs = [], {}
    for param in entry.params:
        value = values[param.name]
        if param.kind == "varargs":
            args.extend(value if isinstance(value, tuple) else (value,))
        elif param.keyword_only or param.name in by_keyword:
            if not (param.optional and value is None and param.name not in by_keyword):
                kwargs[param.name] = value
        else:
            args.append(value)
    return args, kwargs


def make_values(case: Case) -> tuple[dict[str, Any], str | None]:
    """Valid arguments, then the corruption; returns the values and the corrupted parameter."""
    entry = CORPUS[case.entry]
    rng = np.random.default_rng(case.seed)
    draw = case.draw
    if case.corruption == "size-0 batch":
        names = [n for n in entry.batch if n != "*batch" and n in {base_name(t) for p in entry.params
                                                                   for t in p.layout.split()}]  # fmt: skip
        if names:
            draw = Draw({**draw.sizes, names[int(rng.integers(len(names)))]: 0}, draw.variadic, draw.broadcast,
                        {}, draw.structure, draw.leaf_sizes)  # fmt: skip
        else:
            draw = Draw(draw.sizes, draw.variadic, {k: (0,) for k in draw.broadcast}, {}, draw.structure,
                        draw.leaf_sizes)  # fmt: skip
    values = {param.name: make_value(param, entry, draw, rng) for param in entry.params}
    target = case.target
    if target is None:
        return values, None
    param = next(p for p in entry.params if p.name == target)
    value = values[target]
    if param.kind == "static":
        bad = {"bad static": param.invalid[0] if param.invalid else "abc", "none": None, "str": "abc"}
        bad |= {"object": object(), "array for static": jnp.ones(3)}
        if case.corruption == "bad static" and param.invalid:
            bad["bad static"] = param.invalid[int(rng.integers(len(param.invalid)))]
        values[target] = bad[case.corruption]
    elif param.kind == "array":
        values[target] = corrupt_leaf(value, case.corruption, rng)
    else:
        leaves, treedef = jax.tree.flatten(value)
        if param.kind == "tree" and case.corruption in ("none", "dict", "str") and rng.random() < 0.5:
            values[target] = corrupt_leaf(value, case.corruption, rng)
        elif case.corruption == "dict of str" and isinstance(value, dict) and param.kind == "tree":
            values[target] = {**value, "extra": jnp.zeros(3)} if rng.random() < 0.5 else dict(list(value.items())[1:])
        else:
            position = int(rng.integers(len(leaves)))
            leaves[position] = corrupt_leaf(leaves[position], case.corruption, rng)
            values[target] = treedef.unflatten(leaves) if param.kind == "tree" else tuple(leaves)
    return values, target


_BLAMES_POSITIONS = re.compile(r"\bargs\[\d+\]|_dynamic_args|\barg(ument)? ?\d\b|in_axes\[\d")


def names_parameter(text: str, parameter: str) -> bool:
    """Does a message name ``parameter`` (``'x'``, ``parameter 'x'``, or JAX's ``at path x``)?"""
    return f"'{parameter}'" in text or re.search(rf"\bpath (is )?{re.escape(parameter)}(\W|$)", text) is not None


def run_case(case: Case) -> str:
    """Run one case; returns its outcome (``"result"``, ``"named error"``…), or raises ``InternalError``."""
    entry = CORPUS[case.entry]
    values, target = make_values(case)
    try:
        expected, invalid = oracle(entry, values), None
    except Invalid as verdict:
        expected, invalid = None, verdict
    args, kwargs = build_call(entry, values, case.keywords)
    if case.corruption in ("unknown keyword", "missing argument", "extra positional"):
        args, kwargs, target = miscall(entry, values, case.corruption)
        expected, invalid = None, Invalid(case.corruption)
    function = jitted(entry) if case.jit else entry.fn
    return judge(case, entry, function, (args, kwargs), target, expected, invalid)


def judge(
    case: Any, entry: Entry, function: Any, call: tuple[list[Any], dict[str, Any]], target: str | None,
    expected: Any, invalid: Invalid | None,
) -> str:  # fmt: skip
    """Call ``function`` and hold the outcome to the oracle's verdict (``case`` has ``describe()`` and ``jit``)."""
    args, kwargs = call
    try:
        result = function(*args, **kwargs)
    except Exception as error:
        return check_error(case, entry, target, invalid, error)
    if invalid is not None:
        raise InternalError(f"{case.describe()}: accepted an input the loop refuses ({invalid})")
    compare(case, result, expected)
    return "result"


def miscall(entry: Entry, values: dict[str, Any], kind: str) -> tuple[list[Any], dict[str, Any], str | None]:
    """Arguments that do not bind: an unknown keyword, a required one left out, one too many."""
    if kind == "unknown keyword":
        args, kwargs = build_call(entry, values, 0)
        return args, {**kwargs, "bogus": 1}, "bogus"
    if kind == "extra positional":
        args, kwargs = build_call(entry, values, 0)
        return [*args, jnp.ones(2)], kwargs, None
    by_keyword = sum(not p.keyword_only and p.kind != "varargs" for p in entry.params)
    args, kwargs = build_call(entry, values, by_keyword)
    required = next(p.name for p in entry.params if p.name in kwargs and not p.optional and p.kind != "static")
    del kwargs[required]
    return args, kwargs, required


def check_error(case: Any, entry: Entry, target: str | None, invalid: Invalid | None, error: Exception) -> str:
    """An error is right if the loop refuses the call too and the error names the function and parameter.

    Two errors are not shapedmap's to name: one the per-example function itself raises on values its
    annotations admit (it must come through unchanged, noted with the map it happened in), and
    ``jax.jit``'s own refusal of an argument it cannot trace, raised before shapedmap runs.
    """
    text, kind, name = str(error), type(error).__name__, entry_name(entry)
    found = f"{case.describe()}: {kind}"
    if invalid is None:
        raise InternalError(f"{found} on a valid call: {text[:600]}") from error
    if invalid.raised is not None and isinstance(error, invalid.raised):
        return body_error(found, name, error)
    if case.jit and not raised_in_shapedmap(error):
        return "refused by jax.jit before shapedmap ran"
    if not isinstance(error, TypeError):
        raise InternalError(f"{found} is not a ShapeError/TypeError: {text[:600]}") from error
    if name not in text or (target is not None and not names_parameter(text, target)):
        raise InternalError(f"{found} does not name both {name} and '{target}': {text[:600]}") from error
    if _BLAMES_POSITIONS.search(text):
        raise InternalError(f"{found} blames a position: {text[:600]}") from error
    return "named error"


def body_error(found: str, name: str, error: Exception) -> str:
    """The per-example function's own error: it must come through, noted with the map it happened in."""
    notes = "\n".join(getattr(error, "__notes__", ()))
    if f"inside the map of {name}" in notes or f"inside the maps of {name}" in notes:
        return "error from the function body"
    raise InternalError(f"{found} from the function body, without the map in a note: {str(error)[:600]}") from error


def raised_in_shapedmap(error: BaseException) -> bool:
    """Did shapedmap's code run before ``error`` (is a shapedmap frame in its traceback)?"""
    frame = error.__traceback__
    while frame is not None:
        if f"{os.sep}shapedmap{os.sep}" in frame.tb_frame.f_code.co_filename:
            return True
        frame = frame.tb_next
    return False


def compare(case: Any, result: Any, expected: Any) -> None:
    got, got_tree = jax.tree.flatten(result)
    want, want_tree = jax.tree.flatten(expected)
    if got_tree != want_tree:
        raise InternalError(f"{case.describe()}: result structure {got_tree} but the loop gives {want_tree}")
    for got_leaf, want_leaf in zip(got, want, strict=True):
        got_leaf = np.asarray(got_leaf)
        if got_leaf.shape != want_leaf.shape or got_leaf.dtype != want_leaf.dtype:
            raise InternalError(
                f"{case.describe()}: result {got_leaf.dtype}{got_leaf.shape}, loop {want_leaf.dtype}{want_leaf.shape}"
            )
        tolerance = 1e-2 if got_leaf.dtype == np.float16 else 1e-4
        try:
            np.testing.assert_allclose(got_leaf, want_leaf, rtol=tolerance, atol=tolerance, equal_nan=True)
        except AssertionError as error:
            raise InternalError(f"{case.describe()}: wrong answer: {error}") from None


# -- the strategy -------------------------------------------------------------------------------


def has_varargs(entry: Entry) -> bool:
    return any(p.kind == "varargs" for p in entry.params)


_NAME = re.compile(r"[A-Za-z_]\w*")


def output_sizes(entry: Entry) -> dict[str, int]:
    """Batch sizes the output layouts fix (``b=3``)."""
    return {base_name(t): int(t.split("=")[1]) for out in entry.outputs for t in out.split() if "=" in t}


def dim_names(entry: Entry) -> set[str]:
    """Every single-dim name in the entry's layouts (expressions contribute theirs)."""
    tokens = [t for layout in (*(p.layout for p in entry.params), *entry.outputs) for t in layout.split()]
    return {name for t in tokens if not is_variadic(t) for name in _NAME.findall(base_name(t))}


@st.composite
def cases(draw: st.DrawFn, entries: tuple[int, ...] | None = None) -> Case:
    """One case: an entry, valid sizes, a corruption of one parameter (or none), eager or jit."""
    index = draw(st.sampled_from(entries or range(len(CORPUS))))
    entry = CORPUS[index]
    sizes = {name: draw(st.integers(1, 3)) for name in sorted(dim_names(entry))}
    sizes |= {name: size for name, size in output_sizes(entry).items() if draw(st.booleans())}
    variadic = {"*rest": tuple(draw(st.lists(st.integers(1, 3), max_size=2)))}
    variadic |= {f"...{p.name}": tuple(draw(st.lists(st.integers(1, 3), max_size=2))) for p in entry.params}
    full = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    broadcast = {}
    for param in entry.params:
        length = draw(st.integers(0, len(full)))
        tail = full[len(full) - length :]
        broadcast[param.name] = tuple(size if draw(st.booleans()) else 1 for size in tail)
    shrink = {p.name: draw(st.integers(0, 3)) == 0 for p in entry.params}
    structure = tuple(draw(st.lists(st.sampled_from(["u", "v", "w"]), min_size=1, max_size=3, unique=True)))
    leaf_sizes = {key: draw(st.integers(1, 3)) for key in structure}
    corruptible = [p for p in entry.params]
    kind = draw(st.sampled_from(["global", *(["value"] * 4)]))
    if kind == "global" or not corruptible:
        globals_here = [c for c in GLOBAL_CORRUPTIONS if not (c == "extra positional" and has_varargs(entry))]
        corruption, target = draw(st.sampled_from(globals_here)), None
        if corruption == "missing argument" and not any(p.kind == "array" and not p.optional for p in entry.params):
            corruption = "valid"
    else:
        param = draw(st.sampled_from(corruptible))
        target = param.name
        corruption = draw(st.sampled_from(STATIC_CORRUPTIONS if param.kind == "static" else VALUE_CORRUPTIONS))
    use_jit = draw(st.booleans())
    if use_jit and target in entry.statics and corruption in ("array for static",):
        use_jit = False  # jax.jit itself refuses unhashable static arguments, before shapedmap sees them
    positional = [p for p in entry.params if not p.keyword_only and p.kind != "varargs"]
    keywords = draw(st.integers(0, len(positional)))
    seed = draw(st.integers(0, 2**32 - 1))
    return Case(index, Draw(sizes, variadic, broadcast, shrink, structure, leaf_sizes), corruption, target,
                keywords, use_jit, seed)  # fmt: skip


# -- the tests ----------------------------------------------------------------------------------


def examples_per_entry() -> int:
    """CI: a few cases per entry; the long profile: enough for 10 000 cases over the corpus."""
    if settings.get_current_profile_name() == "long":
        return -(-10_000 // len(CORPUS))
    return settings.default.max_examples


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[entry.label for entry in CORPUS])
def test_corrupted_inputs_give_the_loop_or_a_named_error(index):
    @settings(max_examples=examples_per_entry())
    @given(cases(entries=(index,)))
    def check(case):
        run_case(case)

    check()


def test_the_oracle_agrees_with_every_valid_entry():
    """Every entry, called with valid arguments, gives the loop's answer (the oracle itself is sound)."""
    draw = Draw({}, {"*rest": (2,)}, {}, {}, ("u", "v"), {"u": 2, "v": 3})
    for index, entry in enumerate(CORPUS):
        draw.sizes = dict.fromkeys(dim_names(entry), 2) | output_sizes(entry)
        draw.variadic |= {f"...{p.name}": (3,) for p in entry.params}
        draw.broadcast = {p.name: (2,) for p in entry.params}
        for use_jit in (False, True):
            assert run_case(Case(index, draw, "valid", None, 0, use_jit, seed=index)) == "result", entry.label


def test_corpus_covers_every_spec_form():
    labels = " ".join(entry.label for entry in CORPUS)
    for form in ("signature", "layouts=", "out=", "keyword", "static", "non-leading", "two batch names",
                 "*batch", "#name", "PyTree", "'T'", "symbolic", "repeated", "Optional", "method", "*args"):  # fmt: skip
        assert form in labels, form


def test_errors_name_the_function_and_the_parameter():
    """A spot check of the message contract the fuzzer enforces."""
    entry = CORPUS[0]
    with pytest.raises(ShapeError) as info:
        entry.fn(jnp.ones((2, 3, 3)), "abc")
    assert (
        str(info.value) == "mp: argument 'f' must be an array matching Float[Array, 'graph node feat'], got str 'abc'"
    )
    assert entry_name(entry) == "mp" and names_parameter(str(info.value), "f")
    assert not names_parameter("mp: argument 'a' is wrong", "f")
    assert _BLAMES_POSITIONS.search("TypeError for args[0]") and not _BLAMES_POSITIONS.search("argument 'a'")
