"""A file as an HTTP answer with range requests (RFC 9110 §14): what `<video>` needs to seek.

One range per request (`bytes=a-b`, `bytes=a-`, `bytes=-n`) answers 206 with that slice; a range
past the end answers 416 with `Content-Range: bytes */size`; no (or an unreadable) Range header
answers the whole file. The content type is the file's real type, from its name.
"""

import mimetypes
import re
from collections.abc import Iterator
from pathlib import Path

from fastapi.responses import JSONResponse, StreamingResponse

from vidsearch.serving.http.errors import error_response

CHUNK_BYTES = 256 << 10
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _UnsatisfiableError(Exception):
    pass


def _span(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span asked for; None: the whole file; _UnsatisfiableError past the end."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:  # several ranges or another unit: the whole file, as the RFC allows
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        count = int(last)
        if not count or not size:
            raise _UnsatisfiableError
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _UnsatisfiableError
    return start, end


def _read(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as file:
        file.seek(start)
        while length > 0:
            chunk = file.read(min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def file_response(path: Path, range_header: str | None) -> StreamingResponse | JSONResponse:
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    try:
        span = _span(range_header, size)
    except _UnsatisfiableError:
        return error_response(416, f"the range {range_header!r} lies past the end of the file ({size} bytes)",
                              headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = span or (0, size - 1)
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(_read(path, start, length), status_code=status, headers=headers,
                             media_type=content_type(path))
