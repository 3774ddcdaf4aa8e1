"""Spec fuzzing: any spec, ``layouts=``, ``out=`` and annotation gives a working function or a ``SpecError``
at decoration (docs/architecture.md, Guarantees: specs).

Each case builds a per-example function from random annotations (valid dim strings, nonsense, string
annotations, PyTrees, statics, unions, tuple and non-array returns) and decorates it with a random
spec: batch names, a full signature made by inserting batch names into the per-example layouts
(then maybe mutated: a dim dropped, two swapped, a name repeated, an unknown one added), or garbage
(``"b b"``, ``"->"``, ``",,"``, random unicode, very long strings, non-strings), with random
``layouts=`` and ``out=``. Decoration must raise ``SpecError`` naming the function, or succeed; a
function that decorates is read independently from the spec (docs/architecture.md, Guarantees: layouts), called eagerly and under
``jax.jit`` on arrays matching its layouts, and must equal the naive loop
(``tests/test_fuzz_inputs.py``'s oracle).

``python -m tests.fuzz specs --cases 2000`` runs the long campaign and counts internal errors.
"""

import ast
import inspect
import re
import typing
from dataclasses import dataclass, replace
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float, Int, PyTree, Shaped
from test_fuzz_inputs import (
    Draw,
    Entry,
    InternalError,
    Invalid,
    Param,
    Varies,
    base_name,
    is_variadic,
    judge,
    make_value,
    oracle,
    split_tokens,
)

from shapedmap import SpecError, batched

CORE = ("n", "m", "k")
BATCH = ("b", "c", "t")
VALID_TOKENS = (*CORE, "2", "3", "#n", "_", "_x", "n=3", "*rest", "...", "2*n", "n+1", "min(n,m)")
NONSENSE_TOKENS = (
    "n#", "*a *b", "...x", "_4", "*4", "#_", "?4", "##n", "**n", "*n+1", "-1", "1.5", "x.y", "a=b=c", "*", "?",
    "n+", "open(n)", "n/2", "{n", "n}", "[n]", "n;m", "lambda: 1", "__import__('os')", "'n'", "n\\m", "é", "Ω",
    "🙂", "n\x00", "a,b", "->", ",", "b b", "?n", "9**9**9", "n**(10**9)", "0-5", "1//0", "n//0", "n**n**n", "-n",
)  # fmt: skip
GARBAGE_SPECS = (
    "b b", "->", ",,", "", " ", "->->", "b ->", "-> b", "b, c", ", -> ,", "b -> b -> b", "b,,c -> b", "🙂",
    "b\x00", "*batch *more", "... b", "_", "#", "3", "b=3 b=4", "b=-1", "(b)", "b c b", "*b b", "?b",
    " ".join(["b"] * 300), "x" * 200 + " -> " + "y" * 200, "{b}", "b{", "2*b", "b+1 -> b", "b _b",
)  # fmt: skip
ODD_BUT_VALID_SPECS = ("é", "Ω b", "b" * 5000, "b " + "x" * 10_000, "  b\t c\n", "b_1 B2")
NON_STRINGS = (3, 1.5, b"b", ["b"], ("b",), object(), {"b": 1}, True)


def _stable_id(value: object) -> str:
    """A test id without a memory address: the same in every process (pytest-xdist compares them)."""
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))


def dim_string(draw: st.DrawFn, nonsense: bool) -> str:
    tokens = draw(st.lists(st.sampled_from(VALID_TOKENS), max_size=3))
    if nonsense:
        position = draw(st.integers(0, len(tokens)))
        junk = draw(st.one_of(st.sampled_from(NONSENSE_TOKENS), st.text(min_size=1, max_size=6)))
        tokens.insert(position, junk)
    return " ".join(tokens)


@dataclass(frozen=True)
class Parameter:
    """A generated parameter: ``array``, ``tree``, ``list``/``dict`` (containers of arrays), ``optional``,
    ``static``, or ``odd`` (a union of an array and an int, a Callable, an undefined name, ``None``)."""

    name: str
    kind: str
    dims: str = ""
    dtype: str = "float"
    structure: str | None = None
    annotation: Any = inspect.Parameter.empty


