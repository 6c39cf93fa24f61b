"""The one place where errors become gRPC status codes.

Every handler raises `vidsearch.errors` exceptions; the interceptor (`interceptors.py`) answers with
the code this table gives and the exception's message. The first matching row wins, so subclasses
come before their bases. Anything else is a bug: INTERNAL, with the details only in the log.
"""

import grpc

from vidsearch import errors

# A status message repeats parts of the request (a path, an id): capped, so a huge input cannot make
# the answer larger than what gRPC lets through in a status (8 KiB of metadata by default).
MAX_MESSAGE_CHARS = 1024

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.PathNotAllowedError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RuntimeUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.DuplicateClipError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.IndexMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidQueryError, grpc.StatusCode.INVALID_ARGUMENT),  # page tokens included
    (errors.InvalidClipError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.VideoError, grpc.StatusCode.INVALID_ARGUMENT),  # the bytes or file are not a readable video
    (errors.IndexReadOnlyError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ConfigError, grpc.StatusCode.FAILED_PRECONDITION),  # e.g. no classifier in this deployment
    (errors.MissingDependencyError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.VidsearchError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_of(error: BaseException) -> grpc.StatusCode:
    """The status code a handler's exception is answered with."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def capped(message: str) -> str:
    """`message`, cut to MAX_MESSAGE_CHARS with a note of how much was left out."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:MAX_MESSAGE_CHARS]}… ({len(message) - MAX_MESSAGE_CHARS} more characters left out)"
