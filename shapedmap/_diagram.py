"""The picture of a shape contract: ``describe(fn).to_svg()``.

Inputs sit on top, outputs below, each array as a row of boxes, one per dim of its batched
layout. Batch dims are filled in their own colour; core dims (what the per-example function
sees) are plain. A coloured line runs from every input axis a batch dim is mapped over to
the output axis it lands on; the axis numbers (what ``in_axes``/``out_axes`` say) sit on
the outer side of each row, and the legend spells out each ``jax.vmap``, outermost first.

The SVG is self-contained (no scripts, no external fonts) and sizes itself from its text.

The dependency runs one way: ``shapedmap._describe`` builds the contract and its
``Contract.to_svg`` calls ``contract_svg``; this module reads the contract's fields and
imports nothing of ``_describe``.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched, describe
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return jnp.dot(a, f)
    >>> svg = describe(message_passing).to_svg()
    >>> svg.startswith("<svg")
    True
    >>> 'graph: jax.vmap(in_axes=(0, 0), out_axes=0,' in svg  # the legend, wrapped to the boxes' width
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ._grammar import VariadicDim, dim_name, dim_text, parse_layout

__all__ = ["contract_svg"]

Contract = Any  # a shapedmap._describe.Contract: read through its fields, never imported

# Colours: one per batch dim, in nest order; core dims and text in greys.
_PALETTE = ("#e8590c", "#1c7ed6", "#2f9e44", "#ae3ec9", "#0c8599", "#e03131", "#f08c00", "#5f3dc4")
_INK = "#212529"
_MUTED = "#868e96"
_CORE_FILL = "#f8f9fa"
_CORE_STROKE = "#adb5bd"
_MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', 'Liberation Mono', monospace"
_SANS = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, 'DejaVu Sans', sans-serif"

# Geometry (px). Text widths are estimated: monospace glyphs are 0.6 em wide.
_PAD = 24
_BOX_HEIGHT = 30
_BOX_GAP = 4
_GROUP_GAP = 36
_LABEL = 18  # label line of a group
_AXES = 16  # axis-number line of a group
_BAND = 96  # between the input and output rows
_MONO_EM = 0.6
_TEXT_WIDTH = 380  # text is wrapped to the rows' width, or this, whichever is wider


def _mono_width(text: str, size: float) -> float:
    return len(text) * size * _MONO_EM


@dataclass
class _Box:
    text: str
    width: float
    batch: str | None  # the batch dim this box is, if any
    axis: str  # the axis number shown next to it
    variadic: bool
    x: float = 0.0


@dataclass
class _Group:
    label: str
    note: str
    boxes: list[_Box]
    static: bool = False
    x: float = 0.0

    @property
    def width(self) -> float:
        boxes = sum(box.width for box in self.boxes) + _BOX_GAP * max(len(self.boxes) - 1, 0)
        label = _mono_width(self.label, 13) + (_mono_width(" " + self.note, 11) if self.note else 0)
        return max(boxes, label)


def contract_svg(contract: Contract) -> str:
    """The SVG picture of ``contract`` (see the module docstring); ``Contract.to_svg`` calls it.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched, describe
        >>> def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
        ...     return jnp.concatenate([u, v])
        >>> svg = contract_svg(describe(batched(concat, "i f, j f -> i j 2*f"), name="pairwise"))
        >>> svg.splitlines()[1]
        '<title>pairwise: i f, j f -&gt; i j 2*f</title>'
    """
    colours = {dim.name: _PALETTE[index % len(_PALETTE)] for index, dim in enumerate(contract.batch_dims)}
    inputs = [group for parameter in contract.parameters for group in _parameter_groups(parameter, colours)]
    outputs = [group for output in contract.outputs for group in _value_groups(output)]
    legend = _legend_lines(contract)
    # Text wider than the rows of boxes wraps at its commas, so that a phone's screen (360 px
    # wide) shows the whole picture at a readable scale: the SVG shrinks to fit its container.
    limit = max(_row_width(inputs), _row_width(outputs), _TEXT_WIDTH)
    title_width = _mono_width(contract.name, 17) + 16 + _mono_width(contract.signature, 12)
    signature = [] if title_width <= limit else _wrap(contract.signature, 12, limit)
    subtitle = signature + _wrap(_per_example_text(contract), 12, limit)
    legend_lines = [
        (line, name if index == 0 else None)
        for text, name in legend
        for index, line in enumerate(_wrap(text, 12, limit - 20))
    ]
    width = max(
        _row_width(inputs),
        _row_width(outputs),
        title_width if not signature else _mono_width(contract.name, 17),
        max(_mono_width(line, 12) for line in subtitle),
        max((_mono_width(text, 12) + 22 for text, _ in legend_lines), default=0),
    )
    width = int(width + 2 * _PAD)

    y_title = _PAD + 14
    y_subtitle = y_title + 22
    y_inputs = y_subtitle + 18 * (len(subtitle) - 1) + 26  # top of the input groups
    y_input_boxes = y_inputs + _LABEL + _AXES
    y_output_boxes = y_input_boxes + _BOX_HEIGHT + _BAND
    y_legend = y_output_boxes + _BOX_HEIGHT + _AXES + _LABEL + 26
    height = int(y_legend + 20 * len(legend_lines) + _PAD - 6)

    _place_row(inputs, width)
    _place_row(outputs, width)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="max-width: 100%; height: auto" role="img" '
        f"aria-label={quoteattr(f'Shapes of {contract.name}')}>",
        f"<title>{escape(f'{contract.name}: {contract.signature}')}</title>",
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="10" fill="#ffffff" stroke="#dee2e6"/>',
        _text(_PAD, y_title, contract.name, size=17, weight="bold", family=_MONO),
    ]
    if not signature:
        x_signature = _PAD + _mono_width(contract.name, 17) + 16
        parts.append(_text(x_signature, y_title, contract.signature, size=12, fill=_MUTED, family=_MONO))
    for index, line in enumerate(subtitle):
        parts.append(_text(_PAD, y_subtitle + 18 * index, line, size=12, fill=_MUTED, family=_MONO))
    legend = legend_lines
    # Lines first, so that boxes sit on top of their ends.
    sizes = {dim.name: dim.size for dim in contract.batch_dims}
    parts += _connectors(inputs, outputs, colours, y_input_boxes + _BOX_HEIGHT, y_output_boxes)
    parts += _new_dims(inputs, outputs, colours, sizes, y_input_boxes + _BOX_HEIGHT, y_output_boxes)
    parts += _band_labels(inputs, y_input_boxes + _BOX_HEIGHT + 18)
    for group in inputs:
        parts += _draw_group(group, colours, y_inputs, label_first=True)
    for group in outputs:
        parts += _draw_group(group, colours, y_output_boxes, label_first=False)
    parts += _draw_legend(legend, colours, y_legend)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- building the groups -------------------------------------------------------------------------


def _parameter_groups(parameter: Any, colours: dict[str, str]) -> list[_Group]:
    if parameter.static:
        text = f"static {parameter.annotation}"
        box = _Box(text, _mono_width(text, 12) + 20, None, "", False)
        return [_Group(parameter.name, "", [box], static=True)]
    return _value_groups(parameter)


def _value_groups(value: Any) -> list[_Group]:
    """One group per array layout: a layout tree draws each subtree's (``params['b']``)."""
    layouts = {value.name + path: layout for path, layout in value.subtrees.items()} or {value.name: value.batched}
    return [_array_group(name, value.dtype or "", layout, set(value.batch_axes)) for name, layout in layouts.items()]


