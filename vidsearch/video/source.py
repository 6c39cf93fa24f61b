"""Opening a video input (a path, bytes, or a seekable binary file) under a per-file deadline.

Every input is read through a Python file object, even a path: the deadline is then checked on every
read FFmpeg makes, so even a demuxer that scans a large file without finding a packet cannot run
past the limit. Any failure to open becomes a `VideoDecodeError` that names the input.

Only regular files are opened: a FIFO, socket or device would block the open or a read forever,
where no deadline check runs, so they are refused before anything is read from them.
"""

import io
import os
import stat
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


def _not_regular(mode: int) -> str:
    """What a non-regular file is, in words."""
    kinds = (
        (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def _open_file(path: str | os.PathLike[str], name: str) -> BinaryIO:
    """Open a regular file for reading; anything else is refused before it can block."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):  # O_NONBLOCK: should the path have become a FIFO meanwhile, do not wait
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            mode = os.fstat(fd).st_mode
            if stat.S_ISREG(mode):
                os.set_blocking(fd, True)
                return os.fdopen(fd, "rb")
            os.close(fd)
    except FileNotFoundError:
        raise VideoDecodeError(name, "no such file") from None
    except OSError as exc:
        raise VideoDecodeError(name, f"cannot be read: {exc.strerror or exc}") from None
    raise VideoDecodeError(name, f"is {_not_regular(mode)}, not a regular video file")


def _open_raw(source: VideoSource, name: str) -> BinaryIO:
    """A binary file positioned at the start of the input, or a `VideoDecodeError` saying why not."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise VideoDecodeError(name, "empty input (0 bytes)")
        return io.BytesIO(bytes(source))
    if isinstance(source, str | os.PathLike):
        raw = _open_file(source, name)
        if os.fstat(raw.fileno()).st_size == 0:
            raw.close()
            raise VideoDecodeError(name, "empty file (0 bytes)")
        return raw
    if not (source.seekable() and source.readable()):
        raise VideoDecodeError(name, "the file object must be readable and seekable (or pass bytes)")
    source.seek(0)
    return source


class LoadedInput(io.BytesIO):
    """A whole input in memory, keeping the name of the file it came from for errors and logs."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def load_input(source: VideoSource, deadline: Deadline) -> LoadedInput:
    """Read `source` whole, once: for decoders that take the encoded bytes (DALI), so that probing
    and decoding work on memory instead of opening the file again."""
    if isinstance(source, LoadedInput):
        return source
    raw = _open_raw(source, deadline.name)
    try:
        return LoadedInput(_DeadlineReader(raw, deadline).readall(), deadline.name)
    finally:
        if raw is not source:
            raw.close()


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
