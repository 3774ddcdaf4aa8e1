"""The pytest plugin: --shapedmap-modules / shapedmap_modules run check_batched per batched function."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import shapedmap._docs_cli
import shapedmap.examples
import shapedmap.pytest_plugin
import shapedmap.testing

# pytester's in-process runs drop the modules they import afterwards; imported here first, jaxlib
# (whose second import aborts the process) and beartype (whose classes must stay one) are kept, and
# so is the discovery the plugin imports when it collects (shapedmap._docs_cli).

pytest_plugins = ["pytester"]

MODULE = """
    import itertools

    from jaxtyping import Array, Float
    from hypothesis import strategies as st

    from shapedmap import batched
    from shapedmap.examples import square_each  # a re-export: not this module's own


    @batched("b")
    def good(x: Float[Array, "n"]) -> Float[Array, ""]:
        return x.sum()


    also_good = good  # an alias: checked once, under its first name

    _calls = itertools.count()


    @batched("b")
    def bad(x: Float[Array, "n"]) -> Float[Array, "n"]:
        # Reads global state: the batched call and the per-example loop see different values.
        return x + next(_calls)


    def power(x: Float[Array, "n"], exponent: int) -> Float[Array, "n"]:
        return x**exponent


    powers = batched(power, "b")


    def helper(x):
        return x
"""

OPTIONS = """

    __shapedmap_check__ = {"powers": {"static": {"exponent": st.integers(1, 3)}, "n": 2}, "bad": False}
"""


@pytest.fixture
def module(pytester: pytest.Pytester):
    """Write ``batched_mod.py`` (with per-function options unless told otherwise) on sys.path."""

    def make(options: bool = True, name: str = "batched_mod") -> str:
        pytester.makepyfile(**{name: textwrap.dedent(MODULE) + (textwrap.dedent(OPTIONS) if options else "")})
        pytester.syspathinsert()
        return name

    return make


def test_one_item_per_batched_function(pytester, module):
    module(options=False)
    result = pytester.runpytest("--shapedmap-modules=batched_mod", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["batched_mod::good", "batched_mod::bad", "batched_mod::powers", "3 tests collected*"])
    result.stdout.no_fnmatch_line("*square_each*")
    result.stdout.no_fnmatch_line("*also_good*")
    result.stdout.no_fnmatch_line("*helper*")


def test_functions_batched_here_from_imported_per_example_functions_are_this_modules(pytester):
    pytester.makepyfile(
        per_example_mod="""
        from jaxtyping import Array, Float

        def step(x: Float[Array, "n"]) -> Float[Array, "n"]:
            return 2 * x
        """,
        layers_mod="""
        from shapedmap import batched
        from per_example_mod import step

        batched_step = batched(step, "b")  # functools.wraps gives it step's __module__
        """,
        api_mod="""
        from layers_mod import batched_step  # a re-export: listed under layers_mod only
        """,
    )
    pytester.syspathinsert()
    for modules in ("layers_mod,api_mod", "api_mod,layers_mod"):
        result = pytester.runpytest_subprocess(f"--shapedmap-modules={modules}", "--collect-only", "-q")
        result.stdout.fnmatch_lines(["layers_mod::batched_step", "1 test collected*"])


def test_items_pass_and_fail_with_the_report(pytester, module):
    module(options=False)
    result = pytester.runpytest("--shapedmap-modules=batched_mod", "-k", "good or bad", "-v")
    result.assert_outcomes(passed=1, failed=1, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "batched_mod::good PASSED*",
            "batched_mod::bad FAILED*",
            "*check_batched(bad): the batched call (eagerly) differs from the loop over the batch",
            "  inputs: x: f32[1,1]",
            "  first differing batch index: b=0",
            "*max |batched - loop| = 1 *",
        ]
    )


def test_a_static_parameter_without_default_needs_options(pytester, module):
    module(options=False)
    result = pytester.runpytest("--shapedmap-modules=batched_mod", "-k", "powers")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*static parameter 'exponent'*has no default*given={'exponent': ...}*"])


def test_module_options_configure_and_skip_functions(pytester, module):
    module(options=True)
    result = pytester.runpytest("--shapedmap-modules=batched_mod", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["batched_mod::good PASSED*", "batched_mod::powers PASSED*"])
    result.stdout.no_fnmatch_line("*::bad*")


COUNTED = """
    from pathlib import Path

    from hypothesis import strategies as st
    from jaxtyping import Array, Float, PyTree

    from shapedmap import batched


    def drawn(k):
        with Path("draws.txt").open("a") as out:  # one line per example drawn
            out.write(f"{k}\\n")
        return k


    def scaled(x: Float[Array, "n"], k: int) -> Float[Array, "n"]:
        return k * x


    def first_row(params: PyTree[Float[Array, "..."]], x: Float[Array, "3"]) -> Float[Array, ""]:
        return x @ params["w"]


    counted = batched(scaled, "b")
    shared = batched(first_row, "b", layouts={"params": None})
    __shapedmap_check__ = {
        "counted": {"given": {"k": st.integers(0, 10**9).map(drawn)}},
        "shared": {"given": {"params": {"w": jnp.arange(3.0)}}},
    }
