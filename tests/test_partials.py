"""A partial's bound values are fixed, as ``jax.vmap`` closes over them (docs/layouts.md, "A partial's bound values").

Values a ``functools.partial`` (``jax.tree_util.Partial``, ``equinox.Partial``) binds are shared
(``in_axes=None``), checked against their per-example annotation, and size the other arguments.
Every test compares with ``jax.vmap`` of the same partial, eagerly and under ``jax.jit``.
"""

import functools as ft
import inspect
import re

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float, Int

from shapedmap import ShapeError, SpecError, batched, describe, explain
from shapedmap.testing import check_batched, inputs


def attn(
    q: Float[Array, "n d"], k: Float[Array, "n d"], mask: Float[Array, "n n"] | None = None
) -> Float[Array, "n n"]:
    """Scores of one head."""
    s = q @ k.T
    return s if mask is None else s * mask


def scaled(x: Float[Array, "n"], factor: Int[Array, ""], *, offset: float = 0.0) -> Float[Array, "n"]:
    return x * factor + offset


Q = jnp.arange(24.0).reshape(4, 3, 2) / 10
K = jnp.cos(Q)
MASK = jnp.arange(9.0).reshape(3, 3)
MASKS = jnp.arange(36.0).reshape(4, 3, 3)


def same(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)


def eager_and_jit(fn, expected, *args, **kwargs):
    same(fn(*args, **kwargs), expected)
    same(jax.jit(lambda *a: fn(*a, **kwargs))(*args), expected)


