"""``shapedmap.testing.verify``: a batched function's shape contract traced with symbolic sizes.

Each outcome on small functions, with its message text (the dims, the constraint, the user's
file:line); every spec form and the seed examples hold; and a property: for small functions
built from shape operations, verify says "holds" exactly when the hand-written ``jax.vmap`` of
the body returns the annotated shapes at distinct concrete sizes (the oracle traces it at three
assignments of distinct sizes; a function whose shapes are wrong at some size is wrong at one of
them, for these operations).
"""

import contextlib
import inspect
import io
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float, Int, Key, Num, PyTree

import shapedmap.examples
from shapedmap import Budget, ShapeError, batched
from shapedmap._docs_cli import batched_functions
from shapedmap._layout_trees import TreePlacement
from shapedmap.testing import VerifyError, VerifyReport, verify
from shapedmap.testing._symbolic import NeedsValue


def line_of(fn, text):
    """The line number of the first source line of ``fn`` that holds ``text``."""
    lines, start = inspect.getsourcelines(fn)
    return start + next(index for index, line in enumerate(lines) if text in line)


def failure(fn, **options):
    with pytest.raises(VerifyError) as caught:
        verify(fn, **options)
    return caught.value


# -- holds --------------------------------------------------------------------------------


def matmul(x: Float[Array, "n m"], y: Float[Array, "m k"]) -> Float[Array, "n k"]:
    return x @ y


def test_holds_returns_a_report_naming_the_traces():
    report = verify(batched(matmul, "b"))
    assert isinstance(report, VerifyReport)
    assert report.outcome == "holds" and report.findings == ()
    assert report.traces == ("every dim its own size",)
    assert str(report).startswith("matmul (") and "holds for every size >= 1 (1 trace" in str(report)
    assert report.line == inspect.getsourcelines(matmul)[1]
    assert "size 0" in report.not_covered
    json.dumps(report.as_dict())


@pytest.mark.parametrize("name", [name for _, name, _ in batched_functions(shapedmap.examples)], ids=str)
def test_every_seed_example_holds(name):
    assert verify(getattr(shapedmap.examples, name)).outcome == "holds"


# -- holds only if --------------------------------------------------------------------------


def add(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "n"]:
    return x + y


def test_holds_only_if_names_the_equality_the_operation_and_the_line():
    error = failure(batched(add, "b"))
    assert isinstance(error, ShapeError)
    report = error.report
    assert report.outcome == "holds only if"
    (finding,) = report.findings
    assert finding.needs == "n == m"
    assert finding.where == f"tests/test_verify.py:{line_of(add, 'x + y')}"
    assert str(error).startswith("add (tests/test_verify.py:")
    assert (
        f"holds only if n == m\n  [holds only if; trace: every dim its own size] `return x + y` at {finding.where} needs n == m"
        in str(error)
    )


