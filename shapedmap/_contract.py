"""The shape contract of a batched function as data (``Contract``), and its renderings.

A ``Contract`` holds every parameter with its per-example and batched layout, dtype and batch
dims (or that it is static), every output, and one ``BatchDim`` per ``jax.vmap`` with its
``in_axes`` and ``out_axes``. It renders as Markdown, reStructuredText, a JSON-able dict, an SVG
picture (``shapedmap._diagram``) and the NumPy-docstring "Shapes" section. ``describe(fn)``
(``shapedmap._describe``) builds one from a batched function.

Example:
    >>> from shapedmap import describe
    >>> from shapedmap.examples import mv
    >>> contract = describe(mv, name="mv")
    >>> contract.signature, contract.batch_dims[0].vmap_arguments()
    ('b a, a -> b', 'in_axes=(0, None), out_axes=0')
    >>> contract.to_markdown().splitlines()[0]
    '### `mv`'
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ._diagram import contract_svg
from ._face import kind_note

__all__ = ["BatchDim", "Contract", "OutputShape", "ParameterShape"]


# -- the contract ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterShape:
    """One parameter: its layouts and the batch dims it is mapped over, or that it is static.

    ``batch_axes`` maps each batch dim of the batched layout to its token position there
    (``{"graph": 0}``); an array parameter with none is shared by every example. A layout tree
    (``layouts={"p": {"w": None, "b": "batch n"}}``) gives ``subtrees``, the batched layout of each
    subtree by its path (``{"['b']": "batch n", "['w']": "n"}``), and its positions per path.

    Example:
        >>> from shapedmap import describe
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def linear(x: Float[Array, "feat"], w: Float[Array, "feat out"], *, scale: float = 2.0) -> Float[Array, "out"]:
        ...     return scale * jnp.dot(x, w)
        >>> x, w, scale = describe(batched(linear, "batch", layouts={"w": "feat out"})).parameters
        >>> x.batched, x.per_example, x.dtype, x.batch_axes
        ('batch feat', 'feat', 'Float', {'batch': 0})
        >>> w.batched, w.shared
        ('feat out', True)
        >>> scale.static, scale.kind, scale.annotation, scale.default
        (True, 'keyword-only', 'float', '2.0')
    """

    name: str
    kind: str
    static: bool
    annotation: str
    dtype: str | None
    per_example: str | None
    batched: str | None
    batch_axes: dict[str, Any]
    pytree: bool
    optional: bool
    default: str | None
    bound: str | None = None  # the partial that binds it ("functools.partial"): shared unless passed again
    split_key: bool = False  # ``SplitKey``: passed as one key, split into ``batched`` (one key per example)
    subtrees: dict[str, str] = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        """An array parameter that no ``vmap`` maps over (``in_axes=None`` at every level)."""
        return not self.static and not self.batch_axes


@dataclass(frozen=True)
class OutputShape:
    """One output (``return``, or ``return[i]`` of a tuple) and where each batch dim lands.

    Example:
        >>> from shapedmap import describe
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def stats(x: Float[Array, "n"]) -> tuple[Float[Array, ""], Float[Array, "n"]]:
        ...     return jnp.sum(x), 2 * x
        >>> total, doubled = describe(batched(stats, "b n -> b, n b")).outputs
        >>> total.name, total.batched, total.per_example
        ('return[0]', 'b', '')
        >>> doubled.name, doubled.batched, doubled.batch_axes
        ('return[1]', 'n b', {'b': 1})
    """

    name: str
    annotation: str
    dtype: str | None
    per_example: str
    batched: str
    batch_axes: dict[str, Any]
    pytree: bool
    subtrees: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchDim:
    """One batch dim, that is one ``jax.vmap`` of the nest (``depth`` 0 is the outermost).

    ``in_axes`` maps each array parameter to the axis this ``vmap`` maps (None: not mapped),
    ``out_axes`` each output to the axis the dim lands on. ``size`` is set when a layout fixes
    it (``k=5``); ``variadic`` batch dims (``*batch``) stand for any number of leading dims, one
    ``vmap`` each, and ``broadcastable`` ones let a size-1 argument be shared. For those
    (``per_call``) the axes shown are for one dim without broadcasting: ``explain`` shows a
    given call's. ``mesh_axes`` are the mesh axes the dim is split over (``shard=``). ``chunk`` is
    the number of examples per slice of a dim mapped in slices (``chunk=``), or ``chunk_budget``
    the bytes of temporary memory its slices must fit in (``Budget``).

    Example:
        >>> from shapedmap import describe
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def concat(u: Float[Array, "f"], v: Float[Array, "f"]) -> Float[Array, "2*f"]:
        ...     return jnp.concatenate([u, v])
        >>> i, j = describe(batched(concat, "i f, j f -> i j 2*f")).batch_dims
        >>> i.depth, i.in_axes, i.out_axes
        (0, {'u': 0, 'v': None}, {'return': 0})
        >>> j.vmap_arguments()
        'in_axes=(None, 0), out_axes=0'
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
    chunk: int | None = None
    chunk_budget: int | None = None
    _vmap_arguments: str = field(kw_only=True, repr=False)  # by shapedmap._face; not data: to_dict leaves it out

    def vmap_arguments(self) -> str:
        """``in_axes=(0, None), out_axes=0``: what this level gives ``jax.vmap`` (as the docstring says)."""
        return self._vmap_arguments


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
        parameters: every parameter, in signature order (static ones included); a keyword a
            partial binds has ``bound`` set (``"functools.partial"``).
        fixed: the values a partial fixes (its positionals), which are no parameters: shared.
        outputs: the result, or each element of a tuple result.
        batch_dims: one per ``jax.vmap``, outermost first.

    Example:
        >>> from shapedmap import describe
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapedmap import batched
        >>> def vv(x: Float[Array, "a"], y: Float[Array, "a"]) -> Float[Array, ""]:
        ...     '''Vector-vector product.'''
        ...     return jnp.dot(x, y)
        >>> contract = describe(batched(vv, "b a, a -> b"), name="mv")
        >>> contract.signature, contract.summary, contract.per_call
        ('b a, a -> b', 'Vector-vector product.', False)
        >>> print(contract.to_markdown().splitlines()[-1])  # the last table: one row per jax.vmap
        | `b` | `"b"` | `in_axes=(0, None), out_axes=0` |
        >>> print(contract.to_rst().splitlines()[0])
        ``mv``
        >>> contract.to_dict()["batch_dims"][0]["in_axes"]
        {'x': 0, 'y': None}
        >>> contract.to_svg().startswith("<svg")
        True
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
    fixed: tuple[ParameterShape, ...] = ()  # values a partial fixes (its positionals): no parameters
    _shapes_section: str = field(kw_only=True, repr=False)  # by shapedmap._face; not data: to_dict leaves it out

    @property
    def per_call(self) -> bool:
        """Do the ``vmap`` axes depend on the call (``*batch``, ``#graph``)?"""
        return any(dim.per_call for dim in self.batch_dims)

    # -- renderers --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``json.dumps(contract.to_dict())`` works) with every field."""
        data = asdict(self, dict_factory=lambda items: {key: value for key, value in items if key[0] != "_"})
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
        return contract_svg(self)

    def shapes_section(self) -> str:
        """The NumPy-docstring "Shapes" section ``@batched`` appends to ``__doc__`` (``shapedmap._face``)."""
        return self._shapes_section

    # -- shared by the renderers ------------------------------------------------------------

    def _value_rows(self, quote: str) -> list[list[str]]:
        def code(text: str | None) -> str:
            return f"{quote}{text}{quote}" if text else "scalar"

        rows = []
        for parameter in self.fixed:
            layout = "static" if parameter.static else code(parameter.per_example)
            bound = f"none: fixed by {quote}{parameter.bound}{quote}"
            rows.append([f"{quote}{parameter.name}{quote}", "fixed", layout, parameter.dtype or "", bound])
        for parameter in self.parameters:
            label = f"{quote}{parameter.name}{quote}"
            bound = "" if parameter.bound is None else f" (bound by {quote}{parameter.bound}{quote})"
            if parameter.static:
                annotation = f" {quote}{parameter.annotation}{quote}" if parameter.annotation != "unannotated" else ""
                rows.append([label, f"static{annotation}", "", "", f"not mapped{bound}"])
                continue
            axes = ", ".join(f"{quote}{name}{quote} (axis {axis})" for name, axis in parameter.batch_axes.items())
            split = f", split from one key {code(parameter.per_example)}" if parameter.split_key else ""
            rows.append(
                [
                    label,
                    code(parameter.batched) + kind_note(parameter.pytree, parameter.optional) + split,
                    code(parameter.per_example),
                    parameter.dtype or "any",
                    (axes or "none: shared") + bound,
                ]
            )
        for output in self.outputs:
            axes = ", ".join(f"{quote}{name}{quote} (axis {axis})" for name, axis in output.batch_axes.items())
            batched = code(output.batched) + kind_note(output.pytree, False)
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
        for parameter in self.parameters:
            if parameter.split_key:
                names = ", ".join(f"`{name}`" for name in parameter.batch_axes)
                notes.append(
                    f"`{parameter.name}` is passed as one key: each call splits it with `jax.random.split` into one "
                    f"key per example over {names} (`layouts={{'{parameter.name}': SplitKey()}}`)."
                )
        for dim in self.batch_dims:
            if dim.variadic:
                notes.append(
                    f"`*{dim.name}` is any number of dims, broadcast like NumPy: each gets its own `jax.vmap` "
                    "(the row shows one), and a size-1 dim is shared rather than mapped. "
                    "`shapedmap.explain(fn, *args)` shows the nest for given arguments."
                )
            elif dim.broadcastable:
                notes.append(f"`#{dim.name}`: an argument with size 1 there is shared rather than mapped.")
            if dim.chunk is not None or dim.chunk_budget is not None:
                size = (
                    f"{dim.chunk} examples"
                    if dim.chunk is not None
                    else f"as many examples as fit {dim.chunk_budget} bytes of temporary memory"
                )
                notes.append(
                    f"`{dim.name}` runs in slices of {size} (`jax.lax.map` over one `jax.vmap` per slice), "
                    f"so memory is bounded by a slice; `{dim.name}` is not an axis name there."
                )
            if dim.mesh_axes:
                axes = ", ".join(f"`{axis}`" for axis in dim.mesh_axes)
                notes.append(
                    f"`{dim.name}` is split over the mesh axis {axes}: arguments are placed with it partitioned "
                    "(`fn.partition_specs(*args)` gives the specs)."
                )
        return notes


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