DTYPES = {"float": Float, "int": Int, "number": Shaped}
ARRAY_KINDS = ("array", "tree", "optional", "list", "dict")


def array_hint(dtype: str, dims: str) -> Any:
    """``Float[Array, dims]``; a string annotation if jaxtyping refuses ``dims`` (so the decorator meets it)."""
    try:
        return DTYPES[dtype][Array, dims]
    except Exception:
        return f"{DTYPES[dtype].__name__}[Array, {dims!r}]"


@st.composite
def parameter(draw: st.DrawFn, name: str, structure: str | None, clean: bool) -> Parameter:
    kinds = ["array"] * 6 + ["tree", "optional", "static", "unannotated", *([] if clean else ["odd"])]
    kind = draw(st.sampled_from(kinds))
    nonsense = not clean and draw(st.integers(0, 9)) == 0
    dims = dim_string(draw, nonsense)
    dtype = draw(st.sampled_from(["float", "float", "int", "number"]))
    if kind == "array":
        return Parameter(name, "array", dims, dtype, annotation=array_hint(dtype, dims))
    if kind == "tree":
        leaf = array_hint(dtype, dims)
        tree_structure = structure if draw(st.booleans()) else None
        hint = leaf if isinstance(leaf, str) else (PyTree[leaf, tree_structure] if tree_structure else PyTree[leaf])
        return Parameter(name, "tree", dims, dtype, tree_structure, hint)
    if kind == "optional":
        leaf = array_hint(dtype, dims)
        return Parameter(name, "optional", dims, dtype, annotation=leaf if isinstance(leaf, str) else Optional[leaf])  # noqa: UP045
    if kind == "static":
        return Parameter(name, "static", annotation=int)
    if kind == "unannotated":
        return Parameter(name, "static")
    odd = draw(st.sampled_from(["union", "list", "dict", "callable", "string", "none"]))
    if odd in ("list", "dict"):  # a container of arrays is a PyTree of them
        hint = list[Float[Array, "n"]] if odd == "list" else dict[str, Float[Array, "n"]]
        return Parameter(name, odd, "n", "float", annotation=hint)
    hint = {
        "union": typing.Union[Float[Array, "n"], int],  # noqa: UP007
        "callable": typing.Callable[[Array], Array],
        "string": "NotAName[Array, 'n']",
        "none": None,
    }[odd]
    return Parameter(name, "odd", annotation=hint)


@st.composite
def return_hint(draw: st.DrawFn, parameters: list[Parameter], clean: bool) -> tuple[str, Any, tuple[str, ...]]:
    """(kind, annotation, per-example dims of each result)."""
    names = [t for p in parameters if p.kind in ("array", "optional") for t in p.dims.split() if t in CORE]
    pool = [*names, *names, "2", "n+1", "2*n", "*rest", "k", "n**(10**9)"] if names else ["2", "3", "k", "9**9**9"]
    kind = draw(st.sampled_from(["array"] * 5 + ["tuple", "tree", "none", *([] if clean else ["float", "nonsense"])]))
    dims = " ".join(draw(st.lists(st.sampled_from(pool), max_size=2, unique=True)))
    dtype = draw(st.sampled_from(["float", "float", "int"]))
    if kind == "tuple":
        second = " ".join(draw(st.lists(st.sampled_from(pool), max_size=2, unique=True)))
        return "tuple", tuple[array_hint(dtype, dims), array_hint("float", second)], (dims, second)
    trees = [p for p in parameters if p.kind == "tree" and not isinstance(p.annotation, str)]
    if kind == "tree" and trees:
        return "tree", trees[0].annotation, (trees[0].dims,)
    if kind == "none":
        return "none", inspect.Parameter.empty, ("...",)
    if kind == "float":
        return "float", float, ()
    if kind == "nonsense":
        dims = dim_string(draw, True)
        return "array", array_hint(dtype, dims), (dims,)
    return "array", array_hint(dtype, dims), (dims,)


