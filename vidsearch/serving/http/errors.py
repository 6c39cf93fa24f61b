"""Every HTTP error answer is JSON (`{"error": {"status", "code", "message"}}`), and none is a bare 500.

`vidsearch.errors` exceptions take their status from the shared table (`serving/status.py`); a body
that does not parse or fit the request model is a 400 naming the field; an unknown route or method
keeps its 404/405. Only a bug answers 500, with its details in the log, never in the body.
"""

import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vidsearch.errors import VidsearchError
from vidsearch.serving.http.models import ErrorAnswer, Problem
from vidsearch.serving.status import capped, http_status_of

log = logging.getLogger(__name__)

_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED", 416: "OUT_OF_RANGE", 429: "RESOURCE_EXHAUSTED"}


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    problem = Problem(status=status, code=code or _NAMES.get(status, "UNKNOWN"), message=message)
    return JSONResponse(ErrorAnswer(error=problem).model_dump(), status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


async def _on_vidsearch_error(request: Request, error: Exception) -> JSONResponse:
    status, code = http_status_of(error)
    return error_response(status, capped(str(error)), code.name)


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response(400, _validation_message(error))


async def _on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail), headers=dict(error.headers or {}))


async def _on_bug(request: Request, error: Exception) -> JSONResponse:
    log.exception("HTTP %s %s failed", request.method, request.url.path)
    return error_response(500, f"internal error ({type(error).__name__}); the server log has the details",
                          grpc.StatusCode.INTERNAL.name)


def install(app: FastAPI) -> None:
    app.add_exception_handler(VidsearchError, _on_vidsearch_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_bug)