def _array_group(label: str, dtype: str, layout_text: str, batch_names: set[str]) -> _Group:
    layout = parse_layout(layout_text)
    boxes = []
    for index, dim in enumerate(layout.dims):
        name = dim_name(dim)
        batch = name if name in batch_names else None
        text = dim_text(dim)
        variadic = isinstance(dim, VariadicDim)
        axis = "" if variadic else str(layout.axis_of(index))  # a stack of boxes: any number of axes
        boxes.append(_Box(text, max(34.0, _mono_width(text, 13) + 18), batch, axis, variadic))
    if not boxes:
        boxes.append(_Box("scalar", _mono_width("scalar", 12) + 20, None, "", False))
    return _Group(label, dtype, boxes)


def _row_width(groups: list[_Group]) -> float:
    return sum(group.width for group in groups) + _GROUP_GAP * max(len(groups) - 1, 0)


def _place_row(groups: list[_Group], width: float) -> None:
    x = (width - _row_width(groups)) / 2
    for group in groups:
        group.x = x
        inner = group.x + (group.width - (sum(b.width for b in group.boxes) + _BOX_GAP * (len(group.boxes) - 1))) / 2
        for box in group.boxes:
            box.x = inner
            inner += box.width + _BOX_GAP
        x += group.width + _GROUP_GAP


