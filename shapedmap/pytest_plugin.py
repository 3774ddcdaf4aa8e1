"""A pytest plugin: ``check_batched`` over every batched function of a module, one item each.

Opt in with the command-line option or the ini option, naming modules by import path::

    pytest --shapedmap-modules=mypkg.layers,mypkg.losses

    # pyproject.toml
    [tool.pytest.ini_options]
    shapedmap_modules = ["mypkg.layers", "mypkg.losses"]

Each function made by ``shapedmap.batched`` at the top level of those modules becomes a
test item ``mypkg.layers::attention`` that runs ``check_batched`` on it (Hypothesis
settings from the loaded profile, e.g. ``--hypothesis-profile``). A module may pass options
to ``check_batched`` per function, or skip one, with a dict named ``__shapedmap_check__``::

    __shapedmap_check__ = {"attention": {"head": 2, "static": {"causal": st.booleans()}}, "sample": False}

The plugin is installed with shapedmap (entry point ``pytest11``) and stays out of the way:
this module imports neither JAX nor the rest of shapedmap; that happens only when a
module is named.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["BatchedFunctionItem", "BatchedModule"]

_OPTION = "shapedmap_modules"
_HELP = "check_batched every function made by shapedmap.batched in these modules (import paths, comma-separated)"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shapedmap", "shapedmap property checks")
    group.addoption("--shapedmap-modules", dest=_OPTION, action="append", default=[], metavar="MODULES", help=_HELP)
    parser.addini(_OPTION, help=_HELP, type="linelist", default=[])


def module_names(config: pytest.Config) -> list[str]:
    """The modules named by ``--shapedmap-modules`` (repeatable, comma-separated) or the ini option."""
    given = config.getoption(_OPTION) or config.getini(_OPTION)
    names: dict[str, None] = {}
    for text in given:
        for name in str(text).split(","):
            if name.strip():
                names.setdefault(name.strip())
    return list(names)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: our items exist before -k/-m deselection and other plugins' reordering. The
    # collect report goes through the usual hooks, so the items are counted and an import
    # error is a collection error like any other.
    for name in module_names(config):
        module = BatchedModule.from_parent(session, name=name, nodeid=name)
        report = module.ihook.pytest_make_collect_report(collector=module)
        module.ihook.pytest_collectreport(report=report)
        if report.passed:
            items.extend(item for item in report.result if isinstance(item, pytest.Item))


class BatchedModule(pytest.Collector):
    """The batched functions of one module (named by its import path)."""

    def collect(self) -> list[pytest.Item]:
        try:
            module = importlib.import_module(self.name)
        except Exception as error:
            raise self.CollectError(
                f"--shapedmap-modules: cannot import {self.name!r} ({type(error).__name__}: {error}); "
                "name modules by their import path, e.g. mypkg.layers"
            ) from error
        options = getattr(module, "__shapedmap_check__", {})
        if not isinstance(options, dict):
            raise self.CollectError(
                f"{self.name}.__shapedmap_check__ must be a dict from function name to check_batched "
                f"options (or False to skip), got {type(options).__name__}"
            )
        found = dict(batched_functions(module))
        for unknown in options.keys() - found.keys():
            raise self.CollectError(
                f"{self.name}.__shapedmap_check__ names {unknown!r}, which is not a batched function of "
                f"the module (found: {', '.join(found) or 'none'})"
            )
        items: list[pytest.Item] = []
        for attribute, function in found.items():
            given = options.get(attribute, {})
            if given is False:
                continue
            if not isinstance(given, dict):
                raise self.CollectError(
                    f"{self.name}.__shapedmap_check__[{attribute!r}] must be a dict of check_batched "
                    f"options or False, got {given!r}"
                )
            items.append(BatchedFunctionItem.from_parent(self, name=attribute, function=function, options=given))
        return items


def batched_functions(module: Any) -> Iterator[tuple[str, Any]]:
    """``(attribute name, function)`` for each batched function of ``module``, in order.

    Aliases of one function are listed once, under their first name. Re-exports are left to the
    module that made them (where ``batched`` was called), or that their ``__module__`` names,
    when that module holds them; a function batched here from a per-example function imported
    from elsewhere is this module's.
    """
    seen: set[int] = set()
    for attribute, value in vars(module).items():
        if attribute.startswith("_") or not hasattr(value, "__shapedmap__") or id(value) in seen:
            continue
        if _imported(value, module):
            continue
        seen.add(id(value))
        yield attribute, value


def _imported(value: Any, module: Any) -> bool:
    """Is ``value`` a re-export: held by the other module that made it or that it names?"""
    names = (getattr(value.__shapedmap__, "defined_in", None), getattr(value, "__module__", None))
    homes = [sys.modules.get(name) for name in names if name and name != module.__name__]
    return any(home is not None and any(item is value for item in vars(home).values()) for home in homes)


class BatchedFunctionItem(pytest.Item):
    """``check_batched`` on one batched function."""

    def __init__(self, *, function: Any, options: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function
        self.options = options
        self.add_marker("shapedmap")

    def runtest(self) -> None:
        from shapedmap.testing import check_batched

        check_batched(self.function, **self.options)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from shapedmap.testing import BatchedCheckError

        if isinstance(excinfo.value, BatchedCheckError):
            notes = getattr(excinfo.value, "__notes__", [])
            return "\n".join([str(excinfo.value), *notes])
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        target = inspect.unwrap(self.function)
        try:
            path: Path | str = Path(inspect.getsourcefile(target) or self.path)
            line: int | None = inspect.getsourcelines(target)[1] - 1
        except (OSError, TypeError):
            path, line = self.path, None
        return path, line, f"check_batched({self.parent.name}.{self.name})"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shapedmap: a check_batched item made by --shapedmap-modules")
