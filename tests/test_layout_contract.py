"""Contract: our parse of dim strings equals jaxtyping's, for the pinned jaxtyping version.

This is the only place in shapedmap that reads jaxtyping's private dim classes. If it fails
after a jaxtyping upgrade, our parser (``shapedmap/layout.py``) must follow the new grammar.
"""

import jaxtyping
import pytest
from jaxtyping import Array, Float
from jaxtyping import _array_types as jaxtyping_internals  # private: this test only

from shapedmap.errors import SpecError
from shapedmap.layout import AnonymousDim, FixedDim, NamedDim, SymbolicDim, VariadicDim, parse_layout


def from_jaxtyping(dim):
    if dim is jaxtyping_internals._anonymous_dim:
        return ("anonymous",)
    if dim is jaxtyping_internals._anonymous_variadic_dim:
        return ("variadic", None, False)
    kind = type(dim).__name__
    if kind == "_NamedDim":
        return ("named", dim.name, dim.broadcastable, dim.treepath)
    if kind == "_NamedVariadicDim":
        return ("variadic", dim.name, dim.broadcastable)
    if kind == "_FixedDim":
        return ("fixed", dim.size, dim.broadcastable)
    if kind == "_SymbolicDim":
        return ("symbolic", dim.elem, dim.broadcastable)
    raise AssertionError(f"unknown jaxtyping dim class {kind}")


def ours(dim):
    if isinstance(dim, AnonymousDim):
        return ("anonymous",)
    if isinstance(dim, VariadicDim):
        return ("variadic", dim.name, dim.broadcastable)
    if isinstance(dim, NamedDim):
        return ("named", dim.name, dim.broadcastable, dim.treepath)
    if isinstance(dim, FixedDim):
        return ("fixed", dim.size, dim.broadcastable)
    if isinstance(dim, SymbolicDim):
        return ("symbolic", dim.expression, dim.broadcastable)
    raise AssertionError(dim)


VALID = [
    "",
    "n",
    "batch time feat",
    "node node",
    "*batch",
    "*batch 3",
    "...",
    "... c h w",
    "c ... w",
    "*_",
    "*_ c",
    "_",
    "_x y",
    "#n m",
    "*#b _ ?t",
    "?n",
    "*?rest n",
    "3",
    "#4",
    "dim=3",
    "#a=3",
    "a=#3",
    "rows=n",
    "rows=#n",
    "n n+1",
    "2*f",
    "n-1",
    "n//2 2*n min(n,m)",
    "max(a,b) abs(c)",
    "n**2",
    "{self.k}+1",
    "{k}",
    "N_heads",
    "é",
    "  n \t m  ",
    "graph=13 node",
    "#graph node feat",
    "b c h w",
]

# Strings jaxtyping accepts that shapedmap rejects: they can never check anything useful.
STRICTER = ["-1", "1.5", "x.y", "a=b=c", "*", "?", "?*"]

INVALID = [
    "a,b",
    "n#",
    "*a *b",
    "...x",
    "_4",
    "*4",
    "#_",
    "?4",
    "##n",
    "**n",
    "__n",
    "*n+1",
    "_n+1",
    "?n+1",
    "... ...",
]


@pytest.mark.parametrize("dim_str", VALID)
def test_our_parse_equals_jaxtypings(dim_str):
    theirs = [from_jaxtyping(d) for d in Float[Array, dim_str].dims]
    assert [ours(d) for d in parse_layout(dim_str).dims] == theirs


@pytest.mark.parametrize("dim_str", INVALID)
def test_both_reject(dim_str):
    with pytest.raises(ValueError):
        Float[Array, dim_str]
    with pytest.raises(SpecError):
        parse_layout(dim_str)


@pytest.mark.parametrize("dim_str", STRICTER)
def test_we_reject_what_jaxtyping_accepts_without_meaning(dim_str):
    Float[Array, dim_str]  # jaxtyping accepts...
    with pytest.raises(SpecError):
        parse_layout(dim_str)  # ...but it names nothing or could never evaluate to a size


def test_enough_strings_are_compared():
    assert len(VALID) + len(INVALID) >= 50
    assert jaxtyping.__version__.startswith("0.3.")
