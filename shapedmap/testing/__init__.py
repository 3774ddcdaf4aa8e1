"""Property tests for batched functions: Hypothesis inputs from the annotations, batched == loop.

``inputs(fn)`` is a Hypothesis strategy of ``(args, kwargs)`` that fit a batched function's
layouts: one size per dimension name, shared by every argument (batch and core dims
alike), fixed and symbolic dims honoured, ``*batch`` dims drawn broadcastable, ``#name``
dims sometimes 1, dtypes and PRNG keys per annotation, finite values, small shapes that
shrink to size 1.

``check_batched(fn)`` is the property every batched function must have: for drawn inputs
the batched call equals the naive Python loop over every batch index (calling the
per-example ``fn.fn``), eagerly and under ``jax.jit``, and every output has its annotated
shape and dtype. A failure raises ``BatchedCheckError`` with the inputs' shapes, the first
batch index where the two differ and by how much.

``verify(fn)`` proves the shape contract for every size instead of drawing sizes: one trace
with ``jax.export`` symbols (one per dim name) through ``jax.eval_shape``, each result
compared exactly with its annotation; a contract that does not hold raises ``VerifyError``.

They read only the function's plan (its layouts) and the core's checks, never how a call
runs: ``_strategies`` (with ``_input_spec``, ``_given`` and ``_trees``) draws, ``_loop`` (with
``_indexing`` and ``_compare``) checks, ``_verify`` (with ``_symbolic`` and ``_report``) proves.

``given=`` fixes any parameter's value, or draws it from a strategy: a model's parameters, an
equinox model, a fixed key, a config. A given array binds the sizes the drawn arguments take.

Example:
    >>> import jax.numpy as jnp
    >>> from hypothesis import given, settings
    >>> from shapedmap.examples import message_passing
    >>> from shapedmap.testing import check_batched, inputs
    >>> check_batched(message_passing, max_examples=5)
    >>> @settings(max_examples=5, deadline=None)  # the first call compiles
    ... @given(inputs(message_passing))
    ... def test_message_passing_is_finite(example):
    ...     args, kwargs = example
    ...     assert jnp.isfinite(message_passing(*args, **kwargs)).all()
    >>> test_message_passing_is_finite()
"""

from ._loop import BatchedCheckError, check_batched
from ._strategies import inputs
from ._verify import VerifyError, VerifyReport, verify

__all__ = ["BatchedCheckError", "VerifyError", "VerifyReport", "check_batched", "inputs", "verify"]
