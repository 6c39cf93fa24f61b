"""Shot cuts with PySceneDetect's content detector, on frames decoded by PyAV.

Every frame is decoded (the detector compares neighbours) but converted only at a small size, as
PySceneDetect itself does, which is what the default threshold is tuned for. Frames are timed by
their own timestamps, so cuts in variable-frame-rate video land at the right second.
"""

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.video.stream

from vidsearch.errors import ConfigError, MissingDependencyError
from vidsearch.video.probing import video_stream
from vidsearch.video.source import Deadline, VideoSource, open_input, source_name
from vidsearch.video.timeline import demux_packets, packet_time

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShotSpec:
    """Content-detector settings: PySceneDetect's threshold and shortest shot, and the analysis width."""

    threshold: float = 27.0
    min_shot_s: float = 0.6
    analysis_width: int = 256
    time_limit_s: float = 600.0

    def __post_init__(self) -> None:
        if self.threshold <= 0 or self.min_shot_s < 0 or self.analysis_width < 16 or self.time_limit_s <= 0:
            raise ConfigError(f"shots: threshold and time limit must be positive, min_shot_s ≥ 0 and "
                              f"analysis_width ≥ 16; got {self}")


def _frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, deadline: Deadline
) -> Iterator[av.VideoFrame]:
    """Every frame that decodes, broken packets skipped, then what the decoder still holds."""
    for packet in itertools.chain(demux_packets(container, stream, deadline), [None]):
        try:
            yield from stream.codec_context.decode(packet)
        except av.error.FFmpegError:
            where = "at the end" if packet is None else f"at pts {packet_time(packet, deadline.name)}"
            logger.debug("%s: skipping a broken packet %s", deadline.name, where)


def detect_cuts(source: VideoSource, spec: ShotSpec | None = None) -> list[float]:
    """Times (seconds from the first frame) at which a new shot starts; pass them to `segment`."""
    try:
        from scenedetect.common import FrameTimecode, Timecode
        from scenedetect.detectors import ContentDetector
    except ImportError as exc:
        raise MissingDependencyError(
            f"shot detection needs PySceneDetect: pip install 'scenedetect>=0.7' ({exc})"
        ) from None
    spec = spec or ShotSpec()
    deadline = Deadline(source_name(source), spec.time_limit_s)
    detector = ContentDetector(threshold=spec.threshold, min_scene_len=float(spec.min_shot_s))
    cuts = []
    last = None
    with open_input(source, deadline) as container:
        stream = video_stream(container, deadline.name)
        ctx = stream.codec_context
        time_base = Fraction(stream.time_base.numerator, stream.time_base.denominator)  # type: ignore[union-attr]
        rate = stream.average_rate or 25
        start = stream.start_time
        ctx.thread_type = "AUTO"
        height = max(2, round(ctx.height * spec.analysis_width / max(ctx.width, 1) / 2) * 2)
        for frame in _frames(container, stream, deadline):
            if frame.pts is not None:
                start = frame.pts if start is None else start  # the stream's start, else its first frame
                image = frame.to_ndarray(width=spec.analysis_width, height=height, format="bgr24")
                last = FrameTimecode(Timecode(frame.pts - start, time_base), fps=rate)
                cuts.extend(detector.process_frame(last, image))
    if last is not None:
        cuts.extend(detector.post_process(last))
    return sorted({float(c.seconds) for c in cuts if c.seconds > 0})
