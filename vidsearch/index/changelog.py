"""The change log: every acknowledged change of an index, appended and fsync'd before it is answered.

A snapshot is rewritten only now and then (a compaction); between two, each add, upsert or delete is
one framed record in `log-<seq>.wal` beside the snapshots, so a write costs an append, not a copy of
the whole index. The manifest's `log_applied` names the last segment folded into the snapshot:
opening replays the segments after it, in order. Frame::

    u32 length | u32 crc32(payload) | payload = u32 header length | JSON header | float32 vectors

A frame cut short at the very end of the newest segment is a write that never returned (the process
died inside it): it is dropped. A bad frame anywhere else is damage: IndexFormatError names the file.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidsearch.errors import IndexFormatError
from vidsearch.formats.atomic import fsync_path
from vidsearch.index.base import ClipRecord

_SEGMENT = re.compile(r"^log-(\d{6,})\.wal$")
_FRAME = struct.Struct("<II")
_HEADER = struct.Struct("<I")


@dataclass(frozen=True)
class Change:
    """One logged change: `op` is add, upsert, delete_clips or delete_videos."""

    op: str
    records: tuple[ClipRecord, ...] = ()
    vectors: np.ndarray | None = None
    ids: tuple[str, ...] = ()


def _record_json(record: ClipRecord) -> dict[str, Any]:
    return {
        "clip_id": record.clip_id,
        "video_id": record.video_id,
        "uri": record.uri,
        "start_s": record.start_s,
        "end_s": record.end_s,
        "model": record.model,
        "model_version": record.model_version,
        "tags": sorted(record.tags),
        "attributes": dict(record.attributes),
    }


def _record(payload: dict[str, Any]) -> ClipRecord:
    return ClipRecord(**{**payload, "tags": frozenset(payload["tags"])})


def encode(change: Change) -> bytes:
    vectors = np.empty((0, 0), np.float32) if change.vectors is None else change.vectors
    header = json.dumps(
        {
            "op": change.op,
            "records": [_record_json(r) for r in change.records],
            "ids": list(change.ids),
            "shape": list(vectors.shape),
        }
    ).encode()
    payload = _HEADER.pack(len(header)) + header + np.ascontiguousarray(vectors, np.float32).tobytes()
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> Change:
    (size,) = _HEADER.unpack_from(payload)
    header = json.loads(payload[_HEADER.size : _HEADER.size + size])
    rows, dim = header["shape"]
    vectors = np.frombuffer(payload[_HEADER.size + size :], np.float32).reshape(rows, dim) if rows else None
    records = tuple(_record(r) for r in header["records"])
    return Change(op=header["op"], records=records, vectors=vectors, ids=tuple(header["ids"]))


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"log-{seq:06d}.wal"


def segments(directory: Path, after: int) -> list[tuple[int, Path]]:
    """The log segments with a sequence number above `after`, oldest first."""
    found = []
    for child in directory.iterdir():
        match = _SEGMENT.match(child.name)
        if match and int(match.group(1)) > after:
            found.append((int(match.group(1)), child))
    return sorted(found)


def read_segment(path: Path, *, newest: bool) -> tuple[list[Change], int]:
    """The changes of a segment and the length of its intact part (shorter only for a torn tail)."""
    data = path.read_bytes()
    changes: list[Change] = []
    offset = 0
    while offset < len(data):
        length, crc = _FRAME.unpack_from(data, offset) if offset + _FRAME.size <= len(data) else (-1, 0)
        end = offset + _FRAME.size + length
        payload = data[offset + _FRAME.size : end]
        intact = length >= 0 and end <= len(data) and zlib.crc32(payload) == crc
        if not intact and newest and (length < 0 or end >= len(data)):
            return changes, offset  # the last frame of the newest segment, cut short: never acknowledged
        if not intact:
            raise IndexFormatError(f"{path}: damaged change record at byte {offset}")
        try:
            changes.append(_decode(payload))
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"{path}: unreadable change record at byte {offset} ({exc})") from exc
        offset = end
    return changes, offset


def replay(directory: Path, after: int) -> Iterator[tuple[int, Change]]:
    """Every logged change after segment `after`, in order (a torn tail of the newest is skipped)."""
    found = segments(directory, after)
    for position, (seq, path) in enumerate(found):
        changes, _ = read_segment(path, newest=position == len(found) - 1)
        for change in changes:
            yield seq, change


class ChangeLog:
    """The segment being appended to (created at its first change); `append` returns once the change
    is on disk."""

    def __init__(self, directory: Path, seq: int) -> None:
        self.directory = directory
        self.seq = seq
        self.bytes = 0
        self._fd: int | None = None

    def append(self, change: Change) -> None:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._fd = os.open(segment_path(self.directory, self.seq), flags, 0o644)
            fsync_path(self.directory, directory=True)
        frame = encode(change)
        os.write(self._fd, frame)
        os.fdatasync(self._fd)
        self.bytes += len(frame)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def truncate_torn_tail(directory: Path, after: int) -> None:
    """Cut a torn frame off the newest segment, so that appends start on a frame boundary."""
    found = segments(directory, after)
    if found:
        path = found[-1][1]
        _, intact = read_segment(path, newest=True)
        if intact < path.stat().st_size:
            os.truncate(path, intact)
            fsync_path(path)


def last_seq(directory: Path, default: int) -> int:
    """The sequence number of the newest segment, or `default` if there is none."""
    found = segments(directory, 0) if directory.is_dir() else []
    return max(default, found[-1][0]) if found else default


def pending_bytes(directory: Path, after: int) -> int:
    """The size of the segments not yet folded into the snapshot."""
    return sum(path.stat().st_size for _, path in segments(directory, after))


def drop_segments(directory: Path, upto: int) -> None:
    """Remove the segments folded into a snapshot (sequence numbers <= `upto`)."""
    for seq, path in segments(directory, 0):
        if seq <= upto:
            path.unlink(missing_ok=True)


@dataclass
class Replay:
    """The FAISS side of a replay, applied at its end: ids are never reused, so only the net effect
    matters (an id added then removed within the replay never reaches FAISS)."""

    added: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    removed: list[np.ndarray] = field(default_factory=list)

    def net(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ids and vectors to add, and the ids (of the snapshot) to remove."""
        ids = np.concatenate([i for i, _ in self.added]) if self.added else np.empty(0, np.int64)
        vectors = np.concatenate([v for _, v in self.added]) if self.added else np.empty((0, 0), np.float32)
        removed = np.concatenate(self.removed) if self.removed else np.empty(0, np.int64)
        kept = ~np.isin(ids, removed)
        return ids[kept], vectors[kept], removed[~np.isin(removed, ids)]

