"""A wrapper that records how many threads are inside a function at once (for one-at-a-time tests)."""

import threading
import time
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class AtOnce(Generic[P, R]):
    """Calls `function` after a pause long enough for other threads to arrive; `most` is the peak."""

    def __init__(self, function: Callable[P, R], pause_s: float) -> None:
        self._function = function
        self._pause_s = pause_s
        self._inside = 0
        self._lock = threading.Lock()
        self.most = 0

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            self._inside += 1
            self.most = max(self.most, self._inside)
        time.sleep(self._pause_s)
        try:
            return self._function(*args, **kwargs)
        finally:
            with self._lock:
                self._inside -= 1
