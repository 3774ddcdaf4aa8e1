"""shapedmap: name your batch dims; ``jax.vmap`` axes and shape checks follow from jaxtyping annotations.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
    >>> message_passing.in_axes
    {'graph': (0, 0)}
    >>> message_passing(jnp.ones((13, 7, 7)), jnp.ones((13, 7, 11))).shape
    (13, 7, 11)
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._config import config
from ._errors import ShapeError, SpecError

if TYPE_CHECKING:
    from ._decorator import batched
    from ._describe import describe
    from ._explain import explain
    from ._levels import Budget, SplitKey

__all__ = ["Budget", "ShapeError", "SpecError", "SplitKey", "batched", "config", "describe", "explain"]
__version__ = "0.1.0"

# These import JAX, so they load on first use: `import shapedmap` stays light, and so does
# every pytest start-up, which loads the pytest plugin (a submodule of this package).
_LAZY = {
    "batched": "._decorator",
    "describe": "._describe",
    "explain": "._explain",
    "Budget": "._levels",
    "SplitKey": "._levels",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'shapedmap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