def _per_example_text(contract: Contract) -> str:
    arguments = []
    for parameter in contract.parameters:
        if parameter.static:
            arguments.append(parameter.name)
        else:
            arguments.append(f"{parameter.name}: {parameter.per_example or 'scalar'}")
    results = [output.per_example or "scalar" for output in contract.outputs]
    returned = results[0] if len(results) == 1 else f"({', '.join(results)})"
    itself = ", itself batched" if contract.per_example_batched else ""
    return f"per example: {contract.per_example}({', '.join(arguments)}) -> {returned}{itself}"


def _legend_lines(contract: Contract) -> list[tuple[str, str]]:
    lines = []
    count = len(contract.batch_dims)
    for dim in contract.batch_dims:
        where = ""
        if count > 1:
            where = "  (outermost)" if dim.depth == 0 else "  (innermost)" if dim.depth == count - 1 else ""
        name = f"*{dim.name}" if dim.variadic else dim.name
        axis_name = f', axis_name="{dim.axis_name}"' if dim.axis_name else ""
        text = f"{name}: jax.vmap({dim.vmap_arguments()}{axis_name}){where}"
        if dim.variadic:
            text += "; one vmap per dim"
        lines.append((text, dim.name))
    return lines


# -- drawing -------------------------------------------------------------------------------------


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: float = 13,
    fill: str = _INK,
    weight: str = "normal",
    anchor: str = "start",
    family: str = _MONO,
    style: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-family="{family}" font-size="{size}" fill="{fill}" '
        f'font-weight="{weight}" font-style="{style}" text-anchor="{anchor}">{escape(text)}</text>'
    )


def _draw_group(group: _Group, colours: dict[str, str], top: float, *, label_first: bool) -> list[str]:
    parts = []
    if label_first:
        y_label, y_axes, y_boxes = top + 13, top + _LABEL + 11, top + _LABEL + _AXES
    else:
        y_boxes = top
        y_axes, y_label = top + _BOX_HEIGHT + 13, top + _BOX_HEIGHT + _AXES + 15
    label = _text(group.x + group.width / 2, y_label, group.label, weight="bold", anchor="middle")
    if group.note:
        offset = _mono_width(" " + group.note, 11) / 2
        label = _text(group.x + group.width / 2 - offset, y_label, group.label, weight="bold", anchor="middle")
        label += _text(
            group.x + group.width / 2 + _mono_width(group.label, 13) / 2 - offset + 4,
            y_label,
            group.note,
            size=11,
            fill=_MUTED,
        )
    parts.append(label)
    for box in group.boxes:
        parts += _draw_box(box, colours, y_boxes, group.static)
        if box.axis:
            colour = colours.get(box.batch, _MUTED) if box.batch else _MUTED
            weight = "bold" if box.batch else "normal"
            parts.append(
                _text(box.x + box.width / 2, y_axes, box.axis, size=11, fill=colour, weight=weight, anchor="middle")
            )
    return parts


def _draw_box(box: _Box, colours: dict[str, str], y: float, static: bool) -> list[str]:
    parts = []
    if box.batch is not None:
        colour = colours[box.batch]
        if box.variadic:  # a stack: any number of dims
            for shift in (6, 3):
                parts.append(
                    f'<rect x="{box.x + shift:.1f}" y="{y - shift / 2:.1f}" width="{box.width:.1f}" height="{_BOX_HEIGHT}" '
                    f'rx="5" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>'
                )
        parts.append(
            f'<rect x="{box.x:.1f}" y="{y:.1f}" width="{box.width:.1f}" height="{_BOX_HEIGHT}" rx="5" '
            f'fill="{colour}" stroke="{colour}"/>'
        )
        parts.append(
            _text(box.x + box.width / 2, y + 20, box.text, fill="#ffffff", weight="bold", anchor="middle", size=13)
        )
        return parts
    dash = ' stroke-dasharray="4 3"' if static else ""
    fill = "#ffffff" if static else _CORE_FILL
    parts.append(
        f'<rect x="{box.x:.1f}" y="{y:.1f}" width="{box.width:.1f}" height="{_BOX_HEIGHT}" rx="5" '
        f'fill="{fill}" stroke="{_CORE_STROKE}"{dash}/>'
    )
    size = 12 if static else 13
    parts.append(
        _text(box.x + box.width / 2, y + 20, box.text, fill=_MUTED if static else _INK, anchor="middle", size=size)
    )
    return parts


