"""A thread-safe least-recently-used cache bounded in bytes, with hit and miss counts (for recent text
embeddings).

Bytes, not entries: a bound on entries lets a few huge keys take any amount of memory. Each entry is
weighed once, when it is put, by the caller's `size_of`; an entry heavier than the whole capacity is
not kept.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    size: int  # entries
    bytes: int
    capacity_bytes: int
    hits: int
    misses: int


class LruCache(Generic[K, V]):
    """Keeps the most recently used entries whose sizes add up to at most `capacity_bytes` (0: none)."""

    def __init__(self, capacity_bytes: int, size_of: Callable[[K, V], int]) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self._capacity = capacity_bytes
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def put(self, key: K, value: V) -> None:
        size = self._size_of(key, value)
        if size > self._capacity:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self._capacity:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._bytes, self._capacity, self._hits, self._misses)
