"""Atomic file replacement: a reader, or the file system after a crash, sees the old file or the new one.

Every persisted file of vidsearch is written this way: into a temporary file beside the target, flushed
to disk, renamed over the target, and the directory entry flushed too (without that last step a crash
can forget the rename although the data reached the disk).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TMP_MARK = ".tmp-"


def is_leftover(path: Path) -> bool:
    """Whether `path` is the temporary file of an atomic write that a killed process never finished."""
    return path.name.startswith(".") and _TMP_MARK in path.name


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on a clean exit it replaces `path`.

    On an exception the temporary file is removed and `path` keeps its old content.
    """
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent, directory=True)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8) all at once."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
