"""``python -m shapedmap docs MODULE``: the batched functions of a module, found and documented.

``batched_functions`` is the one place that finds them: the docs command documents each
(``document_module``, with ``describe``), and the pytest plugin (``--shapedmap-modules``)
makes a ``check_batched`` item of each. A function belongs to the module that made it:
where ``batched`` was called (``fn.__shapedmap__.defined_in``), else the module its
``__module__`` names. Another module that merely imports it leaves it to that one.

Example:
    >>> import types
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
    ...     '''The sum of one vector.'''
    ...     return jnp.sum(x)
    >>> module = types.ModuleType("layers")  # a module made on the spot
    >>> module.totals = batched(total, "b")
    >>> print(document_module(module))
    # Shapes of layers
    <BLANKLINE>
    ## `totals`
    <BLANKLINE>
    The sum of one vector.
    <BLANKLINE>
    ```text
    b n -> b
    ```
    <BLANKLINE>
    Maps the per-example function `total`.
    <BLANKLINE>
    |  | batched layout | per example | dtype | batch dims |
    | --- | --- | --- | --- | --- |
    | `x` | `b n` | `n` | Float | `b` (axis 0) |
    | return | `b` | scalar | Float | `b` (axis 0) |
    <BLANKLINE>
    | vmap over (outermost first) | axis_name | jax.vmap arguments |
    | --- | --- | --- |
    | `b` | `"b"` | `in_axes=0, out_axes=0` |
    <BLANKLINE>
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import types
from collections.abc import Iterator
from typing import Any

from ._describe import describe
from ._errors import SpecError

__all__ = ["batched_functions", "document_module", "run"]

FORMATS = ("markdown", "rst", "json")


def batched_functions(
    module: types.ModuleType, *, submodules: bool = True, methods: bool = True
) -> list[tuple[str, str, Any]]:
    """Every batched function of ``module``: ``(module name, name, function)``, in definition order.

    Aliases of one function are listed once, under the first name. A re-export, a function
    that another module made and holds (see the module docstring), is left to that module:
    listed there when that module is walked too, else not at all. A function no module of
    its own holds (made by a factory, say) is listed where it is first seen.

    Args:
        module: an imported module or package.
        submodules: walk a package's submodules too (importing each), after the package.
        methods: list the batched methods (classmethods, staticmethods) of the classes a
            module defines too, as ``Class.method``.

    Raises:
        ImportError: when a submodule does not import (its name is in the message).

    Example:
        >>> import types
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> from shapedmap.examples import mv
        >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...     return jnp.sum(x)
        >>> class Model:
        ...     @batched("b")
        ...     def apply(self, x: Float[Array, "n"]) -> Float[Array, "n"]:
        ...         return 2 * x
        >>> module = types.ModuleType("layers")
        >>> module.totals = module.also_totals = batched(total, "b")  # an alias: listed once
        >>> module._column_totals = batched(total, "n c -> c")
        >>> module.mv = mv  # a re-export: shapedmap.examples made it and holds it
        >>> module.Model, Model.__module__ = Model, "layers"
        >>> [(where, name) for where, name, _ in batched_functions(module)]
        [('layers', 'totals'), ('layers', '_column_totals'), ('layers', 'Model.apply')]
        >>> [name for _, name, _ in batched_functions(module, methods=False)]
        ['totals', '_column_totals']
    """
    found: dict[int, tuple[str, str, Any]] = {}
    for current in [module, *(_submodules(module) if submodules else ())]:
        for name, value in _members(current, methods):
            if id(value) not in found and not _imported(value, current):
                found[id(value)] = (current.__name__, name, value)
    return list(found.values())  # modules in walk order, each in definition order


def _submodules(package: types.ModuleType) -> Iterator[types.ModuleType]:
    if not hasattr(package, "__path__"):
        return
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            yield importlib.import_module(info.name)
        except (Exception, SystemExit) as error:
            raise ImportError(f"cannot import {info.name}: {type(error).__name__}: {error}") from error


def _members(module: types.ModuleType, methods: bool) -> Iterator[tuple[str, Any]]:
    """The module's batched functions, then (with ``methods``) those of the classes it defines."""
    for attribute, value in list(vars(module).items()):
        if _is_batched(value):
            yield attribute, value
        elif methods and isinstance(value, type) and value.__module__ == module.__name__:
            for name, member in vars(value).items():
                member = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                if _is_batched(member):
                    yield f"{attribute}.{name}", member


