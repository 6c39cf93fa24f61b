"""Opening a video input (a path, bytes, or a seekable binary file) under a per-file deadline.

Every input is read through a Python file object, even a path: the deadline is then checked on every
read FFmpeg makes, so even a demuxer that scans a large file without finding a packet cannot run
past the limit. Any failure to open becomes a `VideoDecodeError` that names the input.
"""

import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import av
import av.container

from vidsearch.errors import VideoDecodeError

VideoSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""A video file path, the encoded bytes of a video, or a seekable binary file object."""


def source_name(source: VideoSource) -> str:
    """The name errors and logs use for an input: its path, or a placeholder for in-memory input."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    return str(getattr(source, "name", "<file object>"))


class Deadline:
    """The moment by which one input must be done; `check` raises once it has passed."""

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def extend(self, seconds: float) -> None:
        """Allow `seconds` more, e.g. once the length of the video is known."""
        self.seconds += seconds
        self._end += seconds

    def expired(self) -> bool:
        return time.monotonic() > self._end

    def check(self) -> None:
        if self.expired():
            raise VideoDecodeError(self.name, f"time limit of {self.seconds:.0f} s exceeded")


class _DeadlineReader(io.RawIOBase):
    """A read-only file view that stops the reading once the deadline has passed.

    The first read past the deadline raises (PyAV passes the exception on to the caller); later
    reads, which FFmpeg makes while closing, see end of file instead of raising again.
    """

    def __init__(self, raw: BinaryIO, deadline: Deadline) -> None:
        super().__init__()
        self._raw = raw
        self._deadline = deadline
        self._raised = False
        self.name = deadline.name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._raised:
            return b""
        if self._deadline.expired():
            self._raised = True
            self._deadline.check()
        return self._raw.read(size)

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _open_raw(source: VideoSource, name: str) -> BinaryIO:
    """A binary file positioned at the start of the input, or a `VideoDecodeError` saying why not."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise VideoDecodeError(name, "empty input (0 bytes)")
        return io.BytesIO(bytes(source))
    if isinstance(source, str | os.PathLike):
        try:
            raw: BinaryIO = open(source, "rb")  # noqa: SIM115  (closed by open_input)
        except FileNotFoundError:
            raise VideoDecodeError(name, "no such file") from None
        except IsADirectoryError:
            raise VideoDecodeError(name, "is a directory, not a video file") from None
        except OSError as exc:
            raise VideoDecodeError(name, f"cannot be read: {exc.strerror or exc}") from None
        if os.fstat(raw.fileno()).st_size == 0:
            raw.close()
            raise VideoDecodeError(name, "empty file (0 bytes)")
        return raw
    if not (source.seekable() and source.readable()):
        raise VideoDecodeError(name, "the file object must be readable and seekable (or pass bytes)")
    source.seek(0)
    return source


@contextmanager
def open_input(source: VideoSource, deadline: Deadline) -> Iterator[av.container.InputContainer]:
    """Open `source` with FFmpeg for demuxing; closes what it opened on exit."""
    raw = _open_raw(source, deadline.name)
    owned = raw is not source
    try:
        try:
            container = av.open(_DeadlineReader(raw, deadline), mode="r")
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(deadline.name, f"not a readable video container ({exc})") from None
        try:
            yield container
        finally:
            container.close()
    finally:
        if owned:
            raw.close()