@st.composite
def layout_text(draw: st.DrawFn, dims: str, batch: list[str], clean: bool = False) -> str:
    """``dims`` with some batch names inserted, maybe mutated."""
    tokens = dims.split()
    for name in draw(st.lists(st.sampled_from(batch), max_size=2, unique=True)):
        tokens.insert(draw(st.integers(0, len(tokens))), name)
    mutations = ["none"] * 6 + ([] if clean else ["drop", "swap", "repeat", "unknown", "nonsense", "star"])
    mutation = draw(st.sampled_from(mutations))
    if mutation == "drop" and tokens:
        tokens.pop(draw(st.integers(0, len(tokens) - 1)))
    elif mutation == "swap" and len(tokens) > 1:
        i = draw(st.integers(0, len(tokens) - 2))
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    elif mutation == "repeat" and tokens:
        tokens.append(draw(st.sampled_from(tokens)))
    elif mutation == "unknown":
        tokens.insert(draw(st.integers(0, len(tokens))), draw(st.sampled_from(["zz", "q=4", "#zz", "*zz"])))
    elif mutation == "nonsense":
        tokens.insert(draw(st.integers(0, len(tokens))), draw(st.sampled_from(NONSENSE_TOKENS)))
    elif mutation == "star":
        tokens.insert(0, "*batch")
    return " ".join(tokens)


@dataclass(frozen=True)
class SpecCase:
    """A per-example signature and the arguments given to ``batched``; ``jit`` for the call."""

    parameters: tuple[Parameter, ...]
    returns: tuple[str, Any, tuple[str, ...]]
    spec: Any
    layouts: Any
    out: Any
    jit: bool
    seed: int

    def describe(self) -> str:
        hints = ", ".join(f"{p.name}: {annotation_text(p.annotation)}" for p in self.parameters)
        returned = annotation_text(self.returns[1])
        options = f"spec={self.spec!r:.80}, layouts={self.layouts!r:.80}, out={self.out!r:.60}"
        return f"spec_case({hints}) -> {returned} with {options}, {'jit' if self.jit else 'eager'}"


def annotation_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "<none>"
    return re.sub(r"jaxtyping\.|jaxlib\._jax\.", "", getattr(annotation, "__name__", None) or repr(annotation))


@st.composite
def cases(draw: st.DrawFn) -> SpecCase:
    count = draw(st.integers(1, 3))
    clean = draw(st.integers(0, 2)) == 0  # a third of the cases avoid nonsense: more functions to call
    parameters = [draw(parameter(f"x{i}", "T", clean)) for i in range(count)]
    returns = draw(return_hint(parameters, clean))
    batch = list(BATCH[: draw(st.integers(1, 2))])
    if draw(st.integers(0, 5)) == 0:
        batch.append(draw(st.sampled_from(CORE)))  # a batch name that clashes with a core dim
    forms = ["names"] * 3 + ["signature"] * 4 + ["layouts only"] + ([] if clean else ["garbage", "text", "nonstring"])
    form = draw(st.sampled_from(forms))
    arrays = [p for p in parameters if p.kind in ARRAY_KINDS]
    if form == "names":
        words = draw(st.lists(st.sampled_from([*batch, "*batch", "#b", "b=3", "c=2"]), min_size=1, max_size=2))
        spec = " ".join(words)
    elif form == "signature":
        inputs = [draw(layout_text(p.dims, batch, clean)) for p in arrays]
        if not clean and draw(st.integers(0, 7)) == 0:
            inputs = inputs[:-1] if inputs and draw(st.booleans()) else [*inputs, "b"]  # a wrong count
        outputs = [draw(layout_text(dims, batch, clean)) for dims in returns[2]]
        spec = ", ".join(inputs) + " -> " + ", ".join(outputs)
    elif form == "garbage":
        spec = draw(st.sampled_from(GARBAGE_SPECS + ODD_BUT_VALID_SPECS))
    elif form == "text":
        spec = draw(st.text(max_size=30))
    elif form == "nonstring":
        spec = draw(st.sampled_from(NON_STRINGS))
    else:
        spec = None
    layouts = None
    choice = draw(
        st.sampled_from(["none"] * 3 + ["one", "all"] + ([] if clean else ["unknown key", "not a dict", "bad value"]))
    )
    if choice in ("one", "all") and arrays:
        chosen = arrays if choice == "all" else [draw(st.sampled_from(arrays))]
        # None: the per-example layout itself (shared by every example)
        layouts = {p.name: draw(layout_text(p.dims, batch, clean) | st.none()) for p in chosen}
    elif choice == "unknown key":
        layouts = {"nope": "b n"}
    elif choice == "not a dict":
        layouts = draw(st.sampled_from([["x0"], "x0", 3]))
    elif choice == "bad value" and parameters:
        layouts = {parameters[0].name: draw(st.sampled_from([3, b"b", ("b",)]))}
    out = None
    choice = draw(st.sampled_from(["none"] * 4 + ["layout", "tuple", "list"] + ([] if clean else ["not a layout"])))
    if choice == "layout" and returns[2]:
        out = draw(layout_text(returns[2][0], batch, clean))
    elif choice in ("tuple", "list"):
        layouts_out = [draw(layout_text(dims, batch, clean)) for dims in returns[2]]
        out = tuple(layouts_out) if choice == "tuple" else layouts_out
    elif choice == "not a layout":
        out = draw(st.sampled_from([3, ("b", 3), {"b": 1}, b"b"]))
    return SpecCase(tuple(parameters), returns, spec, layouts, out, draw(st.booleans()), draw(st.integers(0, 2**31)))


