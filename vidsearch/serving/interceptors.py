"""What happens around every RPC, written once: authentication, the concurrency limit, error mapping,
metrics and the request log.

Health checks pass untouched (load balancers probe them without credentials, and they must answer
when the server is full). Every other RPC needs a valid bearer token when tokens are configured
(reflection too). Service RPCs then take one of `max_concurrent_rpcs` slots, or are refused at once
with RESOURCE_EXHAUSTED: a full server says so instead of queueing work past its clients' deadlines.
"""

import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from vidsearch.serving.metrics import Metrics
from vidsearch.serving.status import status_of

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
SERVICE_PREFIX = "/vidsearch.v1.SearchService/"
_BEARER = "bearer "

Behavior = Callable[[Any, grpc.ServicerContext], Any]


def _rebuild(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior], Behavior]) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped, whichever of the four call shapes it has."""
    if handler.request_streaming and handler.response_streaming:
        make, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    elif handler.request_streaming:
        make, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    elif handler.response_streaming:
        make, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:
        make, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    return make(wrap(behavior), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class ServiceInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: Sequence[str], max_concurrent: int, metrics: Metrics) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._metrics = metrics
        # wrapped handlers by (method, authorized): built once, not on every call (this runs on gRPC's
        # one polling thread, which every request passes through)
        self._guarded: dict[tuple[str, bool], grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        method = details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        authorized = self._authorized(details.invocation_metadata)
        if not method.startswith(SERVICE_PREFIX):
            return handler if authorized else _rebuild(handler, lambda _: _unauthenticated)
        guarded = self._guarded.get((method, authorized))
        if guarded is None:
            name = method.removeprefix(SERVICE_PREFIX)
            guarded = _rebuild(handler, lambda behavior: self._guard(name, behavior, authorized))
            self._guarded[method, authorized] = guarded
        return guarded

    def _authorized(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        if not self._tokens:
            return True
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER:
                offered = value[len(_BEARER) :].strip().encode()
                # compare with every token, always: no timing difference tells which one nearly matched
                return any([hmac.compare_digest(offered, token) for token in self._tokens])
        return False

    def _guard(self, name: str, behavior: Behavior, authorized: bool) -> Behavior:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            if not authorized:
                self._metrics.requests.labels(name, grpc.StatusCode.UNAUTHENTICATED.name).inc()
                _unauthenticated(request, context)
            if not self._slots.acquire(blocking=False):
                self._metrics.rejected.labels(name).inc()
                self._metrics.requests.labels(name, grpc.StatusCode.RESOURCE_EXHAUSTED.name).inc()
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"server busy: {self._max_concurrent} requests are in progress, the most it "
                              "runs at once; retry with backoff")
            try:
                return self._run(name, behavior, request, context)
            finally:
                self._slots.release()

        return guarded

    def _run(self, name: str, behavior: Behavior, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        self._metrics.in_flight.inc()
        try:
            return behavior(request, context)
        except Exception as err:
            code, message = _answer(err, context, name)
            context.abort(code, message)
        finally:
            seconds = time.perf_counter() - started
            self._metrics.in_flight.dec()
            self._metrics.requests.labels(name, code.name).inc()
            self._metrics.latency.labels(name).observe(seconds)
            level = logging.DEBUG if code is grpc.StatusCode.OK else logging.INFO  # errors: one line each
            if log.isEnabledFor(level):
                ms = round(seconds * 1000, 2)
                fields = {"rpc": name, "code": code.name, "ms": ms, "peer": context.peer()}
                log.log(level, "%s %s %.1f ms", name, code.name, seconds * 1000, extra=fields)


def _answer(error: Exception, context: grpc.ServicerContext, name: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a failed handler is answered with."""
    if not context.is_active():  # the client is gone: it cancelled, or its deadline passed
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed"
        return grpc.StatusCode.CANCELLED, "the client cancelled the call"
    code = status_of(error)
    if code is grpc.StatusCode.INTERNAL:
        log.exception("%s failed", name, extra={"rpc": name, "code": code.name})
        return code, f"internal error ({type(error).__name__}); the server log has the details"
    return code, str(error)


def _unauthenticated(request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token (metadata "
                                                   "'authorization: Bearer <token>')")
