"""shapedmap: name your batch dims; ``jax.vmap`` axes and shape checks follow from jaxtyping annotations.

Example:
    >>> from jaxtyping import Array, Float
    >>> from shapedmap import batched
    >>> @batched("graph")
    ... def message_passing(a: Float[Array, "node node"], f: Float[Array, "node feat"]) -> Float[Array, "node feat"]:
    ...     return a @ f
"""

from .batched import batched
from .config import config
from .docs import describe
from .errors import ShapeError, SpecError
from .explain import explain

__all__ = ["ShapeError", "SpecError", "batched", "config", "describe", "explain"]
__version__ = "0.1.0"