# -- the per-example function ---------------------------------------------------------------------


def make_function(case: SpecCase) -> Any:
    """A per-example function with the case's signature whose results match its return annotation.

    Each result is filled with ``total + arange``, where ``total`` weighs every array argument by its
    position, so a wrongly mapped argument changes the answer.
    """
    parameters = [
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.annotation)
        for p in case.parameters
    ]
    kind, returned, result_dims = case.returns
    signature = inspect.Signature(parameters, return_annotation=returned)

    def spec_case(*args: Any, **kwargs: Any) -> Any:
        values = signature.bind(*args, **kwargs).arguments
        sizes: dict[str, Any] = {}
        total = jnp.float32(0)
        first_tree = None
        for weight, p in enumerate(case.parameters, start=1):
            value = values.get(p.name)
            if p.kind == "static" and p.annotation is inspect.Parameter.empty and not isinstance(value, str):
                # unannotated, given a layout (by position): a PyTree of arrays the body adds up
                leaves = jax.tree.leaves(value)
                total = total + weight * sum((jnp.sum(jnp.asarray(leaf, jnp.float32)) for leaf in leaves), 0.0)
                continue
            if p.kind not in ARRAY_KINDS or value is None:
                continue
            if p.kind == "tree" and first_tree is None:
                first_tree = value
            for leaf in jax.tree.leaves(value):
                for token, covered in split_tokens(p.dims.split(), tuple(leaf.shape)):
                    if "=" not in token:  # a label (n=3) documents a fixed size, it binds nothing
                        sizes.setdefault(token.lstrip("#*"), covered)
                total = total + weight * jnp.sum(leaf.astype(jnp.float32))
        if kind == "tree":
            return jax.tree.map(lambda leaf: (2 * leaf + total).astype(leaf.dtype), first_tree)
        results = [fill(dims, sizes, total, returned_dtype(returned, index)) for index, dims in enumerate(result_dims)]
        return tuple(results) if kind == "tuple" else results[0] if results else total

    spec_case.__signature__ = signature
    spec_case.__annotations__ = {
        p.name: p.annotation for p in parameters if p.annotation is not inspect.Parameter.empty
    }
    if returned is not inspect.Parameter.empty:
        spec_case.__annotations__["return"] = returned
    return spec_case


def returned_dtype(returned: Any, index: int) -> Any:
    hint = typing.get_args(returned)[index] if typing.get_origin(returned) is tuple else returned
    return jnp.int32 if getattr(hint, "dtype", None) is Int else jnp.float32


