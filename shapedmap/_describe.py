"""Shape documentation: the contract of a batched function, as data, text and a picture.

``describe(fn)`` reads the plan behind a batched function into a ``Contract``: every
parameter with its per-example and batched layout, dtype and batch dims (or that it is
static), every output, and one ``BatchDim`` per ``jax.vmap`` with its ``in_axes`` and
``out_axes``. The contract renders as Markdown, reStructuredText, a JSON-able dict, an SVG
picture (``shapedmap._diagram``) and the NumPy-docstring "Shapes" section that ``@batched``
appends to ``__doc__``.

The "Shapes" section is a bullet list of double-backquoted literals: the one markup that
``help()`` shows plainly, reStructuredText (Sphinx, with or without napoleon) renders as a
list of code, and Markdown (mkdocstrings, in its NumPy and Google styles) renders the same.

Example:
    >>> contract = describe(message_passing)  # doctest: +SKIP
    >>> contract.batch_dims[0].in_axes
    {'a': 0, 'f': 0}
    >>> print(contract.shapes_section())
    Shapes
    ------
    - ``a``: ``graph node node`` (per example ``node node``)
    - ``f``: ``graph node feat`` (per example ``node feat``)
    - return: ``graph node feat`` (per example ``node feat``)
    - vmap over ``graph``: ``in_axes=(0, 0), out_axes=0``
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import types
from dataclasses import asdict, dataclass
from typing import Any

from ._annotations import ValueType, function_name, hint_text, unwrap_partial
from ._face import shapes_section, strip_shapes_section, with_shapes_section
from ._grammar import Layout
from ._levels import Placement
from ._nest import nominal_levels
from ._plan import Plan

__all__ = [
    "BatchDim",
    "Contract",
    "OutputShape",
    "ParameterShape",
    "batched_functions",
    "describe",
    "document_module",
    "shapes_section",
    "with_shapes_section",
]

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional-only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional or keyword",
    inspect.Parameter.VAR_POSITIONAL: "*args",
    inspect.Parameter.KEYWORD_ONLY: "keyword-only",
    inspect.Parameter.VAR_KEYWORD: "**kwargs",
}


# -- the contract ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterShape:
    """One parameter: its layouts and the batch dims it is mapped over, or that it is static.

    ``batch_axes`` maps each batch dim of the batched layout to its token position there
    (``{"graph": 0}``); an array parameter with none is shared by every example.
    """

    name: str
    kind: str
    static: bool
    annotation: str
    dtype: str | None
    per_example: str | None
    batched: str | None
    batch_axes: dict[str, int]
    pytree: bool
    optional: bool
    default: str | None

    @property
    def shared(self) -> bool:
        """An array parameter that no ``vmap`` maps over (``in_axes=None`` at every level)."""
        return not self.static and not self.batch_axes


@dataclass(frozen=True)
class OutputShape:
    """One output (``return``, or ``return[i]`` of a tuple) and where each batch dim lands."""

    name: str
    annotation: str
    dtype: str | None
    per_example: str
    batched: str
    batch_axes: dict[str, int]
    pytree: bool


@dataclass(frozen=True)
class BatchDim:
    """One batch dim, that is one ``jax.vmap`` of the nest (``depth`` 0 is the outermost).

    ``in_axes`` maps each array parameter to the axis this ``vmap`` maps (None: not mapped),
    ``out_axes`` each output to the axis the dim lands on. ``size`` is set when a layout fixes
    it (``k=5``); ``variadic`` batch dims (``*batch``) stand for any number of leading dims, one
    ``vmap`` each, and ``broadcastable`` ones let a size-1 argument be shared. For those
    (``per_call``) the axes shown are for one dim without broadcasting: ``explain`` shows a
    given call's. ``mesh_axes`` are the mesh axes the dim is split over (``shard=``).
    """

    name: str
    depth: int
    axis_name: str | None
    in_axes: dict[str, int | None]
    out_axes: dict[str, int | None]
    size: int | None
    variadic: bool
    broadcastable: bool
    per_call: bool
    mesh_axes: tuple[str, ...] = ()

    def vmap_arguments(self) -> str:
        """``in_axes=(0, None), out_axes=0``: what this level gives ``jax.vmap``."""
        in_axes = tuple(self.in_axes.values())
        outs = tuple(self.out_axes.values())
        text = f"in_axes={_axes_text(in_axes)}, out_axes={_axes_text(outs)}"
        if self.size is not None and all(axis is None for axis in in_axes):
            text += f", axis_size={self.size}"
        if self.mesh_axes:
            spmd = self.mesh_axes[0] if len(self.mesh_axes) == 1 else self.mesh_axes
            text += f", spmd_axis_name={spmd!r}"
        return text


@dataclass(frozen=True)
class Contract:
    """The shape contract of a batched function. Render it with the ``to_*`` methods.

    Attributes:
        name: the batched function's name (the attribute name, when documented from a module).
        per_example: the name of the per-example function (``fn.fn``).
        per_example_batched: whether that function is itself batched (``mm = batched(mv, ...)``).
        module: the module the function was defined in.
        summary: the first paragraph of the user's docstring.
        signature: the batched signature, ``"graph node node, graph node feat -> graph node feat"``.
        parameters: every parameter, in signature order (static ones included).
        outputs: the result, or each element of a tuple result.
        batch_dims: one per ``jax.vmap``, outermost first.
    """

    name: str
    per_example: str
    per_example_batched: bool
    module: str | None
    summary: str
    signature: str
    parameters: tuple[ParameterShape, ...]
    outputs: tuple[OutputShape, ...]
    batch_dims: tuple[BatchDim, ...]

    @property
    def per_call(self) -> bool:
        """Do the ``vmap`` axes depend on the call (``*batch``, ``#graph``)?"""
        return any(dim.per_call for dim in self.batch_dims)

    # -- renderers --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps(contract.to_dict())`` works) with every field."""
        data = asdict(self)
        data["per_call"] = self.per_call
        return json.loads(json.dumps(data))

    def to_markdown(self, heading_level: int = 3) -> str:
        """A Markdown section: a heading, the summary, the signature and two tables."""
        lines = [f"{'#' * heading_level} `{self.name}`", ""]
        if self.summary:
            lines += [self.summary, ""]
        lines += ["```text", self.signature, "```", ""]
        if self.per_example != self.name or self.per_example_batched:
            lines += [f"Maps the per-example function `{self.per_example}`{self._batched_note('`')}.", ""]
        lines += _markdown_table(["", "batched layout", "per example", "dtype", "batch dims"], self._value_rows("`"))
        lines += [""]
        lines += _markdown_table(
            ["vmap over (outermost first)", "axis_name", "jax.vmap arguments"], self._vmap_rows("`")
        )
        notes = self._notes()
        if notes:
            lines += ["", *notes]
        return "\n".join(lines) + "\n"

    def to_rst(self, heading_level: int = 2) -> str:
        """A reStructuredText section: the same content as ``to_markdown``, as list-tables."""
        title = f"``{self.name}``"
        underline = "=-~^\"'"[min(max(heading_level, 1), 6) - 1]
        lines = [title, underline * len(title), ""]
        if self.summary:
            lines += [self.summary, ""]
        lines += ["Batched signature::", "", f"    {self.signature}", ""]
        if self.per_example != self.name or self.per_example_batched:
            lines += [f"Maps the per-example function ``{self.per_example}``{self._batched_note('``')}.", ""]
        lines += _rst_table(["", "batched layout", "per example", "dtype", "batch dims"], self._value_rows("``"))
        lines += [""]
        lines += _rst_table(["vmap over (outermost first)", "axis_name", "jax.vmap arguments"], self._vmap_rows("``"))
        notes = self._notes()
        if notes:
            lines += ["", *(note.replace("`", "``") for note in notes)]
        return "\n".join(lines) + "\n"

    def to_svg(self) -> str:
        """A picture: each argument's dims as boxes, batch dims coloured, and where they land."""
        from ._diagram import contract_svg

        return contract_svg(self)

    def shapes_section(self) -> str:
        """The NumPy-docstring "Shapes" section (see the module docstring for the format)."""
        lines = ["Shapes", "------"]
        for parameter in self.parameters:
            if parameter.static:
                lines.append(f"- ``{parameter.name}``: static, not mapped")
                continue
            layout = _literal(parameter.batched) + _kind_note(parameter.pytree, parameter.optional)
            if parameter.shared:
                lines.append(f"- ``{parameter.name}``: {layout}, shared (not mapped)")
            else:
                lines.append(f"- ``{parameter.name}``: {layout} (per example {_literal(parameter.per_example)})")
        for output in self.outputs:
            layout = _literal(output.batched) + _kind_note(output.pytree, False)
            lines.append(f"- {output.name}: {layout} (per example {_literal(output.per_example)})")
        nested = len(self.batch_dims) > 1
        for dim in self.batch_dims:
            position = ""
            if nested:
                position = (
                    " (outermost)"
                    if dim.depth == 0
                    else " (innermost)"
                    if dim.depth == len(self.batch_dims) - 1
                    else ""
                )
            if dim.variadic:
                lines.append(
                    f"- vmap over ``*{dim.name}``{position}: any number of dims, broadcast; one ``jax.vmap`` "
                    f"per dim, like ``{dim.vmap_arguments()}``"
                )
                continue
            line = f"- vmap over ``{dim.name}``{position}: ``{dim.vmap_arguments()}``"
            if dim.broadcastable:
                line += "; an argument of size 1 there is shared"
            lines.append(line)
        return "\n".join(lines)

    # -- shared by the renderers ------------------------------------------------------------

    def _value_rows(self, quote: str) -> list[list[str]]:
        def code(text: str | None) -> str:
            return f"{quote}{text}{quote}" if text else "scalar"

        rows = []
        for parameter in self.parameters:
            label = f"{quote}{parameter.name}{quote}"
            if parameter.static:
                annotation = f" {quote}{parameter.annotation}{quote}" if parameter.annotation != "unannotated" else ""
                rows.append([label, f"static{annotation}", "", "", "not mapped"])
                continue
            axes = ", ".join(f"{quote}{name}{quote} (axis {axis})" for name, axis in parameter.batch_axes.items())
            rows.append(
                [
                    label,
                    code(parameter.batched) + _kind_note(parameter.pytree, parameter.optional),
                    code(parameter.per_example),
                    parameter.dtype or "any",
                    axes or "none: shared",
                ]
            )
        for output in self.outputs:
            axes = ", ".join(f"{quote}{name}{quote} (axis {axis})" for name, axis in output.batch_axes.items())
            batched = code(output.batched) + _kind_note(output.pytree, False)
            rows.append([output.name, batched, code(output.per_example), output.dtype or "any", axes])
        return rows

    def _vmap_rows(self, quote: str) -> list[list[str]]:
        rows = []
        for dim in self.batch_dims:
            name = f"{quote}*{dim.name}{quote}" if dim.variadic else f"{quote}{dim.name}{quote}"
            axis_name = f'{quote}"{dim.axis_name}"{quote}' if dim.axis_name else "none"
            rows.append([name, axis_name, f"{quote}{dim.vmap_arguments()}{quote}"])
        return rows

    def _batched_note(self, quote: str) -> str:
        return f", itself made by {quote}batched{quote}" if self.per_example_batched else ""

    def _notes(self) -> list[str]:
        notes = []
        for dim in self.batch_dims:
            if dim.variadic:
                notes.append(
                    f"`*{dim.name}` is any number of dims, broadcast like NumPy: each gets its own `jax.vmap` "
                    "(the row shows one), and a size-1 dim is shared rather than mapped. "
                    "`shapedmap.explain(fn, *args)` shows the nest for given arguments."
                )
            elif dim.broadcastable:
                notes.append(f"`#{dim.name}`: an argument with size 1 there is shared rather than mapped.")
            if dim.mesh_axes:
                axes = ", ".join(f"`{axis}`" for axis in dim.mesh_axes)
                notes.append(
                    f"`{dim.name}` is split over the mesh axis {axes}: arguments are placed with it partitioned "
                    "(`fn.partition_specs(*args)` gives the specs)."
                )
        return notes


# -- building a contract -------------------------------------------------------------------------


def describe(fn: Any, name: str | None = None) -> Contract:
    """The shape contract of a function made by ``shapedmap.batched``.

    Args:
        fn: the batched function.
        name: the name to document it under (default: ``fn.__name__``).

    Returns:
        A ``Contract``; render it with ``.to_markdown()``, ``.to_rst()``, ``.to_dict()``
        or ``.to_svg()``.

    Raises:
        TypeError: when ``fn`` was not made by ``shapedmap.batched``.

    Example:
        >>> mv = batched(vv, "b a, a -> b")
        >>> describe(mv).batch_dims[0].in_axes
        {'x': 0, 'y': None}
    """
    from ._plan import plan_of

    plan = plan_of(fn)
    per_example = getattr(fn, "fn", fn)
    per_example = unwrap_partial(per_example)  # document the function a partial fixes arguments of
    return contract_of(
        plan,
        name=name or getattr(fn, "__name__", plan.function),
        per_example=function_name(per_example),
        per_example_batched=hasattr(per_example, "__shapedmap__"),
        module=getattr(fn, "__module__", None),
        mesh_axes=_mesh_axes(fn),
        doc=getattr(per_example, "__doc__", None),
    )


def contract_of(
    plan: Plan,
    name: str | None = None,
    per_example: str | None = None,
    per_example_batched: bool = False,
    module: str | None = None,
    doc: str | None = None,
    mesh_axes: dict[str, tuple[str, ...]] | None = None,
) -> Contract:
    """The contract of ``plan`` (``describe`` fills the names in from the function)."""
    levels, per_call = nominal_levels(plan)
    array_names = [plan.arguments[i].name for i in plan.array_arguments]
    output_names = [f"return[{i}]" for i in range(len(plan.results))] if plan.returns_tuple else ["return"]
    parameters = tuple(_parameter_shape(argument) for argument in plan.arguments)
    outputs = tuple(
        OutputShape(
            name=output_name,
            annotation=_annotation_text(result.value, result.placement.per_example),
            dtype=_dtype(result.value),
            per_example=str(result.placement.per_example),
            batched=str(result.placement.batched),
            batch_axes=_batch_axes(result.placement),
            pytree=result.value.kind == "tree",
        )
        for output_name, result in zip(output_names, plan.results, strict=True)
    )
    batch_dims = []
    for depth, level in enumerate(levels):
        batch_dims.append(
            BatchDim(
                name=level.batch_name,
                depth=depth,
                axis_name=level.axis_name,
                in_axes=dict(zip(array_names, level.in_axes, strict=True)),
                out_axes=dict(zip(output_names, level.out_axes, strict=True)),
                size=level.size,
                variadic=level.index is not None,
                broadcastable=level.index is not None or level.batch_name in plan.broadcastable_batch,
                per_call=per_call,
                mesh_axes=tuple((mesh_axes or {}).get(level.batch_name, ())),
            )
        )
    return Contract(
        name=name or plan.function,
        per_example=per_example or plan.function,
        per_example_batched=per_example_batched,
        module=module,
        summary=_summary(doc),
        signature=plan.signature_text(),
        parameters=parameters,
        outputs=outputs,
        batch_dims=tuple(batch_dims),
    )


def _parameter_shape(argument: Any) -> ParameterShape:
    default = None if argument.default is inspect.Parameter.empty else repr(argument.default)
    placement: Placement | None = argument.placement
    if placement is None:
        hint = argument.value.hint
        return ParameterShape(
            name=argument.name,
            kind=_KINDS[argument.kind],
            static=True,
            annotation="unannotated" if hint is None else hint_text(hint),
            dtype=None,
            per_example=None,
            batched=None,
            batch_axes={},
            pytree=False,
            optional=False,
            default=default,
        )
    return ParameterShape(
        name=argument.name,
        kind=_KINDS[argument.kind],
        static=False,
        annotation=_annotation_text(argument.value, placement.per_example),
        dtype=_dtype(argument.value),
        per_example=str(placement.per_example),
        batched=str(placement.batched),
        batch_axes=_batch_axes(placement),
        pytree=argument.value.kind == "tree",
        optional=argument.value.optional,
        default=default,
    )


def _mesh_axes(fn: Any) -> dict[str, tuple[str, ...]]:
    """The mesh axes each batch dim is split over (``batched(..., shard=...)``)."""
    sharding = getattr(getattr(fn, "__shapedmap__", None), "sharding", None)
    return dict(getattr(sharding, "axes", None) or {})


def _batch_axes(placement: Placement) -> dict[str, int]:
    return {name: placement.batched.axis_of(index) for index, name in placement.batch}


def _annotation_text(value: ValueType, layout: Layout) -> str:
    text = hint_text(value.array.with_layout(layout))
    if value.kind == "tree":
        text = f"PyTree[{text}]"
    if value.optional:
        text += " | None"
    return text


def _dtype(value: ValueType) -> str | None:
    return getattr(value.array.dtype, "__name__", None)


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc:
        return ""
    text = strip_shapes_section(inspect.cleandoc(doc))
    return " ".join(text.split("\n\n", 1)[0].split())


def _kind_note(pytree: bool, optional: bool) -> str:
    """`` on every leaf``, `` or None``: what a layout applies to, beyond one array."""
    return (" on every leaf" if pytree else "") + (" or None" if optional else "")


def _literal(layout: str | None) -> str:
    return f"``{layout}``" if layout else "scalar"


def _axes_text(axes: tuple[int | None, ...]) -> str:
    """As ``jax.vmap`` is given them (and ``explain`` writes them): a bare axis for one value."""
    return repr(axes[0]) if len(axes) == 1 else repr(tuple(axes))


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [row(header), row(["---"] * len(header)), *(row(cells) for cells in rows)]


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *rows]:
        for index, cell in enumerate(cells):
            lines.append(f"   {'* -' if index == 0 else '  -'} {cell}".rstrip())
    return lines


