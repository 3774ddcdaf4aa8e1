"""What a function made by ``jax.grad``/``jax.value_and_grad`` (or Equinox's filter transforms) returns.

Such a function copies the differentiated function's annotations, so by them it returns the loss.
``derivative_in`` finds the transform (``_compat`` recognises it) behind the wrappers that keep the
result: those ``contract_function`` sees through (``jax.jit``, partials…) and functions that copy
the annotations of what they wrap (``jax.checkpoint``/``jax.remat``, ``jax.named_call``,
``functools.wraps`` decorators). ``derivative_outputs`` derives the result from the differentiated
parameters: the gradient of a parameter has that parameter's annotation, per example.

Example:
    >>> def loss(w: Float[Array, "n"], x: Float[Array, "n"]) -> Float[Array, ""]: ...
    >>> derivative_in(jax.jit(jax.checkpoint(jax.grad(loss, argnums=1)))).argnums
    1
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jax
import numpy as np

from ._compat import Derivative, derivative_of
from ._errors import SpecError
from ._grammar import Layout, VariadicDim
from ._value_types import ANY_TREE, ArrayType, ValueType, hint_text
from ._wrappers import MAX_WRAPPERS, inner_function

__all__ = ["derivative_in", "derivative_outputs"]

# The name dtype checks give float0, the dtype of the gradient of an integer, bool or key input (allow_int).
_FLOAT0 = np.dtype(jax.dtypes.float0).type.__name__
_INEXACT = ("float", "bfloat", "complex")


def _copies_annotations(fn: Any) -> Any:
    """The function ``fn`` wraps if ``fn`` is a plain function with the wrapped one's annotations
    (``functools.wraps`` copies them: ``jax.checkpoint``, ``jax.named_call``, user decorators), else None."""
    if not inspect.isfunction(fn):
        return None
    wrapped = getattr(fn, "__wrapped__", None)
    try:
        return wrapped if callable(wrapped) and fn.__annotations__ == wrapped.__annotations__ else None
    except Exception:  # no annotations, or ones that cannot be compared: fn's own
        return None


def derivative_in(fn: Any) -> Derivative | None:
    """The transform that made ``fn`` or a function it wraps without changing the result
    (``jax.jit(jax.grad(loss))``, ``jax.checkpoint(jax.grad(loss))``, ``equinox.filter_grad(loss)``), else None."""
    seen = {id(fn)}
    while (derivative := derivative_of(fn)) is None:
        inner = inner_function(fn)
        if inner is None:
            inner = _copies_annotations(fn)
        if inner is None or id(inner) in seen or len(seen) >= MAX_WRAPPERS:
            return None
        seen.add(id(inner))
        fn = inner
    return derivative


def derivative_outputs(
    derivative: Derivative,
    target: Any,
    name: str,
    loss: tuple[ValueType, ...],
    parameter_type: Callable[[str], ValueType],
) -> tuple[tuple[ValueType, ...], bool]:
    """What ``jax.grad``/``jax.value_and_grad`` of a function return, from its annotations.

    The gradient of a parameter has that parameter's annotation (``parameter_type(name)``, per
    example); a static (unannotated) parameter's gradient is a PyTree of arrays.
    ``loss`` is what the differentiated function returns: its value, or ``(value, aux)`` with
    ``has_aux``. Returns the outputs and whether they are a tuple.
    """
    parameters = inspect.signature(target).parameters.values()
    if not derivative.readable:
        raise SpecError(
            f"{name}: shapedmap cannot tell what {derivative.transform} returns (its annotations are the "
            f"function's own, not its result's). Annotate a function that calls it, e.g. "
            f"{_calling_function(derivative, name, loss, parameters, parameter_type)}"
        )
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    star_args = next((p.name for p in parameters if p.kind == p.VAR_POSITIONAL), None)

    def gradient(index: int) -> ValueType:
        if star_args is not None and index < 0:
            return ANY_TREE  # which argument it names depends on how many the call passes
        if star_args is not None and index >= len(positional):
            parameter = star_args  # an entry of *args: one array with its annotation
        elif -len(positional) <= index < len(positional):
            parameter = positional[index]
        else:
            raise SpecError(
                f"{name}: argnums={derivative.argnums} names positional argument {index}, but the "
                f"function has {len(positional)} positional parameter(s)"
            )
        value = parameter_type(parameter)
        if not value.is_array or value.array is None:
            return ANY_TREE
        value = replace(value, array=_admitting_float0(value.array))
        return replace(value, optional=True) if derivative.filtered else value  # None for no floats

    if isinstance(derivative.argnums, int):
        gradients: tuple[ValueType, ...] = (gradient(derivative.argnums),)
    else:
        gradients = tuple(gradient(index) for index in derivative.argnums)
    if not derivative.with_value and not derivative.has_aux:
        return gradients, not isinstance(derivative.argnums, int)
    one_gradient = gradients[0] if isinstance(derivative.argnums, int) else ANY_TREE
    if not derivative.with_value:
        aux = loss[1] if len(loss) == 2 else ANY_TREE
        return (one_gradient, aux), True
    value = ANY_TREE if derivative.has_aux else loss[0]
    return (value, one_gradient), True


def _admitting_float0(array: ArrayType) -> ArrayType:
    """The gradient's array type: the parameter's, and ``float0`` where the parameter admits an
    integer, bool or key dtype (``jax.grad(..., allow_int=True)`` gives such an input a float0
    gradient; without it JAX refuses the input itself). A float-only annotation stays float-only."""
    alternatives = tuple(_admitting_float0(member) for member in array.alternatives)
    dtypes = array.dtypes
    if dtypes is not None and not all(isinstance(d, str) and d.startswith(_INEXACT) for d in dtypes):
        dtypes = (*dtypes, _FLOAT0)
    return replace(array, dtypes=dtypes, alternatives=alternatives)


# The Jacobian-like transforms: the dims of the result, then those of the argument, this many times.
_ARGUMENT_DIMS = {"jax.jacrev": 1, "jax.jacfwd": 1, "jax.hessian": 2}


def _calling_function(
    derivative: Derivative,
    name: str,
    loss: tuple[ValueType, ...],
    parameters: Any,
    parameter_type: Callable[[str], ValueType],
) -> str:
    """The annotated function to write around an unreadable transform, from the function's annotations:
    a Jacobian has the result's dims then the argument's (``'n'`` for a scalar of ``'n'``, ``'m n'`` for
    ``'m'`` of ``'n'``), a Hessian the argument's twice. The first parameter is the one differentiated,
    as by default. When the annotations do not say, an example with the rule spelt out."""
    times = _ARGUMENT_DIMS.get(derivative.transform)
    if times is None:
        fallback = f"def f(x: Float[Array, 'n']) -> Float[Array, 'k']: return {name}(x), with the dims it returns"
    else:
        written = " ".join(["m", *["n"] * times])
        fallback = (
            f"def f(x: Float[Array, 'n']) -> Float[Array, '{written}']: return {name}(x) for a function of 'n' "
            f"that returns 'm' (its result's dims, then the argument's{' twice' if times == 2 else ''})"
        )
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if times is None or not positional or len(loss) != 1 or loss[0].kind != "array":
        return fallback
    try:
        argument = parameter_type(positional[0].name)
    except SpecError:
        return fallback
    if argument.kind != "array" or argument.array.alternatives or loss[0].array.alternatives:
        return fallback

    result, given = loss[0].array, argument.array.layout
    layout = Layout((*result.layout.dims, *given.dims * times))
    if any(isinstance(dim, VariadicDim) for dim in layout.dims):
        return fallback  # '...' twice is no layout: the sizes must be named
    first = positional[0].name
    return (
        f"def f({first}: {hint_text(argument.hint)}) -> {hint_text(result.with_layout(layout))}: return {name}({first})"
    )
