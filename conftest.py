"""Docstring examples run as tests: ``pytest`` collects ``shapedmap/`` with ``--doctest-modules``.

Every docstring example sees the names below without importing them, so that short examples stay
short: ``jax``, ``jnp``, ``np``, jaxtyping's ``Array``, ``Float`` and ``Int``, and shapedmap's
``batched``, ``ShapeError`` and ``SpecError``. An example may still import what it shows on purpose.
A module that cannot be imported without an optional dependency is left out when it is missing.
"""

import importlib.util
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

# shapedmap/griffe_extension.py imports griffe, which comes with the docs extra only.
collect_ignore = [] if importlib.util.find_spec("griffe") else ["shapedmap/griffe_extension.py"]


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jaxtyping import Array, Float, Int

    from shapedmap import ShapeError, SpecError, batched

    doctest_namespace.update(
        jax=jax, jnp=jnp, np=np, Array=Array, Float=Float, Int=Int, batched=batched,
        ShapeError=ShapeError, SpecError=SpecError,
    )  # fmt: skip
