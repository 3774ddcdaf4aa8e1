"""shapedmap: name your batch dims; ``jax.vmap`` axes and shape checks follow from jaxtyping annotations.

Example:
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .config import config
from .errors import ShapeError, SpecError

if TYPE_CHECKING:
    from .batched import batched
    from .docs import describe
    from .explain import explain

__all__ = ["ShapeError", "SpecError", "batched", "config", "describe", "explain"]
__version__ = "0.1.0"

# These import JAX, so they load on first use: `import shapedmap` stays light, and so does
# every pytest start-up, which loads the pytest plugin (a submodule of this package).
_LAZY = {"batched": ".batched", "describe": ".docs", "explain": ".explain"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'shapedmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """Importing the submodule ``shapedmap.batched`` must not turn the function ``shapedmap.batched``
    into that module (Python sets a package attribute per imported submodule)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
