"""A pytest plugin: ``check_batched`` over every batched function of a module, one item each.

Opt in with the command-line option or the ini option, naming modules by import path::

    pytest --shapedmap-modules=mypkg.layers,mypkg.losses

    # pyproject.toml
    [tool.pytest.ini_options]
    shapedmap_modules = ["mypkg.layers", "mypkg.losses"]

Each function made by ``shapedmap.batched`` at the top level of those modules becomes a
test item ``mypkg.layers::attention`` that runs ``check_batched`` on it with
``EXAMPLES`` (20) examples — about 3 CPU-seconds a function, where the Hypothesis default of
100 takes about 7 (``benchmarks/plugin_cost.py``) — and the other settings of the loaded profile. ``--shapedmap-examples=N`` (or
the ini option ``shapedmap_examples``) changes the number; ``profile`` takes the loaded
profile's (``--hypothesis-profile``), and a function's own ``max_examples`` or ``settings``
option wins over both. They are found as
``python -m shapedmap docs`` finds them (``shapedmap._docs_cli.batched_functions``, without
submodules or methods): a re-export is left to the module that made it, an alias is checked
once. A module may pass options to ``check_batched`` per function, or skip one, with a dict
named ``__shapedmap_check__``::

    __shapedmap_check__ = {"attention": {"head": 2, "static": {"causal": st.booleans()}}, "sample": False}

With ``--shapedmap-verify`` (or the ini option ``shapedmap_verify = true``) each function also
gets an item ``mypkg.layers::attention[verify]`` that runs ``shapedmap.testing.verify`` on it: its
shape contract traced with symbolic sizes, for every size, in milliseconds. Its options come from
a dict named ``__shapedmap_verify__`` (``{"conv": {"constraints": ("t >= k",)}, "sample": False}``); a
function verify cannot make a value for (a static parameter without default) is skipped, saying
what to give.

The plugin is installed with shapedmap (entry point ``pytest11``) and stays out of the way:
this module imports neither JAX nor the rest of shapedmap; that happens only when a
module is named.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

__all__ = ["BatchedFunctionItem", "BatchedModule", "VerifyItem"]

_OPTION = "shapedmap_modules"
_HELP = "check_batched every function made by shapedmap.batched in these modules (import paths, comma-separated)"
_VERIFY = "shapedmap_verify"
_VERIFY_HELP = "also verify every such function for every size (shapedmap.testing.verify): one [verify] item each"
_EXAMPLES = "shapedmap_examples"
_EXAMPLES_HELP = "examples check_batched draws per function (default 20); 'profile': the loaded Hypothesis profile's"
EXAMPLES = 20  # examples per function by default: ~3 CPU-seconds each (docs/testing.md measures it)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--shapedmap-modules`` and the ini option ``shapedmap_modules``.

    Example:
        >>> import contextlib, io, os, tempfile
        >>> import pytest
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = pytest.main(["-c", os.devnull, "--rootdir", tempfile.mkdtemp(), "--help"])
        >>> "--shapedmap-modules=MODULES" in out.getvalue()
        True
    """
    group = parser.getgroup("shapedmap", "shapedmap property checks")
    group.addoption("--shapedmap-modules", dest=_OPTION, action="append", default=[], metavar="MODULES", help=_HELP)
    parser.addini(_OPTION, help=_HELP, type="linelist", default=[])
    group.addoption("--shapedmap-verify", dest=_VERIFY, action="store_true", default=None, help=_VERIFY_HELP)
    parser.addini(_VERIFY, help=_VERIFY_HELP, type="bool", default=False)
    group.addoption("--shapedmap-examples", dest=_EXAMPLES, default=None, metavar="N", help=_EXAMPLES_HELP)
    parser.addini(_EXAMPLES, help=_EXAMPLES_HELP, default=str(EXAMPLES))


def examples(config: pytest.Config) -> int | None:
    """The examples per function the options ask for: an int, or None for the profile's.

    Example:
        >>> class Config:
        ...     def __init__(self, given):
        ...         self.given = given
        ...     def getoption(self, name):
        ...         return self.given
        ...     def getini(self, name):
        ...         return "20"
        >>> examples(Config(None)), examples(Config("200")), examples(Config("profile"))
        (20, 200, None)
    """
    text = str(config.getoption(_EXAMPLES) or config.getini(_EXAMPLES) or EXAMPLES).strip()
    if text == "profile":
        return None
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"--shapedmap-examples must be a positive int or 'profile', got {text!r}")
    return int(text)


