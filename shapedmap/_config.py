"""Global switches.

``shapedmap.config.checks = False`` (or the environment variable ``SHAPEDMAP_CHECKS=0``
set before import) turns every shape check off; mapping still works. Per function,
``batched(..., check=False)`` does the same. ``shapedmap.config.full_tracebacks = True`` (or
``SHAPEDMAP_FULL_TRACEBACKS=1``) keeps shapedmap's own frames in the tracebacks of the errors a
batched function raises (for debugging shapedmap itself; by default they end at the caller's line).
"""

from __future__ import annotations

import os

__all__ = ["config"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _read_flag(variable: str, default: bool) -> bool:
    text = os.environ.get(variable)
    if text is None or text.strip() == "":
        return default
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(
        f"Unrecognised value {text!r} for the environment variable {variable}: use one of {_TRUE + _FALSE}."
    )


class Config:
    """Process-wide settings, read at call time so they can be toggled at any moment.

    Attributes:
        checks: run the shape checks (default ``True``; env ``SHAPEDMAP_CHECKS``).
        full_tracebacks: keep shapedmap's internal frames in the tracebacks of errors raised
            through a batched function (default ``False``: they end at the caller's line and the
            body's frames; env ``SHAPEDMAP_FULL_TRACEBACKS``).

    Example:
        >>> from shapedmap import config
        >>> @batched("b")
        ... def wrong(x: Float[Array, "n"]) -> Float[Array, "n"]:
        ...     return jnp.concatenate([x, x])  # contradicts its annotation
        >>> saved, config.checks = config.checks, False
        >>> wrong(jnp.ones((2, 3))).shape  # mapped, not checked
        (2, 6)
        >>> config.checks = saved
        >>> config.check = False  # a misspelt setting is an error, not a no-op
        Traceback (most recent call last):
            ...
        AttributeError: 'Config' object has no attribute 'check'...
    """

    __slots__ = ("checks", "full_tracebacks")  # a misspelt setting (``config.check = False``) is an error, not a no-op

    def __init__(self) -> None:
        self.checks: bool = _read_flag("SHAPEDMAP_CHECKS", True)
        self.full_tracebacks: bool = _read_flag("SHAPEDMAP_FULL_TRACEBACKS", False)

    def __repr__(self) -> str:
        return f"Config(checks={self.checks}, full_tracebacks={self.full_tracebacks})"


config: Config = Config()
