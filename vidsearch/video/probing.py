"""What a video input is: duration, frame rate, frame count, size, rotation, codec, audio only or not.

Counts come from demuxing every video packet (`timeline.py`), never from container headers alone,
which WebM leaves empty and damaged files get wrong. Rotation is read from the first decoded frame,
where FFmpeg attaches the container's display matrix.
"""

import logging
from dataclasses import dataclass, replace

import av
import av.container
import av.video.stream

from vidsearch.errors import VideoDecodeError
from vidsearch.video.source import Deadline, VideoSource, open_input, source_name
from vidsearch.video.timeline import Timeline, demux_packets, scan_timeline

logger = logging.getLogger(__name__)

DEFAULT_PROBE_TIME_LIMIT_S = 120.0
MAX_PIXELS = 8192 * 4320  # the largest frame decoded by default (8K DCI)
# Packets decoded at most while looking for the first frame (for its rotation).
_FIRST_FRAME_PACKETS = 64


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


def _first_frame_rotation(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, deadline: Deadline
) -> int:
    for count, packet in enumerate(demux_packets(container, stream, deadline)):
        if count >= _FIRST_FRAME_PACKETS:
            break
        try:
            frames = stream.codec_context.decode(packet)
        except av.error.FFmpegError:
            continue
        if frames:
            return round(frames[0].rotation / 90) % 4 * 90
    logger.warning("%s: no frame decoded among the first packets; assuming no rotation", deadline.name)
    return 0


def _audio_only_info(container: av.container.InputContainer, name: str) -> VideoInfo:
    duration = container.duration / av.time_base if container.duration else 0.0
    return VideoInfo(name, False, bool(container.streams.audio), "", 0, 0, 0, duration, 0.0, False, 0)


def info_from(name: str, stream: av.video.stream.VideoStream, timeline: Timeline, rotation: int,
              has_audio: bool) -> VideoInfo:
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
    )


def probe(source: VideoSource, time_limit_s: float = DEFAULT_PROBE_TIME_LIMIT_S) -> VideoInfo:
    """Describe `source`. An input without video is described (`has_video` False), not refused;
    one that cannot be opened at all raises `VideoDecodeError`."""
    deadline = Deadline(source_name(source), time_limit_s)
    with open_input(source, deadline) as container:
        if not container.streams.video:
            return _audio_only_info(container, deadline.name)
        stream = video_stream(container, deadline.name)
        timeline = scan_timeline(container, stream, deadline)
        info = info_from(deadline.name, stream, timeline, 0, bool(container.streams.audio))
    if not timeline.frame_count or info.width * info.height > MAX_PIXELS:
        return info  # nothing to decode, or a frame too large to decode just for its rotation
    with open_input(source, deadline) as container:  # again from the start: inputs need not seek
        rotation = _first_frame_rotation(container, video_stream(container, deadline.name), deadline)
    return replace(info, rotation=rotation)
