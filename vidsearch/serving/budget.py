"""A byte budget shared by concurrent requests: video bytes held in memory (uploads, video fields).

Each request reserves what it keeps before keeping it and gives it all back when it ends, so the
bytes held at once stay under the budget whatever the number of clients; a request that would pass
it is refused (RESOURCE_EXHAUSTED: others' uploads may finish, and a retry then succeed).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vidsearch.errors import LimitExceededError


class Reservation:
    """What one request holds of a `ByteBudget`."""

    def __init__(self, budget: "ByteBudget") -> None:
        self._budget = budget
        self.bytes = 0

    def add(self, count: int) -> None:
        """Reserve `count` more bytes, or LimitExceededError (nothing reserved) if the budget is spent."""
        self._budget._take(count)
        self.bytes += count


class ByteBudget:
    def __init__(self, limit: int, setting: str) -> None:
        self._limit = limit
        self._setting = setting
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    @contextmanager
    def hold(self) -> Iterator[Reservation]:
        """A reservation for the span of one request; everything it took is returned at the end."""
        reservation = Reservation(self)
        try:
            yield reservation
        finally:
            with self._lock:
                self._used -= reservation.bytes

    def _take(self, count: int) -> None:
        with self._lock:
            if self._used + count > self._limit:
                raise LimitExceededError(f"video bytes held by requests in progress would exceed "
                                         f"{self._limit} bytes ({self._setting}); retry later")
            self._used += count