def module_names(config: pytest.Config) -> list[str]:
    """The modules named by ``--shapedmap-modules`` (repeatable, comma-separated) or the ini option.

    Example:
        >>> class Config:  # what pytest gives: the command-line values, else the ini option's
        ...     def getoption(self, name):
        ...         return ["mypkg.layers,mypkg.losses", "mypkg.layers"]
        ...     def getini(self, name):
        ...         return []
        >>> module_names(Config())
        ['mypkg.layers', 'mypkg.losses']
    """
    given = config.getoption(_OPTION) or config.getini(_OPTION)
    names: dict[str, None] = {}
    for text in given:
        for name in str(text).split(","):
            if name.strip():
                names.setdefault(name.strip())
    return list(names)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Collect each named module (a ``BatchedModule``) and add its items, before ``-k``/``-m`` select.

    Example:
        >>> import contextlib, io, os, tempfile
        >>> import pytest
        >>> here = tempfile.mkdtemp()  # an empty folder: the plugin's items are the only ones
        >>> arguments = ["-c", os.devnull, "--rootdir", here, here, "-p", "no:cacheprovider"]
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = pytest.main([*arguments, "--shapedmap-modules=shapedmap.examples", "-k", "mv or mm", "--co", "-q"])
        >>> [line for line in out.getvalue().splitlines() if "::" in line]
        ['shapedmap.examples::mv', 'shapedmap.examples::mm']
    """
    # tryfirst: our items exist before -k/-m deselection and other plugins' reordering. The
    # collect report goes through the usual hooks, so the items are counted and an import
    # error is a collection error like any other.
    names = module_names(config)
    if names:
        examples(config)  # a wrong --shapedmap-examples is a usage error, before anything runs
    for name in names:
        module = BatchedModule.from_parent(session, name=name, nodeid=name)
        report = module.ihook.pytest_make_collect_report(collector=module)
        module.ihook.pytest_collectreport(report=report)
        if report.passed:
            items.extend(item for item in report.result if isinstance(item, pytest.Item))


class BatchedModule(pytest.Collector):
    """The batched functions of one module (named by its import path): one item each.

    Example:
        >>> import contextlib, io, os, tempfile
        >>> import pytest
        >>> here = tempfile.mkdtemp()  # an empty folder: the plugin's items are the only ones
        >>> arguments = ["-c", os.devnull, "--rootdir", here, here, "-p", "no:cacheprovider"]
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = pytest.main([*arguments, "--shapedmap-modules=shapedmap.examples", "--collect-only", "-q"])
        >>> for line in out.getvalue().splitlines():
        ...     if "::" in line:
        ...         print(line)
        shapedmap.examples::square_each
        shapedmap.examples::row_sums
        shapedmap.examples::column_sums
        shapedmap.examples::row_softmax
        shapedmap.examples::angles
        shapedmap.examples::message_passing
        shapedmap.examples::chained
        shapedmap.examples::pairwise
        shapedmap.examples::row_custom_dot
        shapedmap.examples::mv
        shapedmap.examples::mm
        shapedmap.examples::batch_sum_of_squares
    """

    def collect(self) -> list[pytest.Item]:
        """Import the module and make a ``BatchedFunctionItem`` per batched function (``CollectError``
        when it does not import, or when its ``__shapedmap_check__`` is malformed)."""
        from shapedmap._docs_cli import batched_functions

        try:
            module = importlib.import_module(self.name)
        except Exception as error:
            raise self.CollectError(
                f"--shapedmap-modules: cannot import {self.name!r} ({type(error).__name__}: {error}); "
                "name modules by their import path, e.g. mypkg.layers"
            ) from error
        found = {name: fn for _, name, fn in batched_functions(module, submodules=False, methods=False)}
        items: list[pytest.Item] = [
            BatchedFunctionItem.from_parent(self, name=attribute, function=found[attribute], options=given)
            for attribute, given in options_by_function(self, module, "__shapedmap_check__", "check_batched", found)
        ]
        if self.config.getoption(_VERIFY) or self.config.getini(_VERIFY):
            items += verify_items(self, module, found)
        return items


def options_by_function(
    parent: pytest.Collector, module: Any, attribute: str, tool: str, found: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """``(function name, options)`` for every batched function the module's ``attribute`` (a dict from
    function name to ``tool``'s options, or False to skip it) does not skip; a ``CollectError`` when
    it is malformed or names something that is not a batched function of the module."""
    options = getattr(module, attribute, {})
    if not isinstance(options, dict):
        raise parent.CollectError(
            f"{parent.name}.{attribute} must be a dict from function name to {tool} options "
            f"(or False to skip), got {type(options).__name__}"
        )
    for unknown in options.keys() - found.keys():
        raise parent.CollectError(
            f"{parent.name}.{attribute} names {unknown!r}, which is not a batched function of "
            f"the module (found: {', '.join(found) or 'none'})"
        )
    chosen = []
    for name in found:
        given = options.get(name, {})
        if given is False:
            continue
        if not isinstance(given, dict):
            raise parent.CollectError(
                f"{parent.name}.{attribute}[{name!r}] must be a dict of {tool} options or False, got {given!r}"
            )
        chosen.append((name, given))
    return chosen


def verify_items(parent: BatchedModule, module: Any, found: dict[str, Any]) -> list[pytest.Item]:
    """One ``VerifyItem`` per batched function, with the options ``__shapedmap_verify__`` gives it."""
    return [
        VerifyItem.from_parent(parent, name=f"{name}[verify]", function=found[name], options=given)
        for name, given in options_by_function(parent, module, "__shapedmap_verify__", "verify", found)
    ]


class BatchedFunctionItem(pytest.Item):
    """``check_batched`` on one batched function, with the options its module gives it.

    Example:
        >>> import contextlib, io, os, tempfile
        >>> import pytest
        >>> here = tempfile.mkdtemp()  # an empty folder: the plugin's items are the only ones
        >>> arguments = ["-c", os.devnull, "--rootdir", here, here, "-p", "no:cacheprovider"]
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = pytest.main([*arguments, "--shapedmap-modules=shapedmap.examples", "-k", "column_sums", "-q"])
        >>> code, out.getvalue().splitlines()[-1].split(" in ")[0]
        (<ExitCode.OK: 0>, '1 passed, 11 deselected')
    """

    def __init__(self, *, function: Any, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function
        self.options = options
        self.add_marker("shapedmap")

    def runtest(self) -> None:
        """Run ``check_batched`` (a failure raises its ``BatchedCheckError``)."""
        from shapedmap.testing import check_batched

        options = dict(self.options)
        count = examples(self.config)
        if count is not None and "max_examples" not in options and "settings" not in options:
            options["max_examples"] = count
        check_batched(self.function, **options)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A ``check_batched`` failure as its report (no traceback); anything else as pytest shows it."""
        from shapedmap.testing import BatchedCheckError

        if isinstance(excinfo.value, BatchedCheckError):
            notes = getattr(excinfo.value, "__notes__", [])
            return "\n".join([str(excinfo.value), *notes])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        """Where the function is defined, and ``check_batched(module.function)``."""
        target = inspect.unwrap(self.function)
        try:
            path: Path | str = Path(inspect.getsourcefile(target) or self.path)
            line: int | None = inspect.getsourcelines(target)[1] - 1
        except (OSError, TypeError):
            path, line = self.path, None
        return path, line, f"check_batched({self.parent.name}.{self.name})"


