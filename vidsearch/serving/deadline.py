"""A request's deadline: the client's, or the server's default for requests that came without one."""

import time

import grpc

from vidsearch.errors import DeadlineExceededError


class RequestDeadline:
    """Time left for one request; `remaining()` raises once it is spent, so long work stops early."""

    def __init__(self, context: grpc.ServicerContext, default_s: float) -> None:
        given = context.time_remaining()
        seconds = default_s if given is None else min(float(given), default_s)
        self._end = time.monotonic() + seconds
        self._context = context

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0 or not self._context.is_active():
            raise DeadlineExceededError("the request's deadline passed (or it was cancelled) before it was "
                                        "done")
        return left
