"""Dimension expressions (``2*f``, ``n+1``, ``min(n, m)``, ``{self.size}``): checked, read, evaluated.

An expression is integer arithmetic on dim names (``+ - * // % **``, ``min``/``max``/``abs``),
with f-string fields in braces that read the call's arguments, as jaxtyping allows. ``validate``
refuses at parse time what can never be a size; ``evaluate`` interprets the arithmetic (it never
``eval``s it) within ``±2**63``, so ``9**9**9`` is an error rather than a computation that never ends.

Sizes may be symbolic (``jax.export.symbolic_shape("b, n")``): the arithmetic is then JAX's
symbolic arithmetic, and ``same_size`` is the one comparison of two sizes: certain where JAX can
decide it, ``None`` where it cannot. A bound JAX cannot decide at trace time (is ``n + 5`` below
``2**63``?) is not refused: only what is certain to fail is. Where JAX cannot decide whether two
sizes are equal, ``deciding_constraint`` finds a ``jax.export`` constraint under which it proves them so.

Example:
    >>> sorted(names("2*f + min(n, m)"))
    ['f', 'm', 'n']
    >>> evaluate("2*f + min(n, m)", {"f": 3, "n": 4, "m": 5}, {})
    10
    >>> constant("2*3"), constant("n+1")
    (6, None)
    >>> n, m = jax.export.symbolic_shape("n, m")
    >>> evaluate("2*n + 1", {"n": n}, {}), same_size(n + n, 2 * n), same_size(n, m)
    (2*n + 1, True, None)
    >>> deciding_constraint(n - 3, n - jax.core.min_dim(n, 3))
    ('n >= 3', n - 3, n - 3)
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable
from typing import Any

import jax

from ._errors import SpecError

__all__ = ["argument_names", "constant", "deciding_constraint", "evaluate", "names", "same_size", "validate"]

Size = Any  # an int, or a symbolic dimension of jax.export (``b``, ``2*n + 1``)

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


def validate(expression: str, token: str) -> None:
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
    # (a negated constant is refused with its value, by constant)
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


@functools.lru_cache(maxsize=1024)
def names(expression: str) -> frozenset[str]:
    """The dimension names an expression refers to (outside f-string braces)."""
    plain = _FSTRING_FIELD.sub("0", expression)
    tree = ast.parse(plain, mode="eval")
    return frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id not in _FUNCTIONS)


def argument_names(expression: str) -> frozenset[str]:
    """The argument names an expression's f-string fields refer to (``{self.n}`` -> ``self``)."""
    found = set()
    for field_text in _FSTRING_FIELD.findall(expression):
        tree = ast.parse(field_text, mode="eval")
        found.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return frozenset(found)


def same_size(first: Size, second: Size) -> bool | None:
    """Are two sizes equal? True or False where that is certain; None where JAX cannot decide it.

    Two ints are compared. A symbolic size is equal to another where JAX proves it (``n + n`` and
    ``2*n``), different where their difference is certainly not zero (``2*n`` and ``n``: ``n >= 1``),
    and undecided otherwise (``n`` and ``m``, which JAX, like ``jax.vmap``, does not take as equal).

    Example:
        >>> n, m = jax.export.symbolic_shape("n, m")
        >>> same_size(3, 3), same_size(n + 1, n), same_size(2 * n, n), same_size(n, m), same_size(n, 1)
        (True, False, False, None, None)
    """
    if first == second:  # for symbolic sizes: provably equal
        return True
    difference = first - second
    if not jax.export.is_symbolic_dim(difference):
        return False
    if _certainly(lambda: difference >= 1) or _certainly(lambda: difference <= -1):
        return False
    return None


# jax.errors has it from jax 0.10.1; before that, only jax.core does.
_INCONCLUSIVE = getattr(jax.errors, "InconclusiveDimensionOperation", None) or jax.core.InconclusiveDimensionOperation


def _certainly(comparison: Callable[[], bool]) -> bool:
    """Whether a comparison of sizes holds for every value of the symbolic dims it involves."""
    try:
        return bool(comparison())
    except _INCONCLUSIVE:
        return False


def deciding_constraint(first: Size, second: Size) -> tuple[str, Size, Size] | None:
    """A ``jax.export`` constraint under which JAX proves two sizes equal, and both sizes as it reduces them then.

    The candidates come from the sizes as JAX writes them: for each ``min(a, b)`` or ``max(a, b)``,
    ``a >= b`` and ``a <= b``; where one size is a lone symbol, that it equals the other
    (``m == n``, ``n == 2``: JAX takes a lone symbol on the left of an equality). Each is tried on
    the sizes re-read in a scope of their own with that constraint. None where no candidate decides.

    Example:
        >>> n, m = jax.export.symbolic_shape("n, m")
        >>> deciding_constraint(n, m), deciding_constraint(n, 2), deciding_constraint(n, n + 1)
        (('m == n', n, n), ('n == 2', 2, 2), None)
    """
    texts = (str(first), str(second))
    candidates = [
        f"{left} {relation} {right}" for left, right in _min_max_arguments(texts) for relation in (">=", "<=")
    ]
    if texts[1].isidentifier():
        candidates.append(f"{texts[1]} == {texts[0]}")
    elif texts[0].isidentifier():
        candidates.append(f"{texts[0]} == {texts[1]}")
    for constraint in dict.fromkeys(candidates):
        try:
            first, second = jax.export.symbolic_shape(", ".join(texts), constraints=(constraint,))
        except Exception:  # a text JAX does not read back, or a constraint it refuses
            continue
        if same_size(first, second):
            return constraint, first, second
    return None


