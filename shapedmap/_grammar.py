"""The dimension grammar: jaxtyping dim strings, layouts and spec strings.

This is the one module that knows the syntax. It turns text into values and never
looks at arrays:

* ``parse_layout("graph *batch n=3 #m 2*f")`` -> a ``Layout`` of ``Dim`` tokens, with the
  same grammar as jaxtyping's ``dim_str`` (its parse is compared with ours in
  ``tests/test_layout_contract.py``). Unlike jaxtyping we keep the documentation label
  of ``n=3`` (it names a batch dim in a batched layout: ``"graph=13 node"``).
* ``parse_spec("b a, a c -> b c")`` -> a ``Spec``: either batch names (``"graph time"``,
  ``"*batch"``) or a full signature.

Example:
    >>> str(parse_layout("graph  node node"))
    'graph node node'
    >>> parse_spec("n col -> col").outputs
    (Layout('col'),)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import _expressions as expressions
from ._errors import SpecError

__all__ = [
    "AnonymousDim",
    "Dim",
    "FixedDim",
    "Layout",
    "NamedDim",
    "Spec",
    "SymbolicDim",
    "VariadicDim",
    "is_batch_token",
    "parse_layout",
    "parse_spec",
]


@dataclass(frozen=True)
class NamedDim:
    """``n``, ``#n`` (size 1 broadcasts), ``?n`` (per PyTree leaf); ``rows=n`` keeps ``rows`` as label."""

    name: str
    broadcastable: bool = False
    treepath: bool = False
    label: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FixedDim:
    """``3``, ``#3``, or ``n=3`` (the label ``n`` documents the size; it names a batch dim)."""

    size: int
    broadcastable: bool = False
    label: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SymbolicDim:
    """An expression over other dims, such as ``2*f``, ``n+1`` or ``{self.size}``."""

    expression: str
    broadcastable: bool = False
    label: str | None = field(default=None, compare=False)

    def names(self) -> frozenset[str]:
        """The dim names it refers to (outside f-string braces)."""
        return expressions.names(self.expression)

    def argument_names(self) -> frozenset[str]:
        """The argument names its f-string fields refer to (``{self.n}`` -> ``self``)."""
        return expressions.argument_names(self.expression)

    def evaluate(self, sizes: dict[str, int], arguments: dict[str, object]) -> int:
        """Its value given the bound sizes and the arguments (see ``_expressions.evaluate``)."""
        return expressions.evaluate(self.expression, sizes, arguments)


@dataclass(frozen=True)
class AnonymousDim:
    """``_`` or ``_name``: one dimension of any size, never checked."""


@dataclass(frozen=True)
class VariadicDim:
    """``*name`` (``*#name`` broadcasts) or ``...`` / ``*_`` (``name`` is None): any number of dims."""

    name: str | None
    broadcastable: bool = False
    treepath: bool = False


Dim = NamedDim | FixedDim | SymbolicDim | AnonymousDim | VariadicDim


def dim_text(dim: Dim) -> str:
    """The canonical text of one token, as it would be written in a dim string."""
    prefix = "#" if getattr(dim, "broadcastable", False) else ""
    if isinstance(dim, NamedDim):
        return f"{prefix}{'?' if dim.treepath else ''}{dim.name}"
    if isinstance(dim, FixedDim):
        label = f"{dim.label}=" if dim.label else ""
        return f"{label}{prefix}{dim.size}"
    if isinstance(dim, SymbolicDim):
        return f"{prefix}{dim.expression}"
    if isinstance(dim, AnonymousDim):
        return "_"
    if dim.name is None:
        return "..."
    return f"*{prefix}{'?' if dim.treepath else ''}{dim.name}"


def dim_name(dim: Dim) -> str | None:
    """The name a token gives to a dimension: ``n`` for ``n``/``#n``/``n=3``/``*n``, else None."""
    if isinstance(dim, NamedDim | VariadicDim):
        return dim.name
    if isinstance(dim, FixedDim):
        return dim.label
    return None


