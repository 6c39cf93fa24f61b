"""Thumbnail strips: a few frames across a clip side by side, one small JPEG, made once and kept.

Made on a clip's first request and stored in a folder next to the index directory
(`<index>.thumbnails/`), written atomically: a crash leaves the old strip or none, never half of
one. The file's name digests the clip's id, file and span, so a re-ingested clip gets a new strip.
"""

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from vidsearch.formats.atomic import write_atomic
from vidsearch.index import ClipRecord
from vidsearch.video import Clip, SamplingRule, read_frames

FRAMES = 4
HEIGHT = 90
QUALITY = 70


def strip(path: Path, start_s: float, end_s: float) -> bytes:
    """FRAMES frames from the middles of equal parts of [start_s, end_s), side by side (JPEG)."""
    item = next(iter(read_frames(path, [Clip(0, start_s, end_s)], SamplingRule(frames=FRAMES))))
    frames = [Image.fromarray(frame) for frame in item.frames]
    width = max(1, round(frames[0].width * HEIGHT / frames[0].height))
    row = np.concatenate([np.asarray(f.resize((width, HEIGHT), Image.Resampling.BILINEAR)) for f in frames],
                         axis=1)
    out = io.BytesIO()
    Image.fromarray(row).save(out, format="JPEG", quality=QUALITY, optimize=True)
    return out.getvalue()


class ThumbnailStore:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, record: ClipRecord) -> Path:
        key = f"{record.clip_id}\n{record.uri}\n{record.start_s!r}\n{record.end_s!r}"
        return self._directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.jpg"

    def get(self, record: ClipRecord, video: Path) -> bytes:
        """The clip's strip: from the store, or made from `video` (its allowed file) and stored."""
        path = self._path(record)
        if path.is_file():
            return path.read_bytes()
        data = strip(video, record.start_s, record.end_s)
        self._directory.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return data
