"""What happens around every RPC, written once: authentication, parsing, the concurrency limit, error
mapping, metrics and the request log.

The order matters. A call is authenticated from its metadata before its body is parsed: a call without
a valid token is refused (UNAUTHENTICATED) with its bytes unread, so nobody unauthenticated can reach
the parser or fill the log with its errors. Health checks need no token (load balancers probe without
credentials); every other RPC, reflection too, needs one when tokens are configured. Bodies are then
parsed here, not by gRPC, so a malformed message is INVALID_ARGUMENT instead of an INTERNAL with a
traceback. Service RPCs take one of `max_concurrent_rpcs` slots, or are refused at once with
RESOURCE_EXHAUSTED: a full server says so instead of queueing work past its clients' deadlines. Health
and reflection take no slot, so a busy server still answers its probes.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from vidsearch.errors import RequestError
from vidsearch.serving.auth import BearerTokens, FailureAudit
from vidsearch.serving.metrics import Metrics
from vidsearch.serving.status import capped, status_of

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
SERVICE_PREFIX = "/vidsearch.v1.SearchService/"
_UNAUTHENTICATED = "missing or invalid bearer token (metadata 'authorization: Bearer <token>')"
# set on a behaviour by grpc_health's non-blocking Watch; a wrapper must keep them, or Watch blocks a thread
_BEHAVIOR_FLAGS = ("experimental_non_blocking", "experimental_thread_pool")

Behavior = Callable[..., Any]
Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True)
class _Malformed:
    """What the parser hands on for bytes that are not a valid message; the behaviour refuses it."""

    error: str


def _parser(deserializer: Deserializer | None) -> Deserializer | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as err:  # any failure to parse is the sender's malformed message
            return _Malformed(f"the request is not a valid message: {type(err).__name__}: {err}")

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise RequestError(request.error)
    return request


def _checked_stream(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _checked(request)


def _rebuild(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior], Behavior],
             deserializer: Deserializer | None) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped and another deserializer, whichever of the four call
    shapes it has."""
    if handler.request_streaming and handler.response_streaming:
        make, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    elif handler.request_streaming:
        make, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    elif handler.response_streaming:
        make, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:
        make, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    wrapped = wrap(behavior)
    for flag in _BEHAVIOR_FLAGS:
        if hasattr(behavior, flag):
            setattr(wrapped, flag, getattr(behavior, flag))
    return make(wrapped, request_deserializer=deserializer, response_serializer=handler.response_serializer)


class ServiceInterceptor(grpc.ServerInterceptor):
    def __init__(self, tokens: Sequence[str], max_concurrent: int, metrics: Metrics,
                 failure_log_interval_s: float = 10.0) -> None:
        self._tokens = BearerTokens(tokens)
        self._audit = FailureAudit(metrics.auth_failures, failure_log_interval_s)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._metrics = metrics
        # wrapped handlers by (method, authorized): built once, not on every call (this runs on gRPC's
        # one polling thread, which every request passes through)
        self._wrapped: dict[tuple[str, bool], grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        authorized = method.startswith(HEALTH_PREFIX) or self._tokens.authorize(details.invocation_metadata)
        wrapped = self._wrapped.get((method, authorized))
        if wrapped is None:
            wrapped = self._wrap(method, handler, authorized)
            self._wrapped[method, authorized] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler, authorized: bool) -> grpc.RpcMethodHandler:
        name = method.removeprefix(SERVICE_PREFIX)
        if not authorized:  # no deserializer: the body stays bytes, unread
            return _rebuild(handler, lambda _: self._refusal(name), None)
        parse = _parser(handler.request_deserializer)
        streaming = bool(handler.request_streaming)
        if method.startswith(SERVICE_PREFIX):
            return _rebuild(handler, lambda behavior: self._guard(name, behavior, streaming), parse)
        if handler.response_streaming:
            return _rebuild(handler, lambda behavior: _plain_stream(behavior, streaming), parse)
        return _rebuild(handler, lambda behavior: _plain(behavior, streaming), parse)

    def _refusal(self, name: str) -> Behavior:
        def refuse(request: Any, context: grpc.ServicerContext, *rest: Any) -> Any:
            self._audit.record(name, context.peer())
            if not name.startswith("/"):  # a service method (others keep their full name)
                self._metrics.requests.labels(name, grpc.StatusCode.UNAUTHENTICATED.name).inc()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, _UNAUTHENTICATED)

        return refuse

    def _guard(self, name: str, behavior: Behavior, streaming: bool) -> Behavior:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._slots.acquire(blocking=False):
                self._metrics.rejected.labels(name).inc()
                self._metrics.requests.labels(name, grpc.StatusCode.RESOURCE_EXHAUSTED.name).inc()
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"server busy: {self._max_concurrent} requests are in progress, the most it "
                              "runs at once; retry with backoff")
            try:
                return self._run(name, behavior, request, streaming, context)
            finally:
                self._slots.release()

        return guarded

    def _run(self, name: str, behavior: Behavior, request: Any, streaming: bool,
             context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        self._metrics.in_flight.inc()
        try:
            return behavior(_checked_stream(request) if streaming else _checked(request), context)
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


def _plain(behavior: Behavior, streaming: bool) -> Behavior:
    """Health and reflection: the parsed request, no slot; a malformed one is INVALID_ARGUMENT."""
    def call(request: Any, context: grpc.ServicerContext, *rest: Any) -> Any:
        try:
            return behavior(_checked_stream(request) if streaming else _checked(request), context, *rest)
        except RequestError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(str(err)))

    return call


def _plain_stream(behavior: Behavior, streaming: bool) -> Behavior:
    """`_plain` for a response stream, whose errors surface while it is iterated."""
    def call(request: Any, context: grpc.ServicerContext, *rest: Any) -> Any:
        if not streaming and isinstance(request, _Malformed):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(request.error))
        if rest:  # a non-blocking behaviour (health Watch) sends through the callback, not an iterator
            return behavior(request, context, *rest)
        return _responses(behavior, _checked_stream(request) if streaming else request, context)

    return call


def _responses(behavior: Behavior, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    try:
        yield from behavior(request, context)
    except RequestError as err:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(str(err)))


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
    return code, capped(str(error))
