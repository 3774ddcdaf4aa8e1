"""Global switches.

``shapedmap.config.checks = False`` (or the environment variable ``SHAPEDMAP_CHECKS=0``
set before import) turns every shape check off; mapping still works. Per function,
``batched(..., check=False)`` does the same.
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

    __slots__ = ("checks",)  # a misspelt setting (``config.check = False``) is an error, not a no-op

    def __init__(self) -> None:
        self.checks: bool = _read_flag("SHAPEDMAP_CHECKS", True)

    def __repr__(self) -> str:
        return f"Config(checks={self.checks})"


config: Config = Config()