# -- documenting a module ------------------------------------------------------------------------


def batched_functions(module: types.ModuleType) -> list[tuple[str, str, Any]]:
    """Every batched function in ``module`` and its submodules: ``(module name, name, function)``.

    Batched methods, classmethods and staticmethods of the classes a module defines are listed
    as ``Class.method``.

    A function reachable from several modules is listed once, under the module that made it
    (where ``batched`` was called; else its ``__module__``) when that one is walked, else where
    it is first seen.

    Raises:
        ImportError: when a submodule does not import (its name is in the message).
    """
    modules = [module]
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{module.__name__}."):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except (Exception, SystemExit) as error:
                raise ImportError(f"cannot import {info.name}: {type(error).__name__}: {error}") from error
    found: dict[int, tuple[str, str, Any]] = {}
    for current in modules:
        for attribute, value in _members(current):  # definition order
            seen = found.get(id(value))
            home = getattr(value.__shapedmap__, "defined_in", None) or getattr(value, "__module__", None)
            if seen is None or (home == current.__name__ != seen[0]):
                found[id(value)] = (current.__name__, attribute, value)
    order = {current.__name__: index for index, current in enumerate(modules)}
    return sorted(found.values(), key=lambda item: order[item[0]])  # stable: definition order within


def _members(module: types.ModuleType) -> list[tuple[str, Any]]:
    """The module's batched functions, and the batched methods of the classes it defines (``Model.apply``)."""
    members = []
    for attribute, value in list(vars(module).items()):
        if callable(value) and getattr(value, "__shapedmap__", None) is not None:
            members.append((attribute, value))
        elif isinstance(value, type) and value.__module__ == module.__name__:
            for name, member in vars(value).items():
                member = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                if callable(member) and getattr(member, "__shapedmap__", None) is not None:
                    members.append((f"{attribute}.{name}", member))
    return members


def document_module(module: types.ModuleType, format: str = "markdown") -> str:
    """The shape documentation of every batched function in ``module`` (and submodules).

    Args:
        module: an imported module or package.
        format: ``"markdown"``, ``"rst"`` or ``"json"``.

    Example:
        >>> import shapedmap.examples
        >>> print(document_module(shapedmap.examples, "markdown"))  # doctest: +SKIP
    """
    if format not in ("markdown", "rst", "json"):
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
