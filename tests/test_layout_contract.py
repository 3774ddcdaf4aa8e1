"""Contract: our parse of dim strings equals jaxtyping's, for every jaxtyping version in the tested range (docs/versions.md).

This is the only place in shapedmap that reads jaxtyping's private dim classes. If it fails
after a jaxtyping upgrade, our parser (``shapedmap/layout.py``) must follow the new grammar.
"""

import jaxtyping
import pytest
from dim_strings import INVALID, STRICTER, VALID  # shared with test_grammar's corpus
from jaxtyping import Array, Float
from jaxtyping import _array_types as jaxtyping_internals  # private: this test only

from shapedmap._errors import SpecError
from shapedmap._grammar import AnonymousDim, FixedDim, NamedDim, SymbolicDim, VariadicDim, parse_layout


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
