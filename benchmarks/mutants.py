"""Shape mutants of realistic per-example functions, and the oracle that classifies them.

``FUNCTIONS`` are per-example functions as a model's code has them (a linear layer, attention,
layer norm, a loss, pairwise distances, message passing, a gather, a readout…), annotated with
jaxtyping. ``mutants`` applies each mutation operator at each place in a body where it fits (one
change per mutant): a transpose, swapped matmul operands, ``@`` for ``*`` and back, another
reduction or concatenation axis, ``keepdims`` dropped or added, ``[:, None]`` moved or dropped, an
off-by-one slice. ``classify`` runs a mutant beside its original with ``jax.vmap`` at two
assignments of distinct sizes: **shape-visible** (it raises, or a result has another shape than
its annotation, at one of them), **value-only** (shapes right, values differ) or **equivalent**.

Example:
    >>> originals = functions()
    >>> len(originals) >= 15, sum(1 for _ in mutants(originals[0])) > 0
    (True, True)
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import AbstractArray, Array, Float, Int

SOURCES = """
def linear(x: Float[Array, "d"], w: Float[Array, "d h"], b: Float[Array, "h"]) -> Float[Array, "h"]:
    return x @ w + b

def attention(q: Float[Array, "t d"], k: Float[Array, "s d"], v: Float[Array, "s e"]) -> Float[Array, "t e"]:
    scores = q @ k.T / jnp.sqrt(q.shape[-1])
    return jax.nn.softmax(scores, axis=-1) @ v

def layer_norm(x: Float[Array, "t d"], gain: Float[Array, "d"]) -> Float[Array, "t d"]:
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / jnp.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-5) * gain

def mse(prediction: Float[Array, "n"], target: Float[Array, "n"]) -> Float[Array, ""]:
    return jnp.mean((prediction - target) ** 2)

def pairwise(x: Float[Array, "n d"], y: Float[Array, "m d"]) -> Float[Array, "n m"]:
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=-1)

def message_passing(a: Float[Array, "n n"], f: Float[Array, "n c"], w: Float[Array, "c h"]) -> Float[Array, "n h"]:
    return jax.nn.relu(a @ f @ w)

def max_pool(x: Float[Array, "t c"], w: Float[Array, "c h"]) -> Float[Array, "h"]:
    return (x @ w).max(axis=0)

def gather(table: Float[Array, "v d"], index: Int[Array, "l"]) -> Float[Array, "l d"]:
    return table[index]

def concat_features(x: Float[Array, "n p"], y: Float[Array, "n q"]) -> Float[Array, "n p+q"]:
    return jnp.concatenate([x, y], axis=1)

def outer(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n m"]:
    return x[:, None] * y[None, :]

def cross_entropy(logits: Float[Array, "c"], label: Int[Array, ""]) -> Float[Array, ""]:
    return jax.nn.logsumexp(logits) - logits[label]

def bilinear(x: Float[Array, "n"], a: Float[Array, "n m"], y: Float[Array, "m"]) -> Float[Array, ""]:
    return x @ a @ y

def residual_mlp(x: Float[Array, "d"], w1: Float[Array, "d h"], w2: Float[Array, "h d"]) -> Float[Array, "d"]:
    return x + jax.nn.relu(x @ w1) @ w2

def normalise_rows(x: Float[Array, "n d"]) -> Float[Array, "n d"]:
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)

def covariance(x: Float[Array, "n d"]) -> Float[Array, "d d"]:
    centred = x - x.mean(axis=0)
    return centred.T @ centred / x.shape[0]

def masked_readout(h: Float[Array, "n d"], mask: Float[Array, "n"]) -> Float[Array, "d"]:
    return (h * mask[:, None]).sum(axis=0) / (mask.sum() + 1.0)

def shift(x: Float[Array, "t c"]) -> Float[Array, "t c"]:
    return jnp.concatenate([x[:1], x[:-1]], axis=0)

def gated(x: Float[Array, "d"], w: Float[Array, "d h"], v: Float[Array, "d h"]) -> Float[Array, "h"]:
    return jax.nn.sigmoid(x @ w) * (x @ v)
"""

NAMESPACE = {"jax": jax, "jnp": jnp, "Array": Array, "Float": Float, "Int": Int}


@dataclasses.dataclass(frozen=True)
class Function:
    """One per-example function: its name, source, the function, and its annotations' dim strings."""

    name: str
    source: str
    fn: Callable[..., Any]
    parameters: tuple[tuple[str, str, bool], ...]  # (name, dim string, integer)
    result: str


def _compile(name: str, source: str) -> Callable[..., Any]:
    namespace = dict(NAMESPACE)
    exec(compile(source, f"<mutant {name}>", "exec", dont_inherit=True), namespace)  # the benchmark's own source
    return namespace[name]


def functions() -> list[Function]:
    """The originals, in ``SOURCES`` order."""
    found = []
    for block in textwrap.dedent(SOURCES).strip().split("\n\n"):
        name = re.match(r"def (\w+)", block).group(1)
        fn = _compile(name, block)
        hints = dict(fn.__annotations__)
        result = hints.pop("return").dim_str
        parameters = tuple(
            (parameter, hint.dim_str, issubclass(hint, AbstractArray) and "int" in str(hint.dtypes))
            for parameter, hint in hints.items()
        )
        found.append(Function(name, block, fn, parameters, result))
    return found


# -- mutation operators: (name, pattern, replacement) applied at one match at a time ---------------

