"""The frame timeline of a video stream, read by demuxing alone (no decoding), and the frame-choice rule.

Demuxing costs well under 1 % of decoding, so both decoders (PyAV here, DALI in `dali.py`) first
read every packet's timestamps. That gives the exact frame count and duration even where the
container states none (WebM), tells variable frame rate apart, and lets the frame choice below be
made before any pixel is decoded. It is the one place where a timestamp becomes a frame:

    The frame for time t is the decoded frame whose presentation interval [pts_i, pts_i+1) contains
    t, where times count from the first frame (time 0) and the last frame's interval ends at the
    duration. Times before 0 take the first frame, times at or past the duration the last one.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.video.stream
import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import VideoDecodeError
from vidsearch.video.source import Deadline

logger = logging.getLogger(__name__)

# Relative spread of frame intervals (beyond one tick of rounding) above which a stream counts as
# variable frame rate: constant-rate muxers round intervals by at most one tick.
_VFR_TOLERANCE = 0.01


@dataclass(frozen=True)
class Timeline:
    """Every frame packet of one video stream, in decode order, with its presentation time."""

    pts: NDArray[np.int64]  # presentation timestamps in stream ticks, decode order
    keyframe: NDArray[np.bool_]  # packet starts a group of pictures (decoding may begin here)
    time_base: Fraction
    frame_duration: int  # ticks of the last frame (its own duration, or the median interval)

    @property
    def frame_count(self) -> int:
        return int(self.pts.size)

    @property
    def start_pts(self) -> int:
        return int(self.pts.min()) if self.pts.size else 0

    @property
    def duration_s(self) -> float:
        if not self.pts.size:
            return 0.0
        return float((int(self.pts.max()) + self.frame_duration - self.start_pts) * self.time_base)

    def presentation_order(self) -> NDArray[np.int64]:
        """Packet indices sorted by presentation time (frame number → packet index)."""
        return np.argsort(self.pts, kind="stable")

    def times_s(self) -> NDArray[np.float64]:
        """Presentation times of the frames in presentation order, in seconds from the first frame."""
        ordered = np.sort(self.pts)
        return (ordered - self.start_pts).astype(np.float64) * float(self.time_base)

    def gop_ids(self) -> NDArray[np.int64]:
        """For each packet, the group of pictures it belongs to (-1 before the first keyframe)."""
        return np.cumsum(self.keyframe.astype(np.int64)) - 1

    def variable_frame_rate(self) -> bool:
        if self.pts.size < 3:
            return False
        intervals = np.diff(np.sort(self.pts))
        median = float(np.median(intervals))
        return float(intervals.max() - intervals.min()) > _VFR_TOLERANCE * median + 1

    def average_fps(self) -> float:
        duration = self.duration_s
        return self.frame_count / duration if duration > 0 else 0.0


def frame_numbers(times_s: NDArray[np.float64], timestamps: list[float]) -> list[int]:
    """Frame numbers (presentation order) chosen for `timestamps`, by the rule in the module docstring."""
    chosen = np.searchsorted(times_s, np.asarray(timestamps, dtype=np.float64), side="right") - 1
    return [int(n) for n in np.clip(chosen, 0, len(times_s) - 1)]


def packet_time(packet: av.Packet, name: str) -> int:
    """A packet's presentation timestamp (its decoding timestamp where the container gives no other)."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    if stamp is None:
        raise VideoDecodeError(name, "video packets carry no timestamps")
    return int(stamp)


def demux_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, deadline: Deadline
) -> Iterator[av.Packet]:
    """The stream's packets in decode order, checking the deadline on each.

    A container that cannot be read past some point (cut off, damaged beyond the demuxer's resync)
    ends there: what came before is used, and a warning says where it stopped.
    """
    packets = container.demux(stream)
    while True:
        deadline.check()
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            logger.warning("%s: the container cannot be read further (%s); using what came before",
                           deadline.name, exc)
            return
        if packet.size:  # skip the empty flush packet at the end
            yield packet


def scan_timeline(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    deadline: Deadline,
    on_packet: Callable[[av.Packet], None] | None = None,
) -> Timeline:
    """Demux every packet of `stream` (without decoding) and collect its timestamps. `on_packet` sees
    each packet on the way, so a caller that needs more from the file (the probe: the first frame)
    gets it in the same pass."""
    pts: list[int] = []
    keyframe: list[bool] = []
    last_duration = 0
    for packet in demux_packets(container, stream, deadline):
        if on_packet is not None:
            on_packet(packet)
        stamp = packet_time(packet, deadline.name)
        pts.append(stamp)
        keyframe.append(packet.is_keyframe)
        last_duration = packet.duration or 0
    pts_array = np.asarray(pts, dtype=np.int64)
    if last_duration <= 0:
        last_duration = int(np.median(np.diff(np.sort(pts_array)))) if pts_array.size > 1 else 0
    if last_duration <= 0 and stream.average_rate:
        last_duration = max(1, round(1 / (stream.average_rate * stream.time_base)))  # type: ignore[operator]
    time_base = stream.time_base
    if time_base is None:
        raise VideoDecodeError(deadline.name, "the video stream has no time base")
    return Timeline(
        pts=pts_array,
        keyframe=np.asarray(keyframe, dtype=np.bool_),
        time_base=Fraction(time_base.numerator, time_base.denominator),
        frame_duration=last_duration,
    )
