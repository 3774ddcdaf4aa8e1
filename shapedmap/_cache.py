"""A small thread-safe LRU cache, so that no cache in shapedmap grows without bound."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

Value = TypeVar("Value")


class BoundedCache(Generic[Value]):
    """Keeps the ``maxsize`` most recently used entries.

    Example:
        >>> cache = BoundedCache(maxsize=2)
        >>> cache.get_or_compute("a", lambda: 1)
        1
        >>> cache.get_or_compute("b", lambda: 2), cache.get_or_compute("c", lambda: 3)
        (2, 3)
        >>> cache.held_keys()  # "a", the least recently used, made room for "c"
        ['b', 'c']
    """

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def held_keys(self) -> list[Hashable]:
        """The keys held now, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: Hashable) -> Value | None:
        """The value for ``key`` (refreshed as most recently used), or None."""
        # No lock: each OrderedDict operation is atomic, and an entry evicted between the two
        # by another thread simply stays evicted.
        value = self._entries.get(key)
        if value is not None:
            try:  # noqa: SIM105 (contextlib.suppress costs more on this per-call path)
                self._entries.move_to_end(key)
            except KeyError:
                pass
        return value

    def add(self, key: Hashable, value: Value) -> None:
        """Insert (or refresh) ``key``, evicting the least recently used entry if full."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        """The cached value for ``key``, computing and storing it on a miss."""
        value = self.get(key)
        if value is not None:
            return value
        value = compute()
        self.add(key, value)
        return value
