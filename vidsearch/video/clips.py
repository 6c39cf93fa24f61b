"""Cutting a video into clips: fixed windows, optionally within shots.

The rule, in one place:

- Shot cuts (if given) split the video into sections; without cuts the whole video is one section.
- Within a section, windows of `length_s` start every `stride_s` seconds from the section's start.
- A section no longer than one window is one clip, however short.
- Otherwise the first window that would run past the section's end is cut at that end (the tail);
  the tail is kept if it is at least `min_tail_s` long and dropped if shorter. Later windows, which
  the tail contains, are not made.

Times are seconds from the first frame of the video; clips are numbered 0, 1, … in order of start.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vidsearch.errors import ConfigError, VideoDecodeError

if TYPE_CHECKING:
    from vidsearch.video.probing import VideoInfo

# Tolerance for comparing window boundaries, far below any frame interval.
_EPS = 1e-6


@dataclass(frozen=True)
class Clip:
    """A span of a video that becomes one model input."""

    index: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def centre_s(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class ClipSpec:
    """Fixed-window segmentation: window length, stride (= length: no overlap) and the tail rule."""

    length_s: float = 10.0
    stride_s: float | None = None
    min_tail_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.length_s > 0:
            raise ConfigError(f"clips: length_s must be positive, got {self.length_s}")
        if self.stride_s is not None and not 0 < self.stride_s <= self.length_s:
            raise ConfigError(f"clips: stride_s must be in (0, length_s], got {self.stride_s}")
        if self.min_tail_s < 0:
            raise ConfigError(f"clips: min_tail_s must not be negative, got {self.min_tail_s}")

    @property
    def stride(self) -> float:
        return self.length_s if self.stride_s is None else self.stride_s

    def max_clips(self, duration_s: float) -> int:
        """The most clips `segment` can make of a video this long without shot cuts, known before cutting
        (so a server can refuse a request that would make millions)."""
        if duration_s <= self.length_s:
            return 1
        return math.floor((duration_s - self.length_s) / self.stride + _EPS) + 2


def _windows(start: float, end: float, spec: ClipSpec) -> list[tuple[float, float]]:
    """The windows of one section [start, end], by the rule in the module docstring."""
    if end - start <= spec.length_s + _EPS:
        return [(start, end)]
    spans: list[tuple[float, float]] = []
    k = 0
    while start + k * spec.stride + spec.length_s <= end + _EPS:
        window_start = start + k * spec.stride
        spans.append((window_start, min(window_start + spec.length_s, end)))
        k += 1
    tail_start = start + k * spec.stride
    if spans[-1][1] < end - _EPS and end - tail_start >= spec.min_tail_s - _EPS:
        spans.append((tail_start, end))
    return spans


def _sections(duration: float, cuts: Sequence[float]) -> list[tuple[float, float]]:
    inner = sorted({c for c in cuts if _EPS < c < duration - _EPS})
    bounds = [0.0, *inner, duration]
    return list(itertools.pairwise(bounds))


def segment(info: "VideoInfo", spec: ClipSpec, cuts: Sequence[float] = ()) -> list[Clip]:
    """Clips of the video `info` describes, within the sections that the shot `cuts` (seconds) make."""
    if not info.has_video:
        reason = "audio only, no video stream" if info.has_audio else "no video stream"
        raise VideoDecodeError(info.source, reason)
    if info.frame_count == 0 or info.duration_s <= 0:
        raise VideoDecodeError(info.source, "zero duration: the video stream has no frames")
    spans = [w for a, b in _sections(info.duration_s, cuts) for w in _windows(a, b, spec)]
    return [Clip(i, a, b) for i, (a, b) in enumerate(spans)]
