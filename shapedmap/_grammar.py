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

import ast
import functools
import re
from dataclasses import dataclass, field

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
    "evaluate_symbolic",
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
    _validate_expression(body, token)
    dim = SymbolicDim(body, broadcastable, label)
    try:
        constant_value(dim)
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


# -- symbolic dims -------------------------------------------------------------------

_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Call,
    ast.Attribute,
    ast.Subscript,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.USub,
    ast.UAdd,
)
_FUNCTIONS = {"min": min, "max": max, "abs": abs}
_FSTRING_FIELD = re.compile(r"\{([^{}]*)\}")


def _validate_expression(expression: str, token: str) -> None:
    """Reject expressions that could never evaluate to a size, at parse time."""
    plain = _FSTRING_FIELD.sub("0", expression)
    if "{" in plain or "}" in plain:
        raise SpecError(f"unbalanced braces in the dimension expression {token!r}")
    for field_text in _FSTRING_FIELD.findall(expression):
        _parse_python(field_text, token)
    tree = _parse_python(plain, token)
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise SpecError(
                f"unsupported syntax {type(node).__name__} in the dimension expression {token!r}: "
                "use names, integers, + - * // % ** and min/max/abs"
            )
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
        ):
            raise SpecError(f"only min, max and abs can be called in {token!r}")
        if isinstance(node, ast.Attribute | ast.Subscript):
            raise SpecError(f"attribute and item access belong inside braces in {token!r} (write '{{self.n}}')")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int):
            raise SpecError(f"only integer constants are allowed in {token!r}")
    # f-string fields read as 1 here: only what holds for every size is certain to fail.
    sized = _parse_python(_FSTRING_FIELD.sub("1", expression), token)
    for node in ast.walk(sized):
        divides = isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv | ast.Mod)
        if divides and isinstance(node.right, ast.Constant) and node.right.value == 0:
            raise SpecError(f"the dimension expression {token!r} divides by zero: it can never be a size")
    top = sized.body
    negated = isinstance(top, ast.UnaryOp) and isinstance(top.op, ast.USub)
    # (a negated constant is refused with its value, by constant_value)
    if negated and not isinstance(top.operand, ast.Constant) and _never_negative(top.operand):
        raise SpecError(
            f"the dimension expression {token!r} is negative for every positive size: a dimension cannot be negative"
        )


def _never_negative(node: ast.AST) -> bool:
    """Is the expression at ``node`` >= 0 for all sizes (names, non-negative constants, + * // % **)?"""
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and node.value >= 0
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult | ast.FloorDiv | ast.Mod | ast.Pow):
        return _never_negative(node.left) and _never_negative(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id == "abs" or all(_never_negative(argument) for argument in node.args)
    return False


def _parse_python(text: str, token: str) -> ast.Expression:
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError:
        raise SpecError(f"the dimension expression {token!r} is not valid Python") from None


def symbolic_names(dim: SymbolicDim) -> frozenset[str]:
    """The dimension names an expression refers to (outside f-string braces)."""
    plain = _FSTRING_FIELD.sub("0", dim.expression)
    tree = ast.parse(plain, mode="eval")
    return frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id not in _FUNCTIONS)


def symbolic_arguments(dim: SymbolicDim) -> frozenset[str]:
    """The argument names an expression's f-string fields refer to (``{self.n}`` -> ``self``)."""
    names = set()
    for field_text in _FSTRING_FIELD.findall(dim.expression):
        tree = ast.parse(field_text, mode="eval")
        names.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return frozenset(names)


def evaluate_symbolic(dim: SymbolicDim, sizes: dict[str, int], arguments: dict[str, object]) -> int:
    """Evaluate ``dim`` given the bound sizes (and argument values for ``{...}`` fields).

    The arithmetic (names, integers, ``+ - * // % **``, min/max/abs) is interpreted here, not
    ``eval``'d, and refuses any value beyond ``2**63`` (no dimension is that big), so ``9**9**9``
    is an error, not a computation that never ends. f-string fields are the user's own code,
    evaluated like jaxtyping does.

    Raises:
        NameError: for a name no size is given for.
        ValueError: for a value no dimension can have, or syntax an expression cannot hold.
        ZeroDivisionError: for ``// 0`` or ``% 0``.
    """

    def field_value(match: re.Match[str]) -> str:
        value = eval(match.group(1), {"__builtins__": {}}, dict(arguments))
        return str(value)

    expression = _FSTRING_FIELD.sub(field_value, dim.expression)
    try:
        tree = _parsed(expression)
    except SyntaxError:
        raise ValueError(f"{dim.expression} became {expression!r}, which is not an expression") from None
    return _interpret(tree.body, sizes, dim.expression)


_LIMIT = 2**63  # larger than any dimension an array can have
_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


@functools.lru_cache(maxsize=1024)
def _parsed(expression: str) -> ast.Expression:
    return ast.parse(expression, mode="eval")


def _interpret(node: ast.AST, sizes: dict[str, int], text: str) -> int:
    """The integer value of a validated expression's node, every step within ``±2**63``."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        value = node.value
    elif isinstance(node, ast.Name):
        if node.id not in sizes:
            raise NameError(f"name {node.id!r} is not defined")
        value = sizes[node.id]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _interpret(node.operand, sizes, text)
        value = -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        base, exponent = _interpret(node.left, sizes, text), _interpret(node.right, sizes, text)
        if exponent < 0:
            raise ValueError(f"{text} raises to a negative power, which gives no integer")
        if abs(base) > 1 and exponent * (abs(base).bit_length() - 1) > 63:
            raise ValueError(f"{text} is larger than 2**63, which no dimension can be")
        value = base**exponent
    elif isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _interpret(node.left, sizes, text), _interpret(node.right, sizes, text)
        value = _OPERATORS[type(node.op)](left, right)
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and node.args
        and not node.keywords
    ):
        value = _FUNCTIONS[node.func.id](*(_interpret(arg, sizes, text) for arg in node.args))
    else:
        raise ValueError(f"{text} holds {ast.unparse(node)!r}, which is not integer arithmetic on sizes")
    if not -_LIMIT <= value <= _LIMIT:
        raise ValueError(f"{text} is larger than 2**63, which no dimension can be")
    return value


def constant_value(dim: SymbolicDim) -> int | None:
    """The value of an expression without names or f-string fields (``2*3``), else None.

    Raises:
        ValueError: if it has a value no dimension can have (negative, or beyond ``2**63``).
    """
    if "{" in dim.expression or symbolic_names(dim):
        return None
    try:
        value = _interpret(_parsed(dim.expression).body, {}, dim.expression)
    except ZeroDivisionError:
        raise ValueError(f"{dim.expression} divides by zero") from None
    if value < 0:
        raise ValueError(f"{dim.expression} is {value}: a dimension cannot be negative")
    return value


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
