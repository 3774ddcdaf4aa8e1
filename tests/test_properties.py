"""Property: for random layouts, the batched call equals the naive loop over every batch index.

Each drawn case has 1–3 parameters whose per-example layouts mix named core dims and a
variadic ``*v`` (before or after them); 1–3 batch names inserted anywhere in each parameter's
layout (an argument lacking a name is shared across it) and anywhere in the output; arguments
passed positionally or by keyword; eagerly or under ``jax.jit``.
"""

import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from jaxtyping import Array, Float

from shapedmap import batched
from shapedmap._grammar import parse_layout

BATCH_NAMES = ("b0", "b1", "b2")
CORE_NAMES = ("c0", "c1")


@st.composite
def per_example_layout(draw):
    tokens = draw(st.lists(st.sampled_from(CORE_NAMES), max_size=2))
    where = draw(st.sampled_from(["none", "front", "back"]))
    if where == "front":
        tokens = ["*v", *tokens]
    elif where == "back":
        tokens = [*tokens, "*v"]
    return tokens


def insert(draw, tokens, names):
    tokens = list(tokens)
    for name in names:
        tokens.insert(draw(st.integers(0, len(tokens))), name)
    return tokens


@st.composite
def cases(draw):
    batch_names = BATCH_NAMES[: draw(st.integers(1, 3))]
    count = draw(st.integers(1, 3))
    per_example = [draw(per_example_layout()) for _ in range(count)]
    subsets = [draw(st.lists(st.sampled_from(batch_names), unique=True)) for _ in range(count)]
    for name in batch_names:  # every batch name is mapped by some argument
        if not any(name in subset for subset in subsets):
            subsets[draw(st.integers(0, count - 1))].append(name)
    batched_layouts = [insert(draw, tokens, subset) for tokens, subset in zip(per_example, subsets, strict=True)]
    output = insert(draw, per_example[0], draw(st.permutations(batch_names)))
    sizes = {name: draw(st.integers(1, 3)) for name in (*batch_names, *CORE_NAMES)}
    variadic = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    keywords = draw(st.integers(0, count))
    use_jit = draw(st.booleans())
    return per_example, batched_layouts, output, sizes, variadic, keywords, use_jit


def body(*arrays):
    """The per-example function: the first argument's shape, every argument involved."""
    first, *rest = arrays
    return first * 2.0 + sum((jnp.sum(x) for x in rest), start=jnp.float32(0.0))


def make_function(per_example):
    parameters = [
        inspect.Parameter(f"x{i}", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Float[Array, " ".join(tokens)])
        for i, tokens in enumerate(per_example)
    ]

    def function(*arrays):
        return body(*arrays)

    function.__signature__ = inspect.Signature(parameters, return_annotation=Float[Array, " ".join(per_example[0])])
    function.__annotations__ = {p.name: p.annotation for p in parameters} | {
        "return": function.__signature__.return_annotation
    }
    return function


def shape_of(tokens, sizes, variadic):
    shape = []
    for token in tokens:
        shape.extend(variadic if token == "*v" else (sizes[token],))
    return tuple(shape)


def index_for(tokens, point):
    """Numpy index that picks one example: the batch index on batch tokens, all of the rest."""
    return tuple(point[t] if t in point else (Ellipsis if t == "*v" else slice(None)) for t in tokens)


@given(cases(), st.integers(0, 2**16))
def test_batched_equals_the_naive_loop(case, seed):
    per_example, batched_layouts, output, sizes, variadic, keywords, use_jit = case
    spec = ", ".join(" ".join(tokens) for tokens in batched_layouts) + " -> " + " ".join(output)
    function = batched(make_function(per_example), spec)
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=shape_of(tokens, sizes, variadic)).astype(np.float32) for tokens in batched_layouts]
    positional = arrays[: len(arrays) - keywords]
    by_keyword = {f"x{i}": arrays[i] for i in range(len(arrays) - keywords, len(arrays))}
    call = jax.jit(function) if use_jit else function
    result = np.asarray(call(*positional, **by_keyword))

    batch_names = [t for t in output if t.startswith("b")]
    expected = np.zeros(shape_of(output, sizes, variadic), np.float32)
    for values in itertools.product(*(range(sizes[name]) for name in batch_names)):
        point = dict(zip(batch_names, values, strict=True))
        examples = [array[index_for(tokens, point)] for array, tokens in zip(arrays, batched_layouts, strict=True)]
        expected[index_for(output, point)] = np.asarray(body(*map(jnp.asarray, examples)))
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@given(cases())
def test_axes_point_at_the_batch_dims(case):
    """Each derived in_axes entry indexes the batch dim's token (negative after a variadic)."""
    per_example, batched_layouts, output, *_ = case
    spec = ", ".join(" ".join(tokens) for tokens in batched_layouts) + " -> " + " ".join(output)
    function = batched(make_function(per_example), spec)
    outer: list[str] = []
    for name, axes in function.in_axes.items():
        for tokens, axis in zip(batched_layouts, axes, strict=True):
            remaining = [t for t in tokens if t not in outer]
            if name not in tokens:
                assert axis is None
                continue
            position = remaining.index(name)
            expected = position - len(remaining) if "*v" in remaining[:position] else position
            assert axis == expected
            assert parse_layout(" ".join(remaining)).axis_of(position) == axis
        outer.append(name)
