"""Clip embeddings and end markers → finished videos → shard rows, committed every `shard_clips` clips.

Both engines feed this the same events, so what is written does not depend on the engine.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vidsearch.index.base import clip_id
from vidsearch.index.parquet import ShardRows
from vidsearch.jobs.assemble import Assembler, VideoResult
from vidsearch.jobs.decoding import Failure, VideoEnd
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.ledger import Ledger
from vidsearch.jobs.progress import JobProgress
from vidsearch.video import Clip


@dataclass(frozen=True)
class ShardFormat:
    """What every row of the job carries besides its clip."""

    model: str
    model_checksum: str
    preprocess: str  # the Preprocess digest
    float16: bool


class JobOutput:
    """Buffers finished videos (at most about `shard_clips` clips) and commits them together."""

    def __init__(self, ledger: Ledger, items: dict[str, WorkItem], shard: ShardFormat, shard_clips: int,
                 dim: int, progress: JobProgress) -> None:
        self._ledger = ledger
        self._items = items
        self._shard = shard
        self._shard_clips = shard_clips
        self._assembler = Assembler(dim)
        self._progress = progress
        self._videos: list[VideoResult] = []
        self._clips = 0
        self.videos_done = 0
        self.clips_done = 0
        self.failed = 0

    def clip(self, video_id: str, clip: Clip, vector: NDArray[np.float32]) -> None:
        self.clips(video_id, [clip], vector[None, :])

    def clips(self, video_id: str, clips: list[Clip], vectors: NDArray[np.float32]) -> None:
        """Several clips of one video with their embeddings ([len(clips), dim]), at once."""
        self._assembler.add(video_id, clips, vectors)
        self._drain()

    def end(self, end: VideoEnd) -> None:
        self._assembler.end(end)
        self._drain()

    def uri(self, video_id: str) -> str:
        return self._items[video_id].uri

    def _drain(self) -> None:
        for result in self._assembler.take():
            self._add(result)
            self._progress.advance(1, len(result.clips))

    def _add(self, result: VideoResult) -> None:
        self._videos.append(result)
        self._clips += len(result.clips)
        self.videos_done += 1
        self.clips_done += len(result.clips)
        self.failed += result.failure is not None
        if self._clips >= self._shard_clips:
            self.flush()

    def flush(self) -> None:
        """Commit what is buffered (also at the end of a run)."""
        if not self._videos:
            return
        failures: list[Failure] = [v.failure for v in self._videos if v.failure is not None]
        self._ledger.commit(self._rows(), [v.video_id for v in self._videos], failures,
                            float16=self._shard.float16, model_checksum=self._shard.model_checksum)
        self._videos, self._clips = [], 0

    def _rows(self) -> ShardRows | None:
        with_clips = [v for v in self._videos if v.clips]
        if not with_clips:
            return None
        clips = [(v.video_id, c) for v in with_clips for c in v.clips]
        n = len(clips)
        return ShardRows(
            clip_ids=[clip_id(video, c.index) for video, c in clips],
            video_ids=[video for video, _ in clips],
            uris=[self._items[video].uri for video, _ in clips],
            start_s=np.array([c.start_s for _, c in clips], dtype=np.float64),
            end_s=np.array([c.end_s for _, c in clips], dtype=np.float64),
            models=[self._shard.model] * n,
            vectors=np.concatenate([v.vectors for v in with_clips]),
            preprocess=[self._shard.preprocess] * n,
        )
