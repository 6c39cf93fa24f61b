"""Which moments of a clip become model input: frame sampling by timestamp, written once as data.

Sampling picks times, not frame numbers, so variable-frame-rate video samples the right moments; the
timeline (`timeline.py`) then turns each time into the frame showing at that time. Two rules:

- ``segment_middle`` (ViCLIP): cut the clip into `frames` equal segments and take each segment's
  middle, t_i = start + (i + 1/2) · duration / frames.
- ``segment_middle_frame`` (InternVideo2's evaluation): the clip's V = round(duration · fps) frames
  are cut into n = min(frames, V) index ranges [a_i, a_{i+1}) with a_i = ⌊i·V/n⌋, and frame
  (a_i + a_{i+1} − 1) // 2 of each is taken (the frame at or just before the middle), placed at the
  middle of its display interval; fewer than `frames` ranges repeat the last frame.
- ``centre_stride`` (VideoMAE V2): `frames` times `stride_frames` frames apart (converted to seconds
  with the video's average frame rate), centred on the clip's centre,
  t_i = centre + (i − (frames − 1)/2) · stride_frames / fps, clamped into the clip; a clip shorter
  than the span repeats its edge frames.
"""

from dataclasses import dataclass
from typing import Literal

from vidsearch.errors import ConfigError
from vidsearch.video.clips import Clip

SamplingMode = Literal["segment_middle", "segment_middle_frame", "centre_stride"]
_MODES = ("segment_middle", "segment_middle_frame", "centre_stride")

# How far inside the clip's end a clamped time is placed, so that it falls in the clip's last frame
# rather than on the boundary that belongs to the next clip.
_END_MARGIN_S = 1e-6


@dataclass(frozen=True)
class SamplingRule:
    """How many frames a clip gives, and where they lie in it."""

    frames: int
    mode: SamplingMode = "segment_middle"
    stride_frames: int | None = None  # only for centre_stride

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"sampling: frames must be at least 1, got {self.frames}")
        if self.mode in ("segment_middle", "segment_middle_frame") and self.stride_frames is not None:
            raise ConfigError(f"sampling: {self.mode} takes no stride_frames")
        if self.mode == "centre_stride" and (self.stride_frames is None or self.stride_frames < 1):
            raise ConfigError(f"sampling: centre_stride needs stride_frames ≥ 1, got {self.stride_frames}")
        if self.mode not in _MODES:
            raise ConfigError(f"sampling: unknown mode {self.mode!r} ({', '.join(_MODES)})")


def sample_timestamps(clip: Clip, rule: SamplingRule, fps: float) -> list[float]:
    """The times (seconds from the start of the video) whose frames make up `clip`'s input."""
    n = rule.frames
    if rule.mode == "segment_middle":
        step = clip.duration_s / n
        return [clip.start_s + (i + 0.5) * step for i in range(n)]
    if fps <= 0:
        raise ConfigError(f"sampling: {rule.mode} needs a positive frame rate, got {fps}")
    last = max(clip.start_s, clip.end_s - _END_MARGIN_S)
    if rule.mode == "segment_middle_frame":
        frames = max(1, round(clip.duration_s * fps))
        ranges = min(n, frames)
        bounds = [i * frames // ranges for i in range(ranges + 1)]
        picked = [(bounds[i] + bounds[i + 1] - 1) // 2 for i in range(ranges)]
        picked += [picked[-1]] * (n - ranges)
        return [min(clip.start_s + (index + 0.5) / fps, last) for index in picked]
    step = (rule.stride_frames or 1) / fps
    return [min(max(clip.centre_s + (i - (n - 1) / 2) * step, clip.start_s), last) for i in range(n)]
