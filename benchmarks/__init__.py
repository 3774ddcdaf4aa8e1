"""shapedmap's benchmarks: ``python -m benchmarks`` (see ``__main__`` and docs/performance.md)."""
