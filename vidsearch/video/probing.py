"""What a video input is: duration, frame rate, frame count, size, rotation, codec, audio only or not.

Counts come from demuxing every video packet (`timeline.py`), never from container headers alone,
which WebM leaves empty and damaged files get wrong. Rotation is read from the first decoded frame,
where FFmpeg attaches the container's display matrix.
"""

import logging
from dataclasses import dataclass

import av
import av.container
import av.video.stream

from vidsearch.errors import VideoDecodeError
from vidsearch.video.source import Deadline, VideoSource, open_input, source_name
from vidsearch.video.timeline import Timeline, scan_timeline

logger = logging.getLogger(__name__)

DEFAULT_PROBE_TIME_LIMIT_S = 120.0
MAX_PIXELS = 8192 * 4320  # the largest frame decoded by default (8K DCI)
# Packets decoded at most while looking for the first frame (for its rotation).
_FIRST_FRAME_PACKETS = 64
# A video that reads this much shorter than its headers claim was cut off (muxers round a frame or two).
_CUT_OFF_MIN_S = 0.5
_CUT_OFF_FRACTION = 0.02


@dataclass(frozen=True)
class VideoInfo:
    """The facts about one input that segmentation and decoding need. Sizes are as coded; a player
    shows the frame rotated counter-clockwise by `rotation` degrees (decoding applies it)."""

    source: str
    has_video: bool
    has_audio: bool
    codec: str  # FFmpeg decoder name, "" without video
    width: int
    height: int
    rotation: int  # 0, 90, 180 or 270 (counter-clockwise)
    duration_s: float
    fps: float  # average: frames / duration
    variable_frame_rate: bool
    frame_count: int
    declared_duration_s: float = 0.0  # what the headers claim (0: nothing), to tell a cut-off file

    @property
    def missing_s(self) -> float:
        """Seconds the headers promise beyond what could be read: a cut-off file (0 when complete,
        when the headers state no length, or when the gap is within muxers' rounding)."""
        gap = self.declared_duration_s - self.duration_s
        return gap if gap > max(_CUT_OFF_MIN_S, _CUT_OFF_FRACTION * self.declared_duration_s) else 0.0

    @property
    def audio_only(self) -> bool:
        return self.has_audio and not self.has_video

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown, after rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    """The first video stream, with a decoder; a `VideoDecodeError` saying why there is none."""
    if not container.streams.video:
        kind = "audio only, no video stream" if container.streams.audio else "no video stream"
        raise VideoDecodeError(name, kind)
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoDecodeError(name, "unsupported video codec (FFmpeg has no decoder for it)")
    return stream


class _FirstFrame:
    """Decodes the first packets while the timeline is scanned, until a frame comes out: its rotation
    is the video's, and the file is still read only once."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self._ctx = stream.codec_context
        self._packets = 0
        self.rotation: int | None = None

    def __call__(self, packet: av.Packet) -> None:
        if self.rotation is not None or self._packets >= _FIRST_FRAME_PACKETS:
            return
        self._packets += 1
        try:
            frames = self._ctx.decode(packet)
        except av.error.FFmpegError:
            return
        if frames:
            self.rotation = round(frames[0].rotation / 90) % 4 * 90


def _audio_only_info(container: av.container.InputContainer, name: str) -> VideoInfo:
    duration = container.duration / av.time_base if container.duration else 0.0
    return VideoInfo(name, False, bool(container.streams.audio), "", 0, 0, 0, duration, 0.0, False, 0,
                     duration)


def _declared_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """The video's length as the headers state it (the stream's own, else the container's); 0 if none."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else 0.0


def info_from(name: str, stream: av.video.stream.VideoStream, timeline: Timeline, rotation: int,
              has_audio: bool, declared_duration_s: float = 0.0) -> VideoInfo:
    ctx = stream.codec_context
    return VideoInfo(
        source=name,
        has_video=True,
        has_audio=has_audio,
        codec=ctx.name,
        width=ctx.width,
        height=ctx.height,
        rotation=rotation,
        duration_s=timeline.duration_s,
        fps=timeline.average_fps(),
        variable_frame_rate=timeline.variable_frame_rate(),
        frame_count=timeline.frame_count,
        declared_duration_s=declared_duration_s,
    )


@dataclass(frozen=True)
class Probed:
    """A probe's description and the timeline it demuxed: a decoder given the timeline plans from it
    instead of demuxing the file a second time."""

    info: VideoInfo
    timeline: Timeline | None  # None without a video stream


def probe_timeline(source: VideoSource, time_limit_s: float = DEFAULT_PROBE_TIME_LIMIT_S) -> Probed:
    """Describe `source` in one pass over its packets, keeping the timeline for the decoders.
    An input without video is described (`has_video` False), not refused; one that cannot be
    opened at all raises `VideoDecodeError`."""
    deadline = Deadline(source_name(source), time_limit_s)
    with open_input(source, deadline) as container:
        if not container.streams.video:
            return Probed(_audio_only_info(container, deadline.name), None)
        stream = video_stream(container, deadline.name)
        ctx = stream.codec_context
        first = _FirstFrame(stream) if ctx.width * ctx.height <= MAX_PIXELS else None
        timeline = scan_timeline(container, stream, deadline, first)
        rotation = first.rotation if first is not None else 0
        if rotation is None:
            if timeline.frame_count:
                logger.warning("%s: no frame decoded among the first packets; assuming no rotation",
                               deadline.name)
            rotation = 0
        info = info_from(deadline.name, stream, timeline, rotation, bool(container.streams.audio),
                         _declared_duration(container, stream))
    return Probed(info, timeline)


def probe(source: VideoSource, time_limit_s: float = DEFAULT_PROBE_TIME_LIMIT_S) -> VideoInfo:
    """Describe `source` (see `probe_timeline`, which also keeps the timeline)."""
    return probe_timeline(source, time_limit_s).info
