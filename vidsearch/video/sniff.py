"""Telling a video file by its content, for folders whose files are not all named by a video suffix
(`.ogg` holds Theora video as often as Vorbis audio, and exports come without suffixes).

Cheapest first: the first bytes must carry a container's signature, so images, text and archives are
passed over after one small read; then FFmpeg reads the container's header, which must declare a
video stream (an Ogg or MP4 of audio alone is passed over). Only regular files are read.
"""

import os
import stat

from vidsearch.errors import VideoDecodeError
from vidsearch.video.source import Deadline, open_input

_HEAD_BYTES = 189  # two MPEG-TS packets' sync bytes
_SNIFF_TIME_LIMIT_S = 5.0
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"OggS"),  # Ogg (Theora, VP8, Dirac video; Vorbis, Opus audio)
    (0, b"\x1a\x45\xdf\xa3"),  # EBML: Matroska, WebM
    (4, b"ftyp"),  # ISO base media: MP4, MOV, 3GP, M4A
    (4, b"moov"), (4, b"mdat"), (4, b"wide"), (4, b"free"),  # QuickTime without a file type box
    (0, b"RIFF"),  # AVI (and WAV: the header settles it)
    (0, b"FLV"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"),  # ASF: WMV
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3"),  # MPEG-1/2 video elementary stream
)  # fmt: skip


def _has_signature(head: bytes) -> bool:
    if any(head[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES):
        return True
    return len(head) > 188 and head[0] == head[188] == 0x47  # MPEG transport stream


def looks_like_video(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a regular file holding a container with a video stream."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return False
    if not _has_signature(head):
        return False
    try:
        with open_input(path, Deadline(os.fspath(path), _SNIFF_TIME_LIMIT_S)) as container:
            return bool(container.streams.video)
    except VideoDecodeError:
        return False