def _connectors(
    inputs: list[_Group], outputs: list[_Group], colours: dict[str, str], y_start: float, y_end: float
) -> list[str]:
    parts = []
    middle = (y_start + y_end) / 2
    for group in inputs:
        for box in group.boxes:
            if box.batch is None:
                continue
            for target in (b for output in outputs for b in output.boxes if b.batch == box.batch):
                x0, x1 = box.x + box.width / 2, target.x + target.width / 2
                parts.append(
                    f'<path d="M {x0:.1f} {y_start:.1f} C {x0:.1f} {middle:.1f}, {x1:.1f} {middle:.1f}, '
                    f'{x1:.1f} {y_end:.1f}" fill="none" stroke="{colours[box.batch]}" stroke-width="2.5" '
                    f'stroke-opacity="0.8" stroke-linecap="round"/>'
                )
    return parts


def _new_dims(
    inputs: list[_Group],
    outputs: list[_Group],
    colours: dict[str, str],
    sizes: dict[str, int | None],
    y_start: float,
    y_end: float,
) -> list[str]:
    """An output batch dim no input has (``copies=4``): ``vmap`` makes it, with ``axis_size``."""
    mapped = {box.batch for group in inputs for box in group.boxes if box.batch}
    parts = []
    for box in (b for output in outputs for b in output.boxes if b.batch and b.batch not in mapped):
        x = box.x + box.width / 2
        top = y_start + (y_end - y_start) * 0.62
        parts.append(
            f'<path d="M {x:.1f} {top:.1f} L {x:.1f} {y_end:.1f}" fill="none" stroke="{colours[box.batch]}" '
            f'stroke-width="2.5" stroke-dasharray="5 4" stroke-linecap="round"/>'
        )
        size = sizes.get(box.batch)
        label = f"new dim, axis_size={size}" if size is not None else "new dim"
        parts.append(_text(x, top - 8, label, size=11, fill=colours[box.batch], anchor="middle", style="italic"))
    return parts


def _band_labels(inputs: list[_Group], y: float) -> list[str]:
    """Under an array that no vmap maps over: it is shared by every example."""
    parts = []
    for group in inputs:
        if not group.static and not any(box.batch for box in group.boxes):
            parts.append(
                _text(
                    group.x + group.width / 2,
                    y,
                    "shared: not mapped",
                    size=11,
                    fill=_MUTED,
                    anchor="middle",
                    style="italic",
                )
            )
        if group.static:
            parts.append(
                _text(
                    group.x + group.width / 2, y, "held static", size=11, fill=_MUTED, anchor="middle", style="italic"
                )
            )
    return parts


def _draw_legend(lines: list[tuple[str, str | None]], colours: dict[str, str], y: float) -> list[str]:
    """One line per vmap, its colour's square before it (a wrapped line's continuation has none)."""
    parts = []
    for index, (text, name) in enumerate(lines):
        top = y + 20 * index
        if name is not None:
            parts.append(f'<rect x="{_PAD}" y="{top - 10:.1f}" width="12" height="12" rx="3" fill="{colours[name]}"/>')
        parts.append(_text(_PAD + 20, top, text, size=12, fill=_INK))
    return parts


def _wrap(text: str, size: float, limit: float) -> list[str]:
    """``text`` in lines at most ``limit`` px wide where it can be, broken after its commas (and before
    ``->``); a continuation line is indented by two spaces.

    Example:
        >>> _wrap("per example: f(a: node node, f: node feat) -> node feat", 12, 260)
        ['per example: f(a: node node,', '  f: node feat) -> node feat']
    """
    tokens = re.split(r"(, | -> )", text)  # pieces, with the separators between them
    lines = [tokens[0]]
    for separator, piece in zip(tokens[1::2], tokens[2::2], strict=True):
        if _mono_width(lines[-1] + separator + piece, size) <= limit:
            lines[-1] += separator + piece
        elif separator == ", ":
            lines[-1] += ","
            lines.append("  " + piece)
        else:
            lines.append("  -> " + piece)
    return lines
