"""Bearer tokens: which calls carry a valid one, and an audit of those that do not.

Every failed authentication is counted (`vidsearch_auth_failures`, by method) and logged, but at most
one line per interval: a flood of bad tokens leaves a trail without flooding the log.
"""

import hmac
import logging
import threading
import time
from collections.abc import Sequence

from prometheus_client import Counter

log = logging.getLogger(__name__)

_BEARER = "bearer "


class BearerTokens:
    """The tokens the server accepts; none: every call is authorized."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tuple(token.encode() for token in tokens)

    def authorize(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        if not self._tokens:
            return True
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER:
                offered = value[len(_BEARER) :].strip().encode()
                # compare with every token, always: no timing difference tells which one nearly matched
                return any([hmac.compare_digest(offered, token) for token in self._tokens])
        return False


class FailureAudit:
    """Counts every failed authentication; logs the first, then one summary line per `interval_s`."""

    def __init__(self, counter: Counter, interval_s: float) -> None:
        self._counter = counter
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._unlogged = 0
        self._next_line = 0.0

    def record(self, method: str, peer: str) -> None:
        self._counter.labels(method).inc()
        with self._lock:
            self._unlogged += 1
            now = time.monotonic()
            if now < self._next_line:
                return
            count, self._unlogged = self._unlogged, 0
            self._next_line = now + self._interval_s
        log.warning("%d failed authentication(s) (missing or invalid bearer token); the last: %s from %s",
                    count, method, peer, extra={"rpc": method, "peer": peer, "failures": count})
