"""The grammar: dim strings, layouts and spec strings."""

import pytest

from shapedmap._errors import SpecError
from shapedmap._grammar import (
    FixedDim,
    Layout,
    NamedDim,
    SymbolicDim,
    VariadicDim,
    parse_layout,
    parse_spec,
)


def test_layout_round_trips_its_text():
    for text in ["graph node node", "*batch n=3 #m 2*f", "... c", "_ n", "rows=n"]:
        assert str(parse_layout(text)) == text.replace("rows=n", "n")


def test_label_of_fixed_size_is_kept_as_a_name():
    (dim,) = parse_layout("graph=13").dims
    assert dim == FixedDim(13) and dim.label == "graph"
    assert parse_layout("graph=13 node").names() == {"graph", "node"}


@pytest.mark.parametrize(
    ("text", "index", "axis"),
    [
        ("feat time", 1, 1),
        ("time feat", 0, 0),
        ("*batch time feat", 1, -2),
        ("... feat time", 2, -1),
        ("c time *rest", 1, 1),
        ("*lead time", 1, -1),
    ],
)
def test_axis_is_negative_after_a_variadic(text, index, axis):
    assert parse_layout(text).axis_of(index) == axis


def test_min_rank_and_variadic_index():
    layout = parse_layout("a *rest b")
    assert layout.min_rank == 2 and layout.variadic_index == 1
    assert parse_layout("a b").variadic_index is None


def test_symbolic_names_and_arguments():
    (dim,) = parse_layout("{self.k}+2*n").dims
    assert isinstance(dim, SymbolicDim)
    assert dim.names() == {"n"}
    assert dim.argument_names() == {"self"}

    class Holder:
        k = 3

    assert dim.evaluate({"n": 5}, {"self": Holder()}) == 13


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b", "spaces, not commas"),
        ("n#", "'#name', not 'name#'"),
        ("*a *b", "at most one"),
        ("...x", "stand on its own"),
        ("_4", "fixed size cannot be anonymous"),
        ("n+", "not valid Python"),
        ("open(n)", "only min, max and abs"),
        ("x.y", "inside braces"),
        ("n/2", "unsupported syntax Div"),
        ("1.5", "only integer constants"),
        ("-1", "cannot be negative"),
        ("{n", "unbalanced braces"),
        ("*", "has no name"),
    ],
)
def test_invalid_dims_say_why(text, message):
    with pytest.raises(SpecError) as error:
        parse_layout(text)
    assert message in str(error.value)


def test_layout_must_be_a_string():
    with pytest.raises(SpecError, match="must be a string, got int 3"):
        parse_layout(3)


def test_spec_batch_names():
    spec = parse_spec("graph time")
    assert spec.batch == (NamedDim("graph"), NamedDim("time")) and spec.inputs is None
    assert parse_spec("*batch").batch == (VariadicDim("batch"),)
    assert parse_spec("#graph").batch == (NamedDim("graph", broadcastable=True),)
    assert parse_spec("graph=13").batch[0].label == "graph"


def test_spec_full_signature():
    spec = parse_spec("b a, a c -> b c")
    assert spec.inputs == (parse_layout("b a"), parse_layout("a c"))
    assert spec.outputs == (parse_layout("b c"),)
    assert parse_spec("n col -> col, col n").outputs == (parse_layout("col"), parse_layout("col n"))
    assert parse_spec("i min(n,m) -> i").inputs == (parse_layout("i min(n,m)"),)


def test_spec_scalar_layouts():
    assert parse_spec("b n, -> b").inputs == (parse_layout("b n"), parse_layout(""))
    assert parse_spec("graph n -> ").outputs == (parse_layout(""),)
    assert parse_spec("-> b").inputs == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the spec is empty"),
        ("b a, a", "has no '->'"),
        ("a -> b -> c", "more than one '->'"),
        ("3", "cannot be a batch dim"),
        ("graph _", "cannot be a batch dim"),
        ("...", "cannot be a batch dim"),
        ("2*n", "cannot be a batch dim"),
    ],
)
def test_invalid_specs_say_why(text, message):
    with pytest.raises(SpecError) as error:
        parse_spec(text)
    assert message in str(error.value)


def test_layout_equality_ignores_labels():
    assert parse_layout("n=3") == parse_layout("3")
    assert parse_layout("rows=n") == Layout((NamedDim("n"),))
