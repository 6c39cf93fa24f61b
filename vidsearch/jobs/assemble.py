"""Clip embeddings back into whole videos: both engines batch clips across videos, and a video may be
committed only once all its clips are embedded (the unit of exactly-once is the video).

Events may arrive in any order (Ray Data does not keep it): a video is complete when its `VideoEnd`
has come and as many clips as it counted. A fatal end drops the clips already in and any still to come.
"""

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from vidsearch.jobs.decoding import Failure, VideoEnd
from vidsearch.video import Clip


@dataclass(frozen=True)
class VideoResult:
    """A finished video: its clips in order with their embeddings, and its failure if any."""

    video_id: str
    clips: tuple[Clip, ...]
    vectors: NDArray[np.float32]  # [len(clips), dim]
    failure: Failure | None


@dataclass
class _Pending:
    clips: dict[int, tuple[Clip, NDArray[np.float32]]] = field(default_factory=dict)
    end: VideoEnd | None = None


class Assembler:
    """Collects clip embeddings and end markers per video; hands out the videos that are complete."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._pending: dict[str, _Pending] = {}
        self._dropped: set[str] = set()
        self._complete: list[VideoResult] = []

    def add(self, video_id: str, clips: list[Clip], vectors: NDArray[np.float32]) -> None:
        """Clips of one video and their embeddings ([len(clips), dim])."""
        if video_id not in self._dropped:
            pending = self._pending.setdefault(video_id, _Pending()).clips
            pending.update((clip.index, (clip, vector)) for clip, vector in zip(clips, vectors, strict=True))
            self._check(video_id)

    def end(self, end: VideoEnd) -> None:
        if end.video_id in self._dropped:
            return  # a late end of a video already failed (its decoding process died)
        self._pending.setdefault(end.video_id, _Pending()).end = end
        self._check(end.video_id)

    def take(self) -> list[VideoResult]:
        """The videos completed since the last call."""
        done, self._complete = self._complete, []
        return done

    def _check(self, video_id: str) -> None:
        pending = self._pending[video_id]
        end = pending.end
        if end is None or (not end.fatal and len(pending.clips) < end.clips):
            return
        del self._pending[video_id]
        if end.fatal:
            self._dropped.add(video_id)
            empty = np.empty((0, self._dim), np.float32)
            self._complete.append(VideoResult(video_id, (), empty, end.failure))
            return
        ordered = [pending.clips[i] for i in sorted(pending.clips)]
        vectors = np.stack([v for _, v in ordered]) if ordered else np.empty((0, self._dim), np.float32)
        self._complete.append(VideoResult(video_id, tuple(c for c, _ in ordered), vectors, end.failure))