def inner(x: Float[Array, "n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
    return x * y


inner_batched = batched(inner, "e")


def outer(x: Float[Array, "e n"], y: Float[Array, "e m"]) -> Float[Array, "e n"]:
    return inner_batched(x, y)  # another batched function's ShapeError: needs n == m here


def test_a_nested_batched_functions_error_is_a_condition_at_the_callers_line():
    finding = failure(batched(outer, "b")).report.findings[0]
    assert (finding.outcome, finding.needs) == ("holds only if", "n == m")
    assert finding.where.endswith(f":{line_of(outer, 'inner_batched(x, y)')}")


def window(x: Float[Array, "t"], k: Float[Array, "k"]) -> Float[Array, "k"]:
    return jax.lax.dynamic_slice(x, (0,), (k.shape[0],))


def test_an_order_between_dims_is_found_and_a_given_constraint_proves_it():
    finding = failure(batched(window, "b")).report.findings[0]
    assert (finding.outcome, finding.needs) == ("holds only if", "t >= k")
    report = verify(batched(window, "b"), constraints=("t >= k",))
    assert report.constraints == ("t >= k",) and "holds for every size >= 1 with constraints t >= k" in str(report)


def pair_sum(t: tuple[Float[Array, "n"], Float[Array, "m"]]) -> Float[Array, "n"]:
    return t[0] + t[1]


def test_pytree_parameters_are_traced_leaf_by_leaf():
    assert failure(batched(pair_sum, "b")).report.findings[0].needs == "n == m"


# -- wrong ------------------------------------------------------------------------------------


def transposed(x: Float[Array, "n m"]) -> Float[Array, "n m"]:
    return x.T


def one_more(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return jnp.concatenate([x, x[:1]])


def test_a_transposed_result_is_wrong_returned_against_annotated():
    report = failure(batched(transposed, "b")).report
    (finding,) = report.findings
    assert report.outcome == "wrong" and finding.outcome == "wrong"
    assert finding.message.startswith("returns f32(m, n) per example; annotated (n, m)\ntransposed: dimension 'n'")
    assert finding.message.endswith("(it would hold only where n == m)")


def test_a_result_of_size_n_plus_1_annotated_n_is_wrong():
    finding = failure(batched(one_more, "b")).report.findings[0]
    assert finding.message.startswith("returns f32(n + 1) per example; annotated (n)")
    assert finding.needs is None


def doubled(x: Num[Array, "n"]) -> Float[Array, "n"]:
    return x * 2


def longest(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "max(n,m)"]:
    return x[: y.shape[0]]  # min(n, m)


def test_min_where_max_is_annotated_is_wrong():
    finding = failure(batched(longest, "b")).report.findings[0]
    assert finding.outcome == "wrong"
    assert finding.message.startswith("returns f32(min(n, m)) per example; annotated (max(n,m))")


def test_each_admitted_dtype_family_is_traced():
    report = failure(batched(doubled, "b")).report
    assert [finding.case for finding in report.findings] == [
        "'x' of dtype int32",
        "'x' of dtype complex64",
        "'x' of dtype uint32",
    ]
    assert report.findings[0].message.startswith("returns i32(n) per example; annotated Float(n)")


def flattened(x: Float[Array, "*d"]) -> Float[Array, "*d"]:
    return x.reshape(-1)


def test_star_dims_are_traced_at_several_ranks():
    report = failure(batched(flattened, "b")).report
    assert {finding.case for finding in report.findings} == {"'*' dims of rank 0", "'*' dims of rank 2"}
    assert verify(batched(flattened, "b"), ranks=(1,)).outcome == "holds"


def first(x: Float[Array, "#n"], y: Float[Array, "n"]) -> Float[Array, "n"]:
    return x  # of size 1 where x is broadcast


def test_a_broadcastable_dim_is_traced_at_size_1():
    (finding,) = failure(batched(first, "b")).report.findings
    assert finding.case == "'#n' of 'x' is 1"
    assert finding.message.startswith("returns f32(1) per example; annotated (n)")


def tiled(x: Float[Array, "n"], k: int) -> Float[Array, "2*n"]:
    return jnp.tile(x, k)


def test_a_static_value_is_given_and_changes_the_verdict():
    with pytest.raises(NeedsValue, match=r"'k' has no default.*given=\{'k': \.\.\.\}"):
        verify(batched(tiled, "b"))
    assert verify(batched(tiled, "b"), given={"k": 2}).outcome == "holds"
    assert (
        failure(batched(tiled, "b"), given={"k": 3})
        .report.findings[0]
        .message.startswith("returns f32(3*n) per example; annotated (2*n)")
    )


# -- undecided --------------------------------------------------------------------------------


def branches(x: Float[Array, "n"]) -> Float[Array, "n"]:
    if x.shape[0] > 3:
        return x
    return -x


def nonzero(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return jnp.nonzero(x)[0].astype(jnp.float32)


def tail(x: Float[Array, "n"]) -> Float[Array, "n-3"]:
    return x[3:]


def test_a_python_branch_on_a_size_is_undecided_at_its_line():
    (finding,) = failure(batched(branches, "b")).report.findings
    assert finding.outcome == "undecided"
    assert finding.where.endswith(f":{line_of(branches, 'if x.shape')}")
    assert "`if x.shape[0] > 3:`" in finding.message and "cannot decide for every size" in finding.message


def test_a_shape_read_off_values_is_undecided():
    (finding,) = failure(batched(nonzero, "b")).report.findings
    assert finding.outcome == "undecided" and "makes a shape depend on values" in finding.message


def test_a_size_jax_cannot_decide_names_the_constraint_that_decides_it():
    (finding,) = failure(batched(tail, "b")).report.findings
    assert (finding.outcome, finding.needs) == ("undecided", "n >= 3")
    assert "verify(..., constraints=('n >= 3',))" in finding.message
    assert verify(batched(tail, "b"), constraints=("n >= 3",)).outcome == "holds"


# -- spec forms ---------------------------------------------------------------------------------


def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
    return x @ y


def scale(x: Float[Array, "n"]) -> Float[Array, "n"]:
    return 2 * x


def plus_one(x: Float[Array, "n"]) -> Float[Array, "n+1"]:
    return jnp.concatenate([x, x[:1]])


def halves(x: Float[Array, "n"]) -> Float[Array, "n//2"]:
    return x[: x.shape[0] // 2]


def head(x: Float[Array, "n"], y: Float[Array, "m"]) -> Float[Array, "min(n,m)"]:
    return x[: y.shape[0]]


def fixed(x: Float[Array, "3 n"]) -> Float[Array, "n 3"]:
    return x.T


def noisy(key: Key[Array, ""], x: Float[Array, "n"]) -> Float[Array, "n"]:
    return x + jax.random.normal(key, x.shape)


def tree_scale(tree: PyTree[Float[Array, "?d"], "T"]) -> PyTree[Float[Array, "?d"], "T"]:
    return jax.tree.map(lambda leaf: 2 * leaf, tree)


def counted(x: Int[Array, "n"], weights: Float[Array, "n"] | None = None) -> Float[Array, ""]:
    return jnp.sum(x if weights is None else x * weights).astype(jnp.float32)


@pytest.mark.parametrize(
    "make",
    [
        lambda: batched(vv, "b a, a -> b"),
        lambda: batched(vv, "a b, a -> b"),
        lambda: batched(vv, "*batch"),
        lambda: batched(vv, "#graph"),
        lambda: batched(vv, "graph time"),
        lambda: batched(scale, "b", layouts={"x": "n b"}, out="n b"),
        lambda: batched(scale, "b", chunk={"b": 2}),
        lambda: batched(scale, "b", chunk={"b": Budget(bytes=2**20)}),
        lambda: batched(plus_one, "b"),
        lambda: batched(halves, "b"),
        lambda: batched(head, "b"),
        lambda: batched(fixed, "b"),
        lambda: batched(noisy, "b"),
        lambda: batched(tree_scale, "b"),
        lambda: batched(counted, "b"),
    ],
    ids=[
        "full-signature",
        "batch-not-first",
        "star-batch",
        "broadcast-batch",
        "two-batch-names",
        "layouts-and-out",
        "fixed-chunk",
        "budget",
        "n-plus-1",
        "n-floordiv-2",
        "min-of-dims",
        "fixed-size",
        "key",
        "pytree-treepath",
        "optional-int",
    ],
)
def test_every_spec_form_holds(make):
    assert verify(make()).outcome == "holds"


class Model:
    def __init__(self, width):
        self.width = width

    @batched("b")
    def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        return x * self.width


def test_a_method_is_verified_on_its_instance_or_given_one():
    assert verify(Model(2.0).apply).outcome == "holds"
    with pytest.raises(NeedsValue, match=r"'self'.*verify\(obj.method\)"):
        verify(Model.apply)
    assert verify(Model.apply, given={"self": Model(3.0)}).outcome == "holds"


def read_entry(params: dict[str, Float[Array, "n"]], x: Float[Array, "n"]) -> Float[Array, "n"]:
    return params["w"] * x


def test_an_open_structure_the_body_reads_needs_a_given_value():
    with pytest.raises(NeedsValue, match=r"structure verify chose for 'params'.*given=\{'params': \.\.\.\}"):
        verify(batched(read_entry, "b"))
    structure = {"w": jnp.ones(4), "b": jax.ShapeDtypeStruct((), jnp.float32)}  # only the structure counts
    report = verify(batched(read_entry, "b", layouts={"params": "n"}), given={"params": structure})
    assert report.outcome == "holds"


def read_bias(params: dict[str, Float[Array, "n"]], x: Float[Array, "m"]) -> Float[Array, "m"]:
    return params["w"] + x


def test_a_given_structure_is_traced_with_symbolic_sizes():
    given = {"params": {"w": jnp.ones(4)}}
    report = failure(batched(read_bias, "b", layouts={"params": "n"}), given=given).report
    assert report.findings[0].needs == "n == m"  # the leaf's size 4 is not taken: n stays a symbol


def test_given_names_only_parameters():
    with pytest.raises(ValueError, match=r"verify\(tiled\): given= names kk, not parameters"):
        verify(batched(tiled, "b"), given={"kk": 2})


def test_only_batched_functions():
    with pytest.raises(TypeError, match=r"is not a function made by shapedmap\.batched"):
        verify(scale)


# -- the property: verify's verdict against the hand-written jax.vmap at distinct sizes -----

OPERATIONS = {
    "x": (lambda x, y: x, "n m"),
    "x.T": (lambda x, y: x.T, "n m"),
    "x + y": (lambda x, y: x + y, "n m"),
    "x * y.T": (lambda x, y: x * y.T, "n m"),
    "x @ y": (lambda x, y: x @ y, "n n"),
    "x @ y.T": (lambda x, y: x @ y.T, "n m"),
    "x.sum(0)": (lambda x, y: x.sum(0), "m"),
    "x.sum(1)": (lambda x, y: x.sum(1), "m"),
    "x[1:]": (lambda x, y: x[1:], "n m"),
    "x[:, None]": (lambda x, y: x[:, None], "n m"),
    "concat 0": (lambda x, y: jnp.concatenate([x, y]), "n m"),
    "concat 1": (lambda x, y: jnp.concatenate([x, y], axis=1), "n m"),
}


def oracle_holds(body, y_layout, result_layout):
    """Does ``jax.vmap(body)`` return the annotated shape at three assignments of distinct sizes?"""
    for b, n, m in ((2, 3, 5), (5, 7, 3), (3, 2, 4)):
        size = {"n": n, "m": m}
        x = jax.ShapeDtypeStruct((b, n, m), jnp.float32)
        y = jax.ShapeDtypeStruct((b, *(size[d] for d in y_layout.split())), jnp.float32)
        try:
            out = jax.eval_shape(jax.vmap(body), x, y)
        except Exception:
            return False
        if out.shape != (b, *(size[d] for d in result_layout.split())):
            return False
    return True


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(sorted(OPERATIONS)),
    st.sampled_from(["n m", "m n"]),
)
def test_verify_agrees_with_jax_vmap_at_distinct_sizes(operation, y_layout):
    body, result_layout = OPERATIONS[operation]

    def per_example(x: Float[Array, "n m"], y: Float[Array, y_layout]) -> Float[Array, result_layout]:
        return body(x, y)

    try:
        holds = verify(batched(per_example, "b")).outcome == "holds"
    except VerifyError as error:
        holds = False
        assert error.report.outcome in ("holds only if", "wrong", "undecided")
    assert holds == oracle_holds(body, y_layout, result_layout)


def layouts_page_functions():
    """Every batched function the layouts page's code defines, block after block (as the site runs them)."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "layouts.md").read_text()
    namespace, found = {"__name__": "docs.layouts"}, {}
    for match in re.finditer(r"^```python exec(?P<flags>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", text, re.M | re.S):
        with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
            exec(compile(match.group("code"), "<docs/layouts.md>", "exec", dont_inherit=True), namespace)
        for name, value in namespace.items():
            if callable(value) and getattr(value, "__shapedmap__", None) is not None:
                found.setdefault(id(value), (f"{len(found)}-{name}", value))
    return dict(found.values())


LAYOUTS_PAGE = layouts_page_functions()


@pytest.mark.parametrize("name", sorted(LAYOUTS_PAGE), ids=str)
def test_every_function_of_the_layouts_page_holds(name):
    """Each holds, but for the forms verify has no symbolic value for, which name the parameter and
    say what to do (a layout tree; an unannotated value whose per-example shape is open)."""
    fn = LAYOUTS_PAGE[name]
    try:
        assert verify(fn).outcome == "holds"
    except NeedsValue as error:
        plan = fn.__shapedmap__.plan
        untraceable = [
            a.name
            for a in plan.arguments
            if isinstance(a.placement, TreePlacement)
            or (a.placement is not None and a.value.takes_layout and "..." in str(a.placement.per_example))
        ]
        assert untraceable, error
        assert f"parameter '{untraceable[0]}'" in str(error)
        assert "layout tree" in str(error) or f"given={{'{untraceable[0]}': ...}}" in str(error)


def test_an_instance_given_is_not_kept_alive_by_the_function():
    import gc
    import weakref

    model = Model(2.0)
    alive = weakref.ref(model)
    assert verify(Model.apply, given={"self": model}).outcome == "holds"
    del model
    gc.collect()
    assert alive() is None  # docs/architecture.md, Guarantees: memory