def test_the_issue_example_shares_the_bound_mask():
    """Before: ShapeError, argument 'mask' has 2 dims but its layout 'h n n' needs 3."""
    partial = ft.partial(attn, mask=MASK)
    per_head = batched(partial, "h")
    assert per_head.in_axes == {"h": (0, 0, None)}
    assert per_head.signature == "h n d, h n d, n n -> h n n"
    eager_and_jit(per_head, jax.vmap(partial)(Q, K), Q, K)
    same(jax.jit(per_head)(Q, K), jax.jit(jax.vmap(partial))(Q, K))
    parameter = inspect.signature(per_head).parameters["mask"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is MASK


def test_equinox_multihead_attention_with_a_shared_mask_through_a_partial():
    """equinox.nn.MultiheadAttention writes jax.vmap(ft.partial(attn_fn, mask=mask), in_axes=1, out_axes=1)."""
    eqx = pytest.importorskip("equinox")
    from equinox.nn._attention import dot_product_attention

    heads, seq, size = 4, 5, 8
    module = eqx.nn.MultiheadAttention(heads, size, dropout_p=0.5, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (seq, size))
    mask = jnp.tril(jnp.ones((seq, seq), bool))
    query_heads, key_heads, value_heads = (
        module._project(proj, x) for proj in (module.query_proj, module.key_proj, module.value_proj)
    )
    keys = jax.random.split(jax.random.key(2), heads)
    for inference in (True, False):
        attn_fn = ft.partial(dot_product_attention, dropout=module.dropout, inference=inference)
        expected = jax.vmap(ft.partial(attn_fn, mask=mask), in_axes=1, out_axes=1)(
            query_heads, key_heads, value_heads, key=keys
        )
        per_head = batched(
            ft.partial(attn_fn, mask=mask),
            "h",
            layouts={"query": "q_seq h qk_size", "key_": "kv_seq h qk_size", "value": "kv_seq h v_size"},
            out="q_seq h v_size",
        )
        assert per_head.in_axes == {"h": (1, 1, 1, None, 0)}  # query, key_, value, mask (shared), key
        eager_and_jit(per_head, expected, query_heads, key_heads, value_heads, key=keys)
        # ...and it is the module's own computation.
        output = jax.vmap(module.output_proj)(per_head(query_heads, key_heads, value_heads, key=keys).reshape(seq, -1))
        same(output, module(x, x, x, mask=mask, key=jax.random.key(2), inference=inference))


def test_bound_positionals_leave_the_signature():
    partial = ft.partial(attn, Q[0])
    per_head = batched(partial, "h")
    assert list(inspect.signature(per_head).parameters) == ["k", "mask"]
    assert per_head.signature == "h n d, h n n -> h n n"
    eager_and_jit(per_head, jax.vmap(partial)(K), K)
    eager_and_jit(per_head, jax.vmap(partial)(K, MASKS), K, MASKS)


def test_nested_partials_and_a_partial_of_a_method():
    nested = ft.partial(ft.partial(attn, Q[0]), mask=MASK)
    eager_and_jit(batched(nested, "h"), jax.vmap(nested)(K), K)
    jitted = jax.jit(ft.partial(attn, mask=MASK))  # a partial behind jax.jit
    eager_and_jit(batched(jitted, "h"), jax.vmap(jitted)(Q, K), Q, K)

    class Scorer:
        def score(
            self, q: Float[Array, "n d"], k: Float[Array, "n d"], mask: Float[Array, "n n"]
        ) -> Float[Array, "n n"]:
            return attn(q, k, mask)

    method = ft.partial(Scorer().score, Q[0], mask=MASK)
    per_head = batched(method, "h")
    assert per_head.in_axes == {"h": (0, None)}
    eager_and_jit(per_head, jax.vmap(method)(K), K)


@pytest.mark.parametrize("override", ["shared", "mapped"])
def test_a_bound_keyword_passed_again_overrides_it_and_follows_its_layout(override):
    partial = ft.partial(attn, mask=MASK)
    if override == "mapped":  # the spec's layout 'h n n': one mask per example
        per_head = batched(partial, "h")
        expected = jax.vmap(attn)(Q, K, MASKS)
        mask = MASKS
    else:  # a full signature that shares it
        per_head = batched(partial, "h n d, h n d, n n -> h n n")
        expected = jax.vmap(lambda q, k: partial(q, k, mask=2 * MASK))(Q, K)
        mask = 2 * MASK
    eager_and_jit(per_head, expected, Q, K, mask=mask)
    eager_and_jit(per_head, jax.vmap(partial)(Q, K), Q, K)  # the bound value again, after an override
    assert per_head.in_axes == {"h": (0, 0, None)}  # .in_axes shows the bound (shared) case
    text = explain(per_head, Q, K, mask=mask)
    assert "in_axes=(0, 0, 0)" in text if override == "mapped" else "in_axes=(0, 0, None)" in text


def test_an_overriding_value_is_checked_as_a_call_argument():
    per_head = batched(ft.partial(attn, mask=MASK), "h")
    with pytest.raises(ShapeError, match=r"^attn: argument 'mask' has 2 dims \(f32\[3,3\]\) but its layout 'h n n'"):
        per_head(Q, K, mask=MASK)
    with pytest.raises(ShapeError, match=r"size 3 in argument 'q' .*\n.*but size 5 in argument 'mask'"):
        per_head(Q, K, mask=jnp.ones((4, 5, 5)))


@pytest.mark.parametrize("kind", ["jax.tree_util.Partial", "equinox.Partial"])
def test_other_partials(kind):
    make = pytest.importorskip("equinox").Partial if kind == "equinox.Partial" else jax.tree_util.Partial
    partial = make(attn, Q[0], mask=MASK)
    per_head = batched(partial, "h")
    eager_and_jit(per_head, jax.vmap(partial)(K), K)
    same(jax.jit(per_head)(K), jax.jit(jax.vmap(partial))(K))
    assert f"bound by {kind}" in per_head.__doc__
    if kind == "equinox.Partial":  # it passes its keywords after the call's: passing one again is an error
        assert list(inspect.signature(per_head).parameters) == ["k"]
        with pytest.raises(TypeError, match="unexpected keyword argument 'mask'"):
            per_head(K, mask=MASKS)
    else:
        eager_and_jit(per_head, jax.vmap(ft.partial(attn, Q[0]))(K, MASKS), K, mask=MASKS)


def test_a_bound_value_sizes_the_other_arguments_and_a_conflict_names_it():
    per_head = batched(ft.partial(attn, mask=MASK), "h")
    q = jnp.ones((4, 5, 2))
    message = (
        r"^attn: dimension 'n' has size 3 in 'mask' \(bound by functools.partial\) \(axis 0 of f32\[3,3\]\)\n"
        r"but size 5 in argument 'q' \(axis 1 of f32\[4,5,2\]\)"
    )
    with pytest.raises(ShapeError, match=message):
        per_head(q, q)
    with pytest.raises(ShapeError, match=message):
        jax.jit(per_head)(q, q)
    positional = batched(ft.partial(attn, Q[0]), "h")
    with pytest.raises(ShapeError, match=r"size 3 in 'q' \(bound by functools.partial\) .*\n.*size 5 in argument 'k'"):
        positional(q)
    tree = batched(jax.tree_util.Partial(attn, Q[0]), "h")
    with pytest.raises(ShapeError, match=r"'q' \(bound by jax.tree_util.Partial\)"):
        jax.jit(tree)(q)


def test_a_bound_positional_its_annotation_refuses_is_a_spec_error_at_decoration():
    def refuse(partial, match):
        with pytest.raises(SpecError, match=match):
            batched(partial, "h")

    hint = "The partial binds this value when it is made, so no call can change it"
    refuse(
        ft.partial(attn, jnp.ones(3)), rf"^attn: 'q' \(bound by functools.partial\) has 1 dim \(f32\[3\]\).*\n  {hint}"
    )
    refuse(ft.partial(attn, jnp.ones((3, 2)), jnp.ones((4, 2))), r"^attn: dimension 'n' has size 3 in 'q' \(bound by")
    refuse(ft.partial(attn, jnp.ones((3, 2), int)), r"'q' \(bound by functools.partial\).* dtype")

    def shift(by: Int[Array, ""], x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x + by

    refuse(ft.partial(shift, 1.5), r"^shift: 'by' \(bound by functools.partial\) .*dtype")

    def repeat(times: int, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * times

    refuse(
        ft.partial(repeat, "two"), r"^repeat: 'times' \(bound by functools.partial\) is annotated int, got str 'two'"
    )


def test_what_worked_before_keeps_working():
    partial = ft.partial(attn, mask=MASK)
    expected = jax.vmap(partial)(Q, K)
    for per_head in (
        batched(partial, "h", layouts={"mask": None}),
        batched(partial, "h", layouts={"mask": "n n"}),
        batched(partial, "h n d, h n d, n n -> h n n"),  # a bound keyword has a layout in a full signature
        batched(partial, "h n d, h n d, h n n -> h n n"),  # shared unless passed again
    ):
        assert per_head.in_axes == {"h": (0, 0, None)}
        eager_and_jit(per_head, expected, Q, K)
    # A bound positional has none: the full signature counts the parameters the partial leaves.
    with pytest.raises(
        SpecError, match=r"has 3 input layout\(s\) but the function has 2 array parameter\(s\) \('k', 'mask'\)"
    ):
        batched(ft.partial(attn, Q[0]), "h n d, h n d, n n -> h n n")
    with pytest.raises(
        SpecError, match=r"^attn: layouts= names 'q', which the functools.partial binds: .* leave it out"
    ):
        batched(ft.partial(attn, Q[0]), "h", layouts={"q": None})
    with pytest.raises(SpecError, match=r"appears in no input layout.*'mask': bound by the partial, so shared"):
        batched(ft.partial(attn, Q[0], K[0], mask=MASK), "h")


def test_bound_static_keywords_are_still_checked():
    per_example = batched(ft.partial(scaled, offset="one"), "b n, -> b n")
    with pytest.raises(
        ShapeError, match=r"^scaled: 'offset' \(bound by functools.partial\) is annotated float, got str 'one'"
    ):
        per_example(jnp.ones((2, 3)), jnp.int32(2))
    with pytest.raises(ShapeError, match=r"^scaled: argument 'offset' is annotated float, got str 'two'"):
        per_example(jnp.ones((2, 3)), jnp.int32(2), offset="two")  # passed again: the caller's
    fine = batched(ft.partial(scaled, offset=1.0), "b n, -> b n")
    eager_and_jit(
        fine,
        jax.vmap(ft.partial(scaled, offset=1.0), in_axes=(0, None))(jnp.ones((2, 3)), 2),
        jnp.ones((2, 3)),
        jnp.int32(2),
    )


def test_a_batched_partial_with_bound_arrays_pickles():
    partial = ft.partial(attn, Q[0], mask=MASK)
    per_head = batched(partial, "h")
    per_head(K)
    loaded = cloudpickle.loads(cloudpickle.dumps(per_head))
    eager_and_jit(loaded, jax.vmap(partial)(K), K)
    assert loaded.in_axes == per_head.in_axes
    with pytest.raises(ShapeError, match=r"size 3 in 'q' \(bound by functools.partial\)"):
        loaded(jnp.ones((4, 5, 2)))


def test_describe_explain_and_help_show_the_bound_values_as_bound():
    per_head = batched(ft.partial(attn, Q[0], mask=MASK), "h")
    section = per_head.__doc__.split("Shapes\n------\n")[1].splitlines()
    assert section[:3] == [
        "- ``q``: ``n d``, bound by functools.partial: fixed, shared (not mapped, not a parameter)",
        "- ``k``: ``h n d`` (per example ``n d``)",
        "- ``mask``: ``n n`` or None, bound by functools.partial: shared (not mapped) unless passed again",
    ]
    contract = describe(per_head)
    assert [(p.name, p.bound) for p in contract.fixed] == [("q", "functools.partial")]
    assert [(p.name, p.bound, p.shared) for p in contract.parameters] == [
        ("k", None, False),
        ("mask", "functools.partial", True),
    ]
    markdown = contract.to_markdown()
    assert "| `q` | fixed | `n d` | Float | none: fixed by `functools.partial` |" in markdown
    assert "| `mask` | `n n` or None | `n n` | Float | none: shared (bound by `functools.partial`) |" in markdown
    assert contract.to_dict()["fixed"][0]["bound"] == "functools.partial"
    text = explain(per_head, K)
    assert (
        "`attn` is the per-example function: the functools.partial given to batched, which holds its bound values."
        in text
    )
    assert "shared as jax.vmap shares what a closure holds: q f32[3,2] (fixed), mask f32[3,3]." in text
    namespace = {"attn": per_head.fn}
    exec(text, namespace)
    same(namespace["batched_attn"](K), per_head(K))
    import pydoc

    assert "bound by functools.partial: fixed" in pydoc.render_doc(per_head)


def test_inputs_and_check_batched_draw_no_bound_value():
    per_head = batched(ft.partial(attn, Q[0], mask=MASK), "h")

    @settings(max_examples=10, deadline=None)
    @given(inputs(per_head))
    def drawn(example):
        args, kwargs = example
        assert set(kwargs) | {"k"} == {"k"} and len(args) + len(kwargs) == 1
        (k,) = (*args, *kwargs.values())
        assert k.shape[1:] == (3, 2)  # n and d from the bound values
        same(per_head(*args, **kwargs), jax.vmap(ft.partial(attn, Q[0], mask=MASK))(k))

    drawn()
    check_batched(per_head, max_examples=10)
    with pytest.raises(ValueError, match=r"'n' has size 3 in 'q' \(bound by functools.partial\)"):
        inputs(per_head, sizes={"n": 4})


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.booleans())
def test_bound_values_of_any_size_equal_jax_vmap_of_the_partial(n, d, h, positional):
    q = jnp.arange(n * d, dtype=jnp.float32).reshape(n, d)
    mask = jnp.arange(n * n, dtype=jnp.float32).reshape(n, n)
    partial = ft.partial(attn, q, mask=mask) if positional else ft.partial(attn, mask=mask)
    ks = jnp.sin(jnp.arange(h * n * d, dtype=jnp.float32)).reshape(h, n, d)
    args = (ks,) if positional else (ks, ks)
    eager_and_jit(batched(partial, "h"), jax.vmap(partial)(*args), *args)


def _stablehlo(fn, *args):
    """The lowered module, with the module name and any location info taken out (as tests/test_zero_cost.py)."""
    text = jax.jit(fn).lower(*args).as_text()
    text = re.sub(r"^module @\S+", "module @m", text, flags=re.MULTILINE)
    return re.sub(r"\s*loc\(.*?\)$", "", text, flags=re.MULTILINE)


def test_under_jit_the_program_of_jax_vmap_of_the_partial():
    """docs/architecture.md, Guarantees: zero-cost: passing the bound values with in_axes=None lowers as closing over them."""
    for partial in (ft.partial(attn, Q[0], mask=MASK), jax.tree_util.Partial(attn, mask=MASK)):
        args = (K,) if partial.args else (Q, K)
        assert _stablehlo(batched(partial, "h"), *args) == _stablehlo(jax.vmap(partial), *args)