def _min_max_arguments(texts: tuple[str, ...]) -> list[tuple[str, str]]:
    """The two arguments of every ``min(a, b)`` and ``max(a, b)`` in sizes as JAX writes them."""
    found = []
    for text in texts:
        for match in re.finditer(r"\b(?:min|max)\(", text):
            depth, parts, start = 0, [], match.end()
            for index in range(match.end(), len(text)):
                character = text[index]
                if character == "(":
                    depth += 1
                elif character == ")" and depth:
                    depth -= 1
                elif character in ",)" and not depth:
                    parts.append(text[start:index].strip())
                    start = index + 1
                    if character == ")":
                        break
            if len(parts) == 2:
                found.append((parts[0], parts[1]))
    return found


def evaluate(expression: str, sizes: dict[str, Size], arguments: dict[str, object]) -> Size:
    """Evaluate ``expression`` given the bound sizes (and argument values for ``{...}`` fields).

    The arithmetic (names, integers, ``+ - * // % **``, min/max/abs) is interpreted here, not
    ``eval``'d, and refuses any value beyond ``2**63`` (no dimension is that big), so ``9**9**9``
    is an error, not a computation that never ends. f-string fields are the user's own code,
    evaluated like jaxtyping does. With symbolic sizes the value is symbolic (``2*n + 1``).

    Raises:
        NameError: for a name no size is given for.
        ValueError: for a value no dimension can have, or syntax an expression cannot hold.
        ZeroDivisionError: for ``// 0`` or ``% 0``.
    """

    def field_value(match: re.Match[str]) -> str:
        value = eval(match.group(1), {"__builtins__": {}}, dict(arguments))
        return str(value)

    filled = _FSTRING_FIELD.sub(field_value, expression)
    try:
        tree = _parsed(filled)
    except SyntaxError:
        raise ValueError(f"{expression} became {filled!r}, which is not an expression") from None
    return _interpret(tree.body, sizes, expression)


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


def _interpret(node: ast.AST, sizes: dict[str, Size], text: str) -> Size:
    """The value of a validated expression's node, every step within ``±2**63`` (where decidable)."""
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
        value = _power(_interpret(node.left, sizes, text), _interpret(node.right, sizes, text), text)
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
        value = _call(node.func.id, [_interpret(arg, sizes, text) for arg in node.args])
    else:
        raise ValueError(f"{text} holds {ast.unparse(node)!r}, which is not integer arithmetic on sizes")
    if _certainly(lambda: value > _LIMIT) or _certainly(lambda: value < -_LIMIT):
        raise ValueError(f"{text} is larger than 2**63, which no dimension can be")
    return value


def _power(base: Size, exponent: Size, text: str) -> Size:
    if not isinstance(exponent, int):
        raise ValueError(f"{text} raises to the symbolic power {exponent}: JAX computes powers by a fixed integer only")
    if exponent < 0:
        raise ValueError(f"{text} raises to a negative power, which gives no integer")
    # A symbolic base is at least 1; a power of it above 63 is beyond 2**63 unless the base is 1.
    bits = abs(base).bit_length() - 1 if isinstance(base, int) else 1
    if exponent * bits > 63:
        raise ValueError(f"{text} is larger than 2**63, which no dimension can be")
    return base**exponent


def _call(function: str, values: list[Size]) -> Size:
    """``min``, ``max`` or ``abs`` of sizes; of symbolic sizes, JAX's symbolic ``min``/``max``."""
    if all(isinstance(value, int) for value in values):
        return _FUNCTIONS[function](*values)
    if function == "abs":
        (value,) = values
        if _certainly(lambda: value >= 0):
            return value
        return -value if _certainly(lambda: value <= 0) else jax.core.max_dim(value, -value)
    combine = jax.core.min_dim if function == "min" else jax.core.max_dim
    return functools.reduce(combine, values)


def constant(expression: str) -> int | None:
    """The value of an expression without names or f-string fields (``2*3``), else None.

    Raises:
        ValueError: if it has a value no dimension can have (negative, or beyond ``2**63``).
    """
    if "{" in expression or names(expression):
        return None
    try:
        value = _interpret(_parsed(expression).body, {}, expression)
    except ZeroDivisionError:
        raise ValueError(f"{expression} divides by zero") from None
    if value < 0:
        raise ValueError(f"{expression} is {value}: a dimension cannot be negative")
    return value