"""


@pytest.mark.parametrize(("arguments", "least", "most"), [((), 20, 24), (("--shapedmap-examples=3",), 3, 5)])
def test_items_draw_20_examples_unless_told_and_take_given(pytester, arguments, least, most):
    pytester.makepyfile(counted_mod="import jax.numpy as jnp\n" + textwrap.dedent(COUNTED))
    pytester.syspathinsert()
    result = pytester.runpytest("--shapedmap-modules=counted_mod", *arguments)
    result.assert_outcomes(passed=2)
    draws = (pytester.path / "draws.txt").read_text().splitlines()
    assert least <= len(draws) <= most


def test_a_wrong_number_of_examples_is_a_usage_error(pytester, module):
    module(options=True)
    result = pytester.runpytest("--shapedmap-modules=batched_mod", "--shapedmap-examples=many")
    result.stderr.fnmatch_lines(["*--shapedmap-examples must be a positive int or 'profile', got 'many'*"])


def test_ini_option_and_several_modules(pytester, module):
    module(options=True)
    pytester.makeini("[pytest]\nshapedmap_modules =\n    batched_mod\n    shapedmap.examples\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["batched_mod::good", "shapedmap.examples::square_each", "shapedmap.examples::mm"])
    result.stdout.fnmatch_lines(["14 tests collected*"])  # 2 + the 12 seed examples


def test_modules_that_do_not_import_are_collection_errors(pytester, module):
    pytester.makepyfile(broken_mod="raise RuntimeError('boom')")
    pytester.syspathinsert()
    result = pytester.runpytest("--shapedmap-modules=broken_mod,not_a_module")
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting broken_mod*",
            "*cannot import 'broken_mod' (RuntimeError: boom)*",
            "*cannot import 'not_a_module' (ModuleNotFoundError*",
            "*Interrupted: 2 errors during collection*",
        ]
    )
    assert result.ret != 0


def test_unknown_function_in_module_options_is_an_error(pytester):
    pytester.makepyfile(
        typo_mod="""
        from jaxtyping import Array, Float
        from shapedmap import batched

        @batched("b")
        def good(x: Float[Array, "n"]) -> Float[Array, ""]:
            return x.sum()

        __shapedmap_check__ = {"godo": False}
        """
    )
    pytester.syspathinsert()
    result = pytester.runpytest("--shapedmap-modules=typo_mod")
    result.stdout.fnmatch_lines(["*__shapedmap_check__ names 'godo', which is not a batched function*found: good*"])


def test_without_the_option_nothing_is_collected_or_imported(pytester, module):
    module(options=False)
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            assert "shapedmap.testing" not in sys.modules
            assert "batched_mod" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*batched_mod::*")


def test_the_plugin_module_itself_imports_neither_jax_nor_shapedmap():
    """Loaded on its own (as pytest's entry point does, minus the package), it needs only pytest."""
    path = Path(shapedmap.pytest_plugin.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('plugin_alone', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('jax', 'jaxtyping', 'hypothesis', 'shapedmap') if m in sys.modules))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_pytest_start_up_does_not_import_jax():
    spec = importlib.util.find_spec("shapedmap.pytest_plugin")
    assert spec is not None
    code = "import sys, shapedmap.pytest_plugin; print('jax' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