def fill(dims: str, sizes: dict[str, Any], total: Any, dtype: Any) -> Any:
    shape: list[int] = []
    for token in dims.split():
        name = token.lstrip("#").split("=")[0]
        if token == "...":
            continue
        if token.startswith("*"):
            shape.extend(sizes.get(token[1:], ()))
        elif "=" in token:
            shape.append(int(token.split("=")[1]))
        elif token.isdigit():
            shape.append(int(token))
        elif name.isidentifier():
            shape.append(sizes.get(name, (2,))[0])
        else:
            try:
                shape.append(arithmetic(ast.parse(token, mode="eval").body, {k: v[0] for k, v in sizes.items() if v}))
            except (SyntaxError, KeyError, ZeroDivisionError, ValueError):
                shape.append(1)
    if any(size > 10**6 for size in shape):
        raise TooLarge(f"a result of shape {tuple(shape)}")
    return (total + jnp.arange(int(np.prod(shape)), dtype=jnp.float32).reshape(shape)).astype(dtype)


class TooLarge(Exception):
    """The per-example function cannot build a result this big (``n**(10**9)`` for n = 2)."""


def arithmetic(node: ast.AST, sizes: dict[str, int]) -> int:
    """A dim expression's value, with powers bounded (``9**9**9`` is ``TooLarge``, not a long wait)."""
    if isinstance(node, ast.Constant):
        return int(node.value)
    if isinstance(node, ast.Name):
        return sizes[node.id]
    if isinstance(node, ast.UnaryOp):
        return -arithmetic(node.operand, sizes) if isinstance(node.op, ast.USub) else arithmetic(node.operand, sizes)
    if isinstance(node, ast.Call):
        return {"min": min, "max": max, "abs": abs}[node.func.id](*(arithmetic(a, sizes) for a in node.args))
    left, right = arithmetic(node.left, sizes), arithmetic(node.right, sizes)
    if isinstance(node.op, ast.Pow) and abs(left) > 1 and right > 64:
        raise TooLarge(f"{left}**{right}")
    operators = {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__, ast.Pow: int.__pow__}
    operators |= {ast.FloorDiv: int.__floordiv__, ast.Mod: int.__mod__}
    return operators[type(node.op)](left, right)


# -- reading a decorated function independently (Guarantees: layouts) -------------------------------


def core_names(dims: str) -> set[str]:
    """Names a per-example dim string gives (``n``, ``*rest``'s ``rest``, ``n=3``'s ``n``)."""
    names = set()
    for token in dims.split():
        body = token.lstrip("#?*")
        name = body.split("=")[0] if "=" in body else body
        if name.isidentifier():
            names.add(name)
    return names


def batch_tokens(layout: str, dims: str) -> list[str]:
    """The batch names of a batched layout: its names the per-example dims do not have."""
    names = []
    for token in layout.split():
        body = token.lstrip("#*")
        name = body.split("=")[0] if "=" in body else body
        if name.isidentifier() and name not in core_names(dims):
            names.append("*batch" if token.startswith("*") else name)
    return names


def split_commas(text: str) -> list[str]:
    """Split a layout list on the commas outside parentheses (``min(n,m)`` is one dim)."""
    return [
        part.replace("\x00", ",")
        for part in re.sub(r"\([^()]*\)", lambda m: m[0].replace(",", "\x00"), text).split(",")
    ]


def variadic_as_batch(layout: str, dims: str) -> str:
    """A ``*name`` the per-example dims lack is the variadic batch dim: the oracle calls it ``*batch``."""
    return " ".join("*batch" if t.startswith("*") and t[1:] not in core_names(dims) else t for t in layout.split())