OPERATORS: tuple[tuple[str, str, Callable[[re.Match[str]], str]], ...] = (
    ("transpose", r"\b(x|a|w|q|k|v|f|h|centred|table|w1|w2)\b(?![\.\[\(:=])", lambda m: f"{m.group(1)}.T"),
    ("swap matmul operands", r"(\w+(?:\.T)?) @ (\w+(?:\.T)?)", lambda m: f"{m.group(2)} @ {m.group(1)}"),
    ("@ for *", r" @ ", lambda m: " * "),
    ("* for @", r" \* ", lambda m: " @ "),
    ("another axis", r"axis=(-?\d)", lambda m: "axis=" + {"0": "1", "1": "0", "-1": "0"}[m.group(1)]),
    ("keepdims dropped", r", keepdims=True", lambda m: ""),
    ("keepdims added", r"(\.(?:sum|mean|max)\(axis=-?\d)\)", lambda m: f"{m.group(1)}, keepdims=True)"),
    ("[:, None] moved", r"\[:, None\]", lambda m: "[None, :]"),
    ("[:, None] dropped", r"\[:, None(?:, :)?\]", lambda m: ""),
    ("[None, :] dropped", r"\[None, :(?:, :)?\]", lambda m: ""),
    ("off-by-one slice", r"(return )(.+)$", lambda m: f"{m.group(1)}({m.group(2)})[1:]"),
    ("reduction dropped", r"\.(sum|mean|max)\(axis=-?\d\)", lambda m: ""),
    ("mean for sum", r"jnp\.mean\(", lambda m: "jnp.sum("),
    ("another shape index", r"shape\[(-?\d)\]", lambda m: "shape[" + {"0": "-1", "-1": "0"}[m.group(1)] + "]"),
    ("slice widened", r"\[(:-?)1\]", lambda m: f"[{m.group(1)}2]"),
    (
        "concatenation swapped",
        r"\[(\w+(?:\[[^\]]*\])?), (\w+(?:\[[^\]]*\])?)\]",
        lambda m: f"[{m.group(2)}, {m.group(1)}]",
    ),
    ("result expanded", r"(return )(.+)$", lambda m: f"{m.group(1)}({m.group(2)})[None]"),
)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One change to one function's body."""

    original: Function
    operator: str
    source: str

    @property
    def label(self) -> str:
        return f"{self.original.name}: {self.operator}"

    def function(self) -> Callable[..., Any]:
        return _compile(self.original.name, self.source)


def mutants(original: Function) -> Iterator[Mutant]:
    """Each operator at each place of the body (after the ``def`` line) it fits; no duplicate source."""
    head, body = original.source.split("\n", 1)
    seen = {original.source}
    for name, pattern, replace in OPERATORS:
        for line_number, line in enumerate(body.split("\n")):
            for match in re.finditer(pattern, line):
                changed = line[: match.start()] + replace(match) + line[match.end() :]
                lines = body.split("\n")
                lines[line_number] = changed
                source = head + "\n" + "\n".join(lines)
                if source in seen:
                    continue
                seen.add(source)
                try:
                    compile(source, "<mutant>", "exec")
                except SyntaxError:
                    continue
                yield Mutant(original, name, source)


# -- running one function at given sizes -------------------------------------------------------

DISTINCT = ({"b": 3, "d": 5, "h": 7, "t": 2, "s": 11, "e": 13, "n": 5, "m": 7, "c": 3, "v": 17, "l": 2,
             "p": 2, "q": 19},
            {"b": 2, "d": 3, "h": 2, "t": 7, "s": 5, "e": 11, "n": 3, "m": 2, "c": 5, "v": 7, "l": 13,
             "p": 5, "q": 17})  # fmt: skip
EQUAL = {name: 4 for name in DISTINCT[0]}


def shape_of(dims: str, sizes: dict[str, int]) -> tuple[int, ...]:
    """A dim string's shape at ``sizes`` (names and ``p+q``-style arithmetic)."""
    return tuple(int(eval(token, {}, sizes)) for token in dims.split())  # the benchmark's own annotations


def inputs(original: Function, sizes: dict[str, int], seed: int = 0) -> list[Any]:
    """Batched arguments (batch ``b`` first): normal floats, valid (zero) indices."""
    rng = np.random.default_rng(seed)
    values = []
    for _, dims, integer in original.parameters:
        shape = (sizes["b"], *shape_of(dims, sizes))
        values.append(jnp.zeros(shape, jnp.int32) if integer else jnp.asarray(rng.normal(size=shape), jnp.float32))
    return values


def expected_shape(original: Function, sizes: dict[str, int]) -> tuple[int, ...]:
    return (sizes["b"], *shape_of(original.result, sizes))


def run_vmap(fn: Callable[..., Any], original: Function, sizes: dict[str, int]) -> Any:
    """``jax.vmap(fn)`` on the inputs at ``sizes``: its output, or the exception it raised."""
    try:
        return jax.vmap(fn)(*inputs(original, sizes))
    except Exception as error:
        return error


def classify(mutant: Mutant) -> str:
    """``shape-visible``, ``value-only`` or ``equivalent``, from ``jax.vmap`` at two assignments of distinct sizes."""
    fn = mutant.function()
    value_changed = False
    for sizes in DISTINCT:
        got = run_vmap(fn, mutant.original, sizes)
        if isinstance(got, Exception) or getattr(got, "shape", None) != expected_shape(mutant.original, sizes):
            return "shape-visible"
        reference = run_vmap(mutant.original.fn, mutant.original, sizes)
        if not np.allclose(np.asarray(got), np.asarray(reference), rtol=1e-4, atol=1e-4, equal_nan=True):
            value_changed = True
    return "value-only" if value_changed else "equivalent"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def share(part: int, whole: int) -> str:
    return "–" if whole == 0 else f"{100 * part / whole:.1f} %"


__all__ = ["DISTINCT", "EQUAL", "Function", "Mutant", "classify", "functions", "median", "mutants", "share"]
