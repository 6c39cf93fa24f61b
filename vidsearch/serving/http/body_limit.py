"""A ceiling on request bodies, checked before any handler reads them (HTTP 413 with a JSON body).

The declared `Content-Length` is checked first; a chunked body is counted as it arrives and cut off
at the limit. Uploads (multipart) may be as large as gRPC's streamed uploads, other bodies as large
as one gRPC message.
"""

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidsearch.serving.http.errors import error_response

DRAIN_MAX_BYTES = 64 << 20


async def _drain(receive: Receive, seen: int) -> None:
    more = True
    while more and seen <= DRAIN_MAX_BYTES:
        message = await receive()
        seen += len(message.get("body", b""))
        more = message.get("more_body", False) and message["type"] == "http.request"


def _message(limit: int) -> str:
    return f"the request body exceeds {limit} bytes"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self._app = app
        self._max_body = max_body_bytes
        self._max_upload = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        upload = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self._max_upload if upload else self._max_body
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _drain(receive, 0)
            await error_response(413, _message(limit), headers={"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            # an HTTPException passes FastAPI's body parsing unchanged and becomes the JSON 413
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                if message.get("more_body", False):
                    await _drain(receive, seen)
                raise HTTPException(413, _message(limit), headers={"Connection": "close"})
            return message

        await self._app(scope, counted, send)