def interpret(case: SpecCase) -> Entry:
    """The ``Entry`` (layouts, outputs, batch names) the spec means, read without shapedmap."""
    arrays = [p for p in case.parameters if p.kind in ARRAY_KINDS]
    spec = case.spec if isinstance(case.spec, str) else None
    signature = spec is not None and "->" in spec
    inputs = outputs = None
    if signature:
        left, right = spec.split("->")
        inputs = [part.strip() for part in split_commas(left)] if left.strip() else []
        outputs = [part.strip() for part in split_commas(right)] if right.strip() else [""]
    names = spec.split() if spec is not None and not signature else []
    layouts = dict(case.layouts or {})
    returned, _, result_dims = case.returns
    given = [case.out] if isinstance(case.out, str) else list(case.out) if case.out is not None else outputs
    # Unannotated values given a layout: their per-example dims are the layout less the batch names
    # (the short spec's; else the results' names an annotated parameter lacks per example).
    if names:
        batch_names = {layout_name(t) for t in names}
    else:
        own = set().union(*(core_names(p.dims) for p in arrays))
        own |= set().union(*(core_names(d) for d in result_dims)) if returned != "none" else set()
        batch_names = {
            layout_name(t) for layout in given or [] if isinstance(layout, str) for t in layout.split()
        } - own
    if returned == "none" and given and isinstance(given[0], str):
        result_dims = (less_names(given[0], batch_names),)
    unannotated = [p for p in case.parameters if p.kind == "static" and p.annotation is inspect.Parameter.empty]
    union = any(p.kind == "odd" and typing.get_origin(p.annotation) is typing.Union for p in case.parameters)
    dims_of = {p.name: p.dims for p in case.parameters}
    by_position = {}
    if inputs is not None and not arrays and not union and unannotated:  # a full signature, by position
        given_inputs = [""] if inputs == [] and len(unannotated) == 1 else inputs
        if len(given_inputs) == len(unannotated):
            by_position = {p.name: layout for p, layout in zip(unannotated, given_inputs, strict=True)}
            dims_of |= {name: less_names(layout, batch_names) for name, layout in by_position.items()}
    params, order = [], []
    for index, p in enumerate(case.parameters):
        if p.name in by_position:
            layout = variadic_as_batch(by_position[p.name], dims_of[p.name])
            order += [n for n in batch_tokens(layout, dims_of[p.name]) if n not in order]
            params.append(Param(p.name, layout, "tree", "float"))
            continue
        if p not in arrays:
            valid = {int: (2, 3), None: (None,), inspect.Parameter.empty: ("x",)}.get(p.annotation, (jnp.sin,))
            if typing.get_origin(p.annotation) is typing.Union:
                valid = (2,)  # the int member of `Float[Array, 'n'] | int` (a function matches neither)
            params.append(Param(p.name, kind="static", valid=valid))
            continue
        if p.name in layouts and layouts[p.name] is None:
            layout = p.dims
        elif p.name in layouts:
            layout = variadic_as_batch(layouts[p.name], p.dims)
        elif names:
            layout = " ".join([*names, p.dims])
        elif inputs is not None:
            layout = variadic_as_batch(inputs[arrays.index(p)], p.dims)
        else:
            layout = p.dims
        order += [n for n in batch_tokens(layout, p.dims) if n not in order]
        kind = "tree" if p.kind in ("tree", "list", "dict") else "array"
        params.append(Param(p.name, layout, kind, p.dtype, p.kind == "optional", structure=p.structure))
        del index
    if case.out is not None:
        result_layouts = [case.out] if isinstance(case.out, str) else list(case.out)
    elif outputs is not None:
        result_layouts = outputs
    elif names:
        result_layouts = [" ".join([*names, dims]) for dims in result_dims]
    else:
        input_batch = [n for n in order if n != "*batch"]
        result_layouts = [" ".join([*(n for n in input_batch if n not in core_names(d)), d]) for d in result_dims]
    result_layouts = [
        variadic_as_batch(layout, dims) if isinstance(layout, str) else layout
        for layout, dims in zip(result_layouts, [*result_dims, *[""] * len(result_layouts)], strict=False)
    ]
    for layout, dims in zip(result_layouts, result_dims, strict=False):
        order += [n for n in batch_tokens(layout, dims) if n not in order]
    batch = tuple(["*batch"] if "*batch" in order else []) + tuple(n for n in order if n != "*batch")
    per_example = dims_of
    params = [replace(p, layout=core_renamed(p.layout, per_example[p.name], batch)) for p in params]
    result_layouts = [
        core_renamed(layout, dims, batch) if isinstance(layout, str) else layout
        for layout, dims in zip(result_layouts, [*result_dims, *[""] * len(result_layouts)], strict=False)
    ]
    return Entry(
        "spec", None, tuple(params), tuple(result_layouts), batch, name="spec_case",
        tuple_output=returned == "tuple",
    )  # fmt: skip


