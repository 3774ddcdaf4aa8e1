"""Tests of shapedmap with other JAX libraries (the ``interop`` extra); each module skips itself when
its library is not installed."""