@dataclass(frozen=True)
class Layout:
    """A parsed dim string: the tokens in axis order.

    A layout with a variadic token matches arrays of rank ``len(dims) - 1`` or more.
    """

    dims: tuple[Dim, ...]

    @functools.cached_property
    def variadic_index(self) -> int | None:
        """Position of the ``*name``/``...`` token, or None."""
        for index, dim in enumerate(self.dims):
            if isinstance(dim, VariadicDim):
                return index
        return None

    @functools.cached_property
    def min_rank(self) -> int:
        """The smallest rank an array with this layout can have."""
        return len(self.dims) - (self.variadic_index is not None)

    def admits_rank(self, rank: int) -> bool:
        """Can an array of ``rank`` dims have this layout?"""
        return rank == self.min_rank or (self.variadic_index is not None and rank > self.min_rank)

    @property
    def rank_text(self) -> str:
        """How many dims it needs, for messages: ``2``, or ``at least 2`` with a variadic."""
        return f"at least {self.min_rank}" if self.variadic_index is not None else str(self.min_rank)

    def names(self) -> frozenset[str]:
        """Every dimension name the layout mentions (named, variadic and labelled fixed dims)."""
        return frozenset(name for dim in self.dims if (name := dim_name(dim)) is not None)

    def axis_of(self, index: int) -> int:
        """The ``vmap`` axis of token ``index``: from the left, or negative after a variadic."""
        variadic = self.variadic_index
        if variadic is not None and variadic < index:
            return index - len(self.dims)
        return index

    def split(self, shape: tuple[int, ...]) -> list[tuple[int, ...] | int]:
        """The size (or, for a variadic token, the sizes) each token covers in ``shape``.

        The caller has checked that ``len(shape) >= self.min_rank``.
        """
        index = self.variadic_index
        if index is None:
            return list(shape)
        stop = len(shape) - (len(self.dims) - index - 1)
        return [*shape[:index], tuple(shape[index:stop]), *shape[stop:]]

    def without(self, positions: set[int] | frozenset[int]) -> Layout:
        """The layout with the tokens at ``positions`` removed."""
        return Layout(tuple(d for i, d in enumerate(self.dims) if i not in positions))

    def __str__(self) -> str:
        return " ".join(dim_text(dim) for dim in self.dims)

    def __repr__(self) -> str:
        return f"Layout({str(self)!r})"


_PREFIXES = {"#": "broadcastable", "*": "variadic", "_": "anonymous", "?": "treepath"}


def parse_dim(token: str) -> Dim:
    """Parse one whitespace-free token with jaxtyping's rules (stricter where it is sloppy)."""
    if "..." in token:
        if token != "...":
            raise SpecError(f"'...' must stand on its own, got {token!r}")
        return VariadicDim(None)
    if "," in token and "(" not in token:
        raise SpecError(f"dimensions are separated by spaces, not commas: {token!r}")
    if token.endswith("#"):
        raise SpecError(f"a broadcastable dimension is written '#name', not 'name#': {token!r}")
    flags: set[str] = set()
    label: str | None = None
    body = token
    while body:
        first = body[0]
        if first in _PREFIXES:
            flag = _PREFIXES[first]
            if flag in flags:
                raise SpecError(f"'{first}' is used twice in {token!r}")
            flags.add(flag)
            body = body[1:]
        elif body.count("=") == 1:
            label, body = body.split("=")
            if not label.isidentifier():
                raise SpecError(f"the label before '=' in {token!r} is not a name")
        else:
            break
    broadcastable = "broadcastable" in flags
    treepath = "treepath" in flags
    if body == "" or body.isidentifier():
        if body == "" and not flags & {"anonymous"}:
            raise SpecError(f"{token!r} has no name")
        if "anonymous" in flags:
            if broadcastable:
                raise SpecError(f"a dimension cannot be both anonymous and broadcastable: {token!r}")
            if "variadic" in flags:
                return VariadicDim(None, treepath=treepath)
            return AnonymousDim()
        if "variadic" in flags:
            return VariadicDim(body, broadcastable, treepath)
        return NamedDim(body, broadcastable, treepath, label)
    try:
        size = int(body)
    except ValueError:
        size = None
    if size is not None:
        for flag, example in (("variadic", "*4"), ("anonymous", "_4"), ("treepath", "?4")):
            if flag in flags:
                raise SpecError(f"a fixed size cannot be {flag} ({example}): {token!r}")
        if size < 0:
            raise SpecError(f"a fixed size cannot be negative: {token!r}")
        return FixedDim(size, broadcastable, label)
    for flag, example in (("variadic", "*n+1"), ("anonymous", "_n+1"), ("treepath", "?n+1")):
        if flag in flags:
            raise SpecError(f"an expression cannot be {flag} ({example}): {token!r}")
    expressions.validate(body, token)
    dim = SymbolicDim(body, broadcastable, label)
    try:
        expressions.constant(body)
    except ValueError as error:
        raise SpecError(f"the dimension expression {token!r} can never be a size: {error}") from None
    return dim