def layout_name(token: str) -> str | None:
    """The name a token gives (``*batch``, ``#b``, ``b=3`` -> ``batch``, ``b``, ``b``), else None."""
    name = token.lstrip("#*?").split("=")[0]
    return name if name.isidentifier() and not name.startswith("_") else None


def less_names(layout: str, names: set[str | None]) -> str:
    """An unannotated value's per-example dims: its layout less the batch names."""
    return " ".join(t for t in layout.split() if layout_name(t) is None or layout_name(t) not in names)


def core_renamed(layout: str, dims: str, batch: tuple[str, ...]) -> str:
    """The layout as the oracle reads it: a core dim named like some batch dim is renamed apart.

    The oracle takes a token named like a batch dim for one; a core ``n`` of this argument (where
    another argument maps over ``n``) is ``n__core`` (drawn with the same size, as the names unify),
    and a core ``n=3`` is ``3`` (the label only documents a core dim).
    """
    core = core_names(dims)
    tokens = []
    for token in layout.split():
        body = token.lstrip("#")
        name = body.split("=")[0]
        if name in core and "=" in body:
            token = body.split("=")[1]
        elif name in core and name in batch:
            token += "__core"
        tokens.append(token)
    return " ".join(tokens)


# -- one case -----------------------------------------------------------------------------------


def run_case(case: SpecCase) -> str:
    """Decorate; a ``SpecError`` naming the function is fine, anything else must work like the loop."""
    fn = make_function(case)
    try:
        function = batched(fn, case.spec, layouts=case.layouts, out=case.out)
    except SpecError as error:
        if not str(error).startswith("spec_case: "):
            raise InternalError(f"{case.describe()}: SpecError without the function's name: {error}") from error
        return "spec error"
    except Exception as error:
        raise InternalError(f"{case.describe()}: {type(error).__name__} at decoration: {error}") from error
    if function.signature is None:  # an annotation names something undefined: maybe defined later
        try:
            function()
        except SpecError as error:
            if str(error).startswith("spec_case: cannot resolve its annotations"):
                return "spec error at the first call (an undefined name in an annotation)"
            raise InternalError(f"{case.describe()}: unresolved annotations gave {error}") from error
        except Exception as error:
            raise InternalError(f"{case.describe()}: unresolved annotations gave {type(error).__name__}") from error
        raise InternalError(f"{case.describe()}: unresolved annotations, yet the call ran")
    entry = interpret(case)
    entry = Entry(entry.label, function, entry.params, entry.outputs, entry.batch, entry.name,
                  entry.tuple_output)  # fmt: skip
    try:
        values = draw_values(entry, case.parameters, case.seed)
    except Exception as error:
        raise InternalError(
            f"{case.describe()}: decorated, but its layouts as the layouts page reads them ({entry.params}, "
            f"{entry.outputs}) cannot be instantiated ({type(error).__name__}: {error}); shapedmap says "
            f"{function.signature!r}"
        ) from error
    dropped = dropped_batch_names(entry)
    try:
        expected, invalid = oracle(entry, values), None
    except Invalid as verdict:
        expected, invalid = None, verdict
    if dropped and isinstance(invalid, Varies | type(None)):
        # The result depends on every array argument, so JAX sees it batched over a dim its layout
        # lacks, whatever the values (the loop may find it constant by chance): it must be refused.
        expected, invalid = None, Varies(f"the results' layouts lack {dropped}, which the arguments map")
    if invalid is not None and not isinstance(invalid, Varies) and invalid.raised is not TooLarge:
        raise InternalError(
            f"{case.describe()}: decorated, but arguments matching its layouts ({entry.params}) cannot be "
            f"called ({invalid}); shapedmap says {function.signature!r}"
        )
    args = [values[p.name] for p in entry.params]
    statics = tuple(i for i, p in enumerate(entry.params) if p.kind == "static")
    call = jax.jit(function, static_argnums=statics) if case.jit else function
    return judge(case, entry, call, (args, {}), None, expected, invalid) + " of a decorated function"


