"""Bounded per-process memory of expensive loads (vectors, indexes, checks): least recently used goes first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

T = TypeVar("T")


class LRU:
    """A thread-safe mapping that keeps the ``size`` most recently used entries.

    ``get_or_build(key, build)`` runs ``build`` outside the lock, so a slow load does not
    block readers of other keys; two threads missing the same key at once may both build
    it, and the first result stored wins (builds must be idempotent)."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Hashable, value: Any) -> Any:
        with self._lock:
            value = self._data.setdefault(key, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
            return value

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        missing = object()
        found = self.get(key, missing)
        if found is not missing:
            return found
        return self.put(key, build())

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