def parse_layout(text: str) -> Layout:
    """Parse a dim string such as ``"graph node feat"`` into a ``Layout``.

    Raises:
        SpecError: if the text is not valid jaxtyping dim syntax (or uses two variadics).
    """
    if not isinstance(text, str):
        raise SpecError(f"a layout must be a string, got {type(text).__name__} {text!r}")
    dims = tuple(parse_dim(token) for token in text.split())
    if sum(isinstance(dim, VariadicDim) for dim in dims) > 1:
        raise SpecError(f"a layout can have at most one '*name' or '...': {text!r}")
    return Layout(dims)


# -- spec strings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A parsed ``batched`` spec.

    Either ``batch`` (the shorthand ``"graph time"``/``"*batch"``: batch dims leading on every
    array parameter and every output) or ``inputs`` and ``outputs`` (a full signature, one
    layout per array parameter and per output).
    """

    batch: tuple[Dim, ...] | None = None
    inputs: tuple[Layout, ...] | None = None
    outputs: tuple[Layout, ...] | None = None


def parse_spec(text: str) -> Spec:
    """Parse ``"graph"``, ``"graph time"``, ``"*batch"`` or ``"b a, a c -> b c"``.

    Raises:
        SpecError: on any text that is not one of these forms.
    """
    if not isinstance(text, str):
        raise SpecError(f"a spec must be a string, got {type(text).__name__} {text!r}")
    if "->" not in text:
        if "," in text:
            raise SpecError(
                f"the spec {text!r} lists layouts but has no '->': a full signature is "
                "'in1, in2 -> out' (one layout per array parameter, then the output layouts)"
            )
        batch = parse_layout(text).dims
        if not batch:
            raise SpecError("the spec is empty: name the batch dims, e.g. 'graph'")
        for dim in batch:
            if not is_batch_token(dim):
                raise SpecError(
                    f"{dim_text(dim)!r} in the spec {text!r} cannot be a batch dim: batch dims "
                    "are names ('graph'), names with a size ('graph=13') or '*name'"
                )
        return Spec(batch=batch)
    if text.count("->") > 1:
        raise SpecError(f"the spec {text!r} has more than one '->'")
    left, right = text.split("->")
    # A function returns something: nothing after '->' is one scalar result.
    outputs = _parse_layout_list(right) or (Layout(()),)
    return Spec(inputs=_parse_layout_list(left), outputs=outputs)


def _parse_layout_list(text: str) -> tuple[Layout, ...]:
    if text.strip() == "":
        return ()
    # An empty layout between commas is a scalar ("b n, -> b": the second argument is one number).
    return tuple(parse_layout(part) for part in _split_top_level_commas(text))


def _split_top_level_commas(text: str) -> list[str]:
    """Split on commas, except those inside parentheses (``min(n,m)``)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def is_batch_token(dim: Dim) -> bool:
    """Can this token be a batch dim (something ``vmap`` can map and name)?"""
    if isinstance(dim, NamedDim):
        return not dim.treepath
    if isinstance(dim, FixedDim):
        return dim.label is not None
    if isinstance(dim, VariadicDim):
        return dim.name is not None and not dim.treepath
    return False