def dropped_batch_names(entry: Entry) -> list[str]:
    """Batch names some argument maps (with size > 1) that some result's layout lacks."""
    mapped = {base_name(t) for p in entry.params for t in p.layout.split() if base_name(t) in entry.batch}
    mapped |= {"*batch"} & {t for p in entry.params for t in p.layout.split()}
    return sorted(n for n in mapped for out in entry.outputs if n not in {base_name(t) for t in out.split()})


def token_names(text: str) -> set[str]:
    """The names in one token (``n``, ``मनीष``, ``2*n`` -> ``n``), as Python reads identifiers."""
    if text.isidentifier():
        return {text}
    try:
        return {node.id for node in ast.walk(ast.parse(text, mode="eval")) if isinstance(node, ast.Name)}
    except SyntaxError:
        return set()


def draw_values(entry: Entry, parameters: tuple[Parameter, ...], seed: int) -> dict[str, Any]:
    """Valid arguments for the layouts: every name size 2, ``*rest`` (2,), ``*batch`` (2,)."""
    rng = np.random.default_rng(seed)
    tokens = [t for layout in (*(p.layout for p in entry.params), *entry.outputs) for t in layout.split()]
    names = {name for t in tokens for name in token_names(base_name(t))}
    sizes = dict.fromkeys(names, 2) | {base_name(t): int(t.split("=")[1]) for t in tokens if "=" in t}
    variadic = {"*rest": (2,), "*batch": (2,)} | {f"...{p.name}": (2,) for p in entry.params}
    variadic |= {t: (2,) for p in entry.params for t in p.layout.split() if is_variadic(t)}
    draw = Draw(sizes, variadic, {p.name: (2,) for p in entry.params}, {}, ("u", "v"), {"u": 2, "v": 3})
    values = {p.name: make_value(p, entry, draw, rng) for p in entry.params}
    for p in parameters:
        if p.kind == "list":
            values[p.name] = jax.tree.leaves(values[p.name])
        elif p.kind == "dict":
            values[p.name] = dict(enumerate(jax.tree.leaves(values[p.name])))
            values[p.name] = {f"k{key}": leaf for key, leaf in values[p.name].items()}
    return values


# -- the tests ----------------------------------------------------------------------------------


@settings(max_examples=2_000 if settings.get_current_profile_name() == "long" else 150)
@given(cases())
def test_any_spec_works_or_is_a_spec_error(case):
    run_case(case)


@pytest.mark.parametrize("spec", GARBAGE_SPECS + NON_STRINGS, ids=lambda spec: _stable_id(spec)[:30])
def test_garbage_specs_are_spec_errors_naming_the_function(spec):
    def mp(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
        return a @ f

    with pytest.raises(SpecError, match=r"^mp: "):
        batched(mp, spec)


@pytest.mark.parametrize("spec", ODD_BUT_VALID_SPECS, ids=lambda spec: _stable_id(spec)[:20])
def test_odd_but_valid_batch_names_work(spec):
    """Non-ASCII, very long and oddly spaced batch names are names: the function works."""

    def double(x: Float[Array, "n"]) -> Float[Array, "n"]:
        return 2 * x

    names = spec.split()
    function = batched(double, spec)
    x = jnp.arange(2.0 * 3).reshape(*([1] * (len(names) - 1)), 2, 3)
    np.testing.assert_array_equal(function(x), 2 * x)
    assert function.signature == f"{' '.join(names)} n -> {' '.join(names)} n"


def test_a_signature_spec_is_read_like_the_design_says():
    """The independent reading agrees with shapedmap on a known case (the fuzzer's reference is sound)."""
    case = SpecCase(
        (Parameter("x0", "array", "n", annotation=Float[Array, "n"]), Parameter("x1", "array", "n", annotation=Float[Array, "n"])),
        ("array", Float[Array, ""], ("",)), "b n, n c -> b c", None, None, False, 0,
    )  # fmt: skip
    entry = interpret(case)
    assert [p.layout for p in entry.params] == ["b n", "n c"] and entry.outputs == ("b c",)
    assert entry.batch == ("b", "c")
    assert run_case(case) == "result of a decorated function"
