"""The one place where errors become status codes: gRPC's, and the HTTP API's beside them.

Every handler raises `vidsearch.errors` exceptions; the interceptor (`interceptors.py`) and the HTTP
API (`http/errors.py`) answer with the code this table gives and the exception's message. The first
matching row wins, so subclasses come before their bases. Anything else is a bug: INTERNAL (500),
with the details only in the log.
"""

import grpc

from vidsearch import errors

# A status message repeats parts of the request (a path, an id): capped, so a huge input cannot make
# the answer larger than what gRPC lets through in a status (8 KiB of metadata by default).
MAX_MESSAGE_CHARS = 1024

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode, int], ...] = (
    (errors.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND, 404),
    (errors.PathNotAllowedError, grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (errors.DeviceMemoryError, grpc.StatusCode.RESOURCE_EXHAUSTED, 503),  # GPU memory: retry later
    (errors.RuntimeUnavailableError, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.IndexUnavailableError, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.DuplicateClipError, grpc.StatusCode.ALREADY_EXISTS, 409),
    (errors.IndexMismatchError, grpc.StatusCode.FAILED_PRECONDITION, 409),
    (errors.InvalidQueryError, grpc.StatusCode.INVALID_ARGUMENT, 400),  # page tokens included
    (errors.InvalidClipError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.VideoError, grpc.StatusCode.INVALID_ARGUMENT, 400),  # the bytes or file are not a readable video
    (errors.IndexReadOnlyError, grpc.StatusCode.FAILED_PRECONDITION, 409),
    (errors.ConfigError, grpc.StatusCode.FAILED_PRECONDITION, 409),  # e.g. no classifier in this deployment
    (errors.MissingDependencyError, grpc.StatusCode.FAILED_PRECONDITION, 409),
    (errors.VidsearchError, grpc.StatusCode.FAILED_PRECONDITION, 409),
)


def _row(error: BaseException) -> tuple[grpc.StatusCode, int]:
    for kind, code, http in _CODES:
        if isinstance(error, kind):
            return code, http
    return grpc.StatusCode.INTERNAL, 500


def status_of(error: BaseException) -> grpc.StatusCode:
    """The gRPC status code a handler's exception is answered with."""
    return _row(error)[0]


def http_status_of(error: BaseException) -> tuple[int, grpc.StatusCode]:
    """The HTTP status a handler's exception is answered with, and its gRPC code (named in the body)."""
    code, http = _row(error)
    return http, code


def capped(message: str) -> str:
    """`message`, cut to MAX_MESSAGE_CHARS with a note of how much was left out."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}… ({len(message) - MAX_MESSAGE_CHARS} more characters left out)"