class VerifyItem(BatchedFunctionItem):
    """``shapedmap.testing.verify`` on one batched function: its contract for every size.

    Example:
        >>> import contextlib, io, os, tempfile
        >>> import pytest
        >>> here = tempfile.mkdtemp()  # an empty folder: the plugin's items are the only ones
        >>> arguments = ["-c", os.devnull, "--rootdir", here, here, "-p", "no:cacheprovider"]
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = pytest.main(
        ...         [*arguments, "--shapedmap-modules=shapedmap.examples", "--shapedmap-verify", "-k", "verify", "-q"]
        ...     )
        >>> code, out.getvalue().splitlines()[-1].split(" in ")[0]
        (<ExitCode.OK: 0>, '12 passed, 12 deselected')
    """

    def runtest(self) -> None:
        """Run ``verify`` (a contract that does not hold raises its ``VerifyError``; one it cannot trace skips)."""
        from shapedmap.testing import verify
        from shapedmap.testing._verify import NeedsValue

        try:
            verify(self.function, **self.options)
        except NeedsValue as error:
            pytest.skip(f"verify: {error} (in __shapedmap_verify__)")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A contract that does not hold as its report (no traceback); anything else as pytest shows it."""
        from shapedmap.testing import VerifyError

        if isinstance(excinfo.value, VerifyError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        """Where the function is defined, and ``verify(module.function)``."""
        path, line, _ = super().reportinfo()
        return path, line, f"verify({self.parent.name}.{self.name.removesuffix('[verify]')})"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``shapedmap`` marker its items carry (``-m shapedmap`` selects them).

    Example:
        >>> import contextlib, io, os, tempfile
        >>> import pytest
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = pytest.main(["-c", os.devnull, "--rootdir", tempfile.mkdtemp(), "--markers"])
        >>> "@pytest.mark.shapedmap: a check_batched item made by --shapedmap-modules" in out.getvalue()
        True
    """
    config.addinivalue_line("markers", "shapedmap: a check_batched item made by --shapedmap-modules")