def _is_batched(value: Any) -> bool:
    return callable(value) and getattr(value, "__shapedmap__", None) is not None


def _imported(value: Any, module: types.ModuleType) -> bool:
    """Is ``value`` a re-export: held by the other module that made it, or that it names?"""
    names = (getattr(value.__shapedmap__, "defined_in", None), getattr(value, "__module__", None))
    homes = [sys.modules.get(name) for name in names if name and name != module.__name__]
    return any(home is not None and any(item is value for item in vars(home).values()) for home in homes)


def document_module(module: types.ModuleType, format: str = "markdown") -> str:
    """The shape documentation of every batched function in ``module`` (and its submodules).

    Args:
        module: an imported module or package.
        format: ``"markdown"``, ``"rst"`` or ``"json"``.

    Raises:
        ValueError: for another format.
        ImportError: when a submodule does not import.

    Example:
        >>> import json, types
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
        ...     return jnp.dot(x, y)
        >>> module = types.ModuleType("products")
        >>> module.mv = batched(vv, "b a, a -> b")
        >>> data = json.loads(document_module(module, "json"))
        >>> [(entry["module"], entry["name"], entry["signature"]) for entry in data["functions"]]
        [('products', 'mv', 'b a, a -> b')]
        >>> print(document_module(module, "rst").splitlines()[3])
        ``mv``
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}: use 'markdown', 'rst' or 'json'")
    entries = [(module_name, describe(fn, name=name)) for module_name, name, fn in batched_functions(module)]
    if format == "json":
        data = {
            "module": module.__name__,
            "functions": [{**contract.to_dict(), "module": module_name} for module_name, contract in entries],
        }
        return json.dumps(data, indent=2) + "\n"
    title = f"Shapes of {module.__name__}"
    parts = [f"# {title}\n"] if format == "markdown" else [f"{title}\n{'=' * len(title)}\n"]
    if not entries:
        parts.append(f"No function in {module.__name__} is made by shapedmap.batched.\n")
    current = None
    for module_name, contract in entries:
        if module_name != current and module_name != module.__name__:
            heading = module_name if format == "markdown" else f"``{module_name}``"
            parts.append(f"## {heading}\n" if format == "markdown" else f"{heading}\n{'-' * len(heading)}\n")
        current = module_name
        nested = module_name != module.__name__
        if format == "markdown":
            parts.append(contract.to_markdown(heading_level=3 if nested else 2))
        else:
            parts.append(contract.to_rst(heading_level=3 if nested else 2))
    return "\n".join(parts)


def run(module_name: str, format: str = "markdown", output: str | None = None) -> int:
    """``python -m shapedmap docs``: write the documentation of a module (by its import path).

    Writes to standard output, or to the file ``output``; a problem goes to standard error.

    Returns:
        The exit code: 0 on success, 2 when a module does not import or the file cannot be
        written, 1 when a batched function's annotations never resolve (a ``SpecError``).

    Example:
        >>> import sys, types
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def total(x: Float[Array, "n"]) -> Float[Array, ""]:
        ...     return jnp.sum(x)
        >>> sys.modules["sums"] = types.ModuleType("sums")  # as if imported
        >>> sys.modules["sums"].totals = batched(total, "b")
        >>> run("sums", "json")  # doctest: +ELLIPSIS
        {
          "module": "sums",
          "functions": [
            {
              "name": "totals",
        ...
        0
        >>> del sys.modules["sums"]
        >>> run("no_such_module_anywhere")
        2
    """
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # the user's module: any exception at import is theirs to see
        print(
            f"python -m shapedmap docs: cannot import {module_name}: {type(error).__name__}: {error}", file=sys.stderr
        )
        if isinstance(error, ModuleNotFoundError) and error.name == module_name.split(".")[0]:
            print(
                f"  run it from the directory that contains {error.name}, or add that directory to PYTHONPATH",
                file=sys.stderr,
            )
        return 2
    try:
        text = document_module(module, format)
    except ImportError as error:  # a submodule
        print(f"python -m shapedmap docs: {error}", file=sys.stderr)
        return 2
    except SpecError as error:  # a batched function whose annotations never resolve
        print(f"python -m shapedmap docs: {error}", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        print(f"python -m shapedmap docs: cannot write {output}: {error.strerror or error}", file=sys.stderr)
        return 2
    return 0
