"""Reading clips with PyAV: one pass through the file, decoding only what sampling needs.

First the packets are demuxed without decoding (`timeline.py`) and a plan made (`plan.py`); a caller
that probed the file already hands over the probe's timeline instead, so the file is demuxed once
before decoding, not twice. Then a pass decodes only the groups of pictures that hold wanted frames,
leaves each as soon as its wanted frames are out, lets the decoder drop non-reference frames nobody
wants, and converts to RGB only the wanted frames. Frames are prepared (resized) as they come and
released once their clips are yielded, so memory does not grow with the length of the video.

Damage is counted, never papered over: a packet that fails to decode, or a frame the decoder marks
corrupt, leaves the sampled times that fall on it without a frame, and a clip missing any frame is an
error (`on_clip_error="raise"`) or left out and recorded in `stats.failed_clips` (`"skip"`).
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import av
import av.container
import av.video.stream
import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, LimitExceededError, VideoDecodeError
from vidsearch.video.clips import Clip
from vidsearch.video.plan import DecodePlan, given_frames, make_plan, plan_frames
from vidsearch.video.preprocess import Preprocess
from vidsearch.video.probing import MAX_PIXELS, video_stream
from vidsearch.video.sampling import SamplingRule
from vidsearch.video.source import Deadline, VideoSource, open_input, source_name
from vidsearch.video.timeline import Timeline, demux_packets, packet_time, scan_timeline
from vidsearch.video.transform import frame_to_rgb, normalise_clip, prepare_frame, rotate

logger = logging.getLogger(__name__)

FrameFn = Callable[[NDArray[np.uint8]], NDArray[np.uint8]]


@dataclass(frozen=True)
class ReadOptions:
    """Limits and policy for reading one input."""

    time_limit_s: float = 120.0  # for opening and scanning, and the base for decoding
    time_limit_per_video_s: float = 1.0  # decoding may take this many seconds per second of video more
    max_pixels: int = MAX_PIXELS  # larger declared frames are refused before decoding
    threads: int = 0  # decoder threads; 0 lets FFmpeg choose
    on_clip_error: Literal["raise", "skip"] = "raise"
    # decoded frames held for clips not yet complete (overlapping clips share them); 0: no limit. Over
    # it: LimitExceededError. Long clips at a short stride keep many clips open at once
    max_held_bytes: int = 0

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0 or self.time_limit_per_video_s < 0:
            raise ConfigError("read options: time limits must be positive")
        if self.on_clip_error not in ("raise", "skip"):
            raise ConfigError(f"read options: on_clip_error must be 'raise' or 'skip', "
                              f"got {self.on_clip_error!r}")


@dataclass
class DecodeStats:
    """What reading one input took and met; filled in while iterating."""

    packets: int = 0
    packets_decoded: int = 0
    packets_broken: int = 0
    frames_decoded: int = 0
    frames_corrupt: int = 0
    frames_converted: int = 0
    gops: int = 0
    gops_decoded: int = 0
    clips_read: int = 0
    peak_held_bytes: int = 0  # decoded frames held at once, waiting for their clips to complete
    failed_clips: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ClipFrames:
    """The sampled frames of one clip (uint8 RGB [H, W, 3] each) and the times of the frames used."""

    clip: Clip
    frames: tuple[NDArray[np.uint8], ...]
    frame_times_s: tuple[float, ...]


def check_declared_size(name: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse a video whose declared frames exceed `max_pixels`, before any decoding (every decoder)."""
    if width * height > max_pixels:
        raise VideoDecodeError(name, f"declared frame size {width}×{height} exceeds the limit of "
                                     f"{max_pixels} pixels")


class _ClipDecoder:
    """Decodes the planned packets, fills clip slots, and hands out clips as they complete.

    A packet that fails to decode, or a frame the decoder marks corrupt, taints the rest of its group
    of pictures in decode order: later frames there may be predicted from it, and decoders conceal
    such damage without saying so.
    """

    def __init__(self, name: str, stream: av.video.stream.VideoStream, timeline: Timeline, plan: DecodePlan,
                 prepare: FrameFn, options: ReadOptions, stats: DecodeStats) -> None:
        self.name, self.ctx, self.timeline, self.plan = name, stream.codec_context, timeline, plan
        self.prepare, self.options, self.stats = prepare, options, stats
        self.frames: list[list[NDArray[np.uint8] | None]] = [[None] * len(r.pts) for r in plan.requests]
        self.problems: list[list[str]] = [[] for _ in plan.requests]
        self.pending = [len(r.pts) for r in plan.requests]
        self.open_in_gop = Counter(plan.gop_of_pts.values())
        self.wanted = sorted(plan.slots)
        self.next_wanted = 0
        self.resolved: set[int] = set()
        self.completed: list[int] = []
        self.order = timeline.presentation_order()
        self.sorted_pts = timeline.pts[self.order]
        self.held_bytes = 0
        self.holders: dict[int, int] = {}  # pts of a held frame → clips still to hand it out

    def seconds(self, pts: int) -> float:
        return float((pts - self.timeline.start_pts) * self.timeline.time_base)

    def feed(self, number: int, packet: av.Packet) -> None:
        """Decode packet `number` (decode order) if the plan needs it."""
        pts = packet_time(packet, self.name)
        if pts != int(self.timeline.pts[number]):
            raise VideoDecodeError(self.name, "the input changed while it was being read")
        gop = int(self.plan.gop[number])
        if gop not in self.plan.decode_gops:
            return
        if gop not in self.plan.full_gops and self.open_in_gop[gop] == 0:
            return
        self.ctx.skip_frame = "DEFAULT" if pts in self.plan.slots else "NONREF"
        try:
            frames = self.ctx.decode(packet)
        except av.error.FFmpegError as exc:
            self.stats.packets_broken += 1
            self._taint(number, f"the packet at {self.seconds(pts):.3f} s failed to decode ({exc})")
            return
        self.stats.packets_decoded += 1
        for frame in frames:
            self._on_frame(frame)

    def finish(self) -> None:
        """Drain the decoder; wanted frames that never came are missing."""
        self.ctx.skip_frame = "DEFAULT"
        try:
            for frame in self.ctx.decode(None):
                self._on_frame(frame)
        except av.error.FFmpegError as exc:
            logger.debug("%s: draining the decoder failed: %s", self.name, exc)
        for pts in self.wanted[self.next_wanted :]:
            self._resolve(pts, None, "not decoded before the stream ended")

    def take_completed(self) -> list[int]:
        done, self.completed = self.completed, []
        return done

    def _taint(self, number: int, reason: str) -> None:
        """Packet `number` is damaged: it and what follows it in its GOP yield no frames."""
        gop = int(self.plan.gop[number])
        for pts, packet in self.plan.packet_of_pts.items():
            if packet >= number and int(self.plan.gop[packet]) == gop:
                self._resolve(pts, None, reason if packet == number else f"follows damage: {reason}")

    def _on_frame(self, frame: av.VideoFrame) -> None:
        self.stats.frames_decoded += 1
        pts = frame.pts
        if pts is None:
            return
        while self.next_wanted < len(self.wanted) and self.wanted[self.next_wanted] < pts:
            self._resolve(self.wanted[self.next_wanted], None, "the decoder did not return it")
            self.next_wanted += 1
        if frame.is_corrupt:
            self.stats.frames_corrupt += 1
            number = int(self.order[np.searchsorted(self.sorted_pts, pts)])
            self._taint(number, f"the decoder marked the frame at {self.seconds(pts):.3f} s corrupt")
        if pts not in self.plan.slots or pts in self.resolved:
            return
        if frame.width * frame.height > self.options.max_pixels:
            raise VideoDecodeError(self.name, f"a {frame.width}×{frame.height} frame exceeds the limit of "
                                              f"{self.options.max_pixels} pixels")
        self.stats.frames_converted += 1
        self._resolve(pts, self.prepare(rotate(frame_to_rgb(frame), frame.rotation)), "")

    def _hold(self, pts: int, image: NDArray[np.uint8]) -> None:
        """Count a frame as held until every clip it belongs to is handed out (`release`)."""
        self.holders[pts] = len(self.plan.slots[pts])
        self.held_bytes += image.nbytes
        self.stats.peak_held_bytes = max(self.stats.peak_held_bytes, self.held_bytes)
        limit = self.options.max_held_bytes
        if limit and self.held_bytes > limit:
            raise LimitExceededError(f"{self.name}: the decoded frames its clips hold at once reached "
                                     f"{self.held_bytes >> 20} MiB, over the limit of {limit >> 20} MiB")

    def release(self, request: int, frames: list[NDArray[np.uint8] | None]) -> None:
        """Clip `request` was handed out: its frames no other clip waits for are no longer held."""
        for pts, frame in zip(self.plan.requests[request].pts, frames, strict=True):
            if frame is not None and pts in self.holders:
                self.holders[pts] -= 1
                if self.holders[pts] == 0:
                    del self.holders[pts]
                    self.held_bytes -= frame.nbytes

    def _resolve(self, pts: int, image: NDArray[np.uint8] | None, problem: str) -> None:
        if pts in self.resolved:
            return
        self.resolved.add(pts)
        if image is not None:
            self._hold(pts, image)
        self.open_in_gop[self.plan.gop_of_pts[pts]] -= 1
        for request, slot in self.plan.slots[pts]:
            if image is None:
                self.problems[request].append(f"frame at {self.seconds(pts):.3f} s: {problem}")
            self.frames[request][slot] = image
            self.pending[request] -= 1
            if self.pending[request] == 0:
                self.completed.append(request)


class FrameStream:
    """The sampled frames of `clips`, clip by clip as each completes (in order of their last sampled
    time: index order for `segment()` output). Iterate once; `stats` fills in meanwhile."""

    def __init__(self, source: VideoSource, clips: Sequence[Clip], sampling: SamplingRule,
                 options: ReadOptions | None = None, prepare: FrameFn | None = None,
                 timeline: Timeline | None = None, frames: Sequence[Sequence[int]] | None = None) -> None:
        self.source = source
        self.timeline = timeline
        self.clips = list(clips)
        self.frames = frames  # chosen already (instead of `clips` and `sampling`): see `read_clips_at`
        self.sampling = sampling
        self.options = options or ReadOptions()
        self.prepare: FrameFn = prepare or (lambda image: image)
        self.name = source_name(source)
        self.stats = DecodeStats()

    def _scan(self, deadline: Deadline) -> Timeline:
        timeline = self.timeline
        if timeline is None:
            with open_input(self.source, deadline) as container:
                timeline = scan_timeline(container, self._stream(container), deadline)
        if timeline.frame_count == 0:
            raise VideoDecodeError(self.name, "zero duration: the video stream has no frames")
        return timeline

    def _stream(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        stream = video_stream(container, self.name)
        ctx = stream.codec_context
        check_declared_size(self.name, ctx.width, ctx.height, self.options.max_pixels)
        ctx.thread_type = "AUTO"
        ctx.thread_count = self.options.threads
        ctx.options = {"max_pixels": str(self.options.max_pixels)}  # decoders refuse larger frames
        return stream

    def _plan(self, timeline: Timeline) -> DecodePlan:
        if self.frames is None:
            return make_plan(timeline, self.clips, self.sampling)
        self.clips, chosen = given_frames(timeline, self.frames, self.name)
        return plan_frames(timeline, self.clips, chosen)

    def __iter__(self) -> Iterator[ClipFrames]:
        if not (self.clips if self.frames is None else self.frames):
            return
        deadline = Deadline(self.name, self.options.time_limit_s)
        timeline = self._scan(deadline)
        deadline.extend(self.options.time_limit_per_video_s * timeline.duration_s)
        plan = self._plan(timeline)
        self.stats.packets = timeline.frame_count
        self.stats.gops = int(timeline.keyframe.sum())
        self.stats.gops_decoded = len(plan.decode_gops)
        with open_input(self.source, deadline) as container:
            decoder = _ClipDecoder(self.name, self._stream(container), timeline, plan, self.prepare,
                                   self.options, self.stats)
            for number, packet in enumerate(demux_packets(container, container.streams.video[0], deadline)):
                if number >= timeline.frame_count:
                    raise VideoDecodeError(self.name, "the input changed while it was being read")
                decoder.feed(number, packet)
                yield from self._emit(decoder, plan)
            decoder.finish()
            yield from self._emit(decoder, plan)
        if self.stats.clips_read == 0:
            raise VideoDecodeError(self.name, f"none of the {len(self.clips)} clips could be decoded: "
                                              f"{self.stats.failed_clips[0][1]}")

    def _emit(self, decoder: _ClipDecoder, plan: DecodePlan) -> Iterator[ClipFrames]:
        for number in decoder.take_completed():
            request = plan.requests[number]
            problems = decoder.problems[number]
            frames = decoder.frames[number]
            decoder.frames[number] = []  # release the frames once handed out
            decoder.release(number, frames)
            if problems:
                self._fail(request.clip, f"{len(problems)} of {len(request.pts)} sampled frames missing "
                                         f"({problems[0]})")
                continue
            self.stats.clips_read += 1
            yield ClipFrames(request.clip, tuple(f for f in frames if f is not None),
                             tuple(decoder.seconds(p) for p in request.pts))

    def _fail(self, clip: Clip, reason: str) -> None:
        message = f"clip {clip.index} ({clip.start_s:.2f}–{clip.end_s:.2f} s): {reason}"
        if self.options.on_clip_error == "raise":
            raise VideoDecodeError(self.name, message)
        logger.warning("%s: skipping %s", self.name, message)
        self.stats.failed_clips.append((clip.index, message))


class ClipStream:
    """Model input for `clips`: iterating gives (clip, float32 tensor shaped `preprocess.output_shape`)."""

    def __init__(self, frames: FrameStream, preprocess: Preprocess) -> None:
        self._frames = frames
        self.preprocess = preprocess

    @property
    def stats(self) -> DecodeStats:
        return self._frames.stats

    def __iter__(self) -> Iterator[tuple[Clip, NDArray[np.float32]]]:
        for item in self._frames:
            yield item.clip, normalise_clip(list(item.frames), self.preprocess)


def _preparer(preprocess: Preprocess) -> FrameFn:
    def prepare(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
        return prepare_frame(image, preprocess)

    return prepare


def read_frames(source: VideoSource, clips: Sequence[Clip], sampling: SamplingRule,
                options: ReadOptions | None = None, timeline: Timeline | None = None) -> FrameStream:
    """The sampled frames of `clips` as decoded RGB uint8 (rotated as shown, not resized).
    `timeline`: the one `probe_timeline` read from this source, to skip demuxing it again."""
    return FrameStream(source, clips, sampling, options, timeline=timeline)


def read_clips(source: VideoSource, clips: Sequence[Clip], preprocess: Preprocess,
               options: ReadOptions | None = None, timeline: Timeline | None = None) -> ClipStream:
    """The model input for each of `clips`, streaming through `source` once (see the module docstring).
    `timeline`: the one `probe_timeline` read from this source, to skip demuxing it again."""
    stream = FrameStream(source, clips, preprocess.sampling, options, _preparer(preprocess), timeline)
    return ClipStream(stream, preprocess)


def read_clips_at(source: VideoSource, frames: Sequence[Sequence[int]], preprocess: Preprocess,
                  options: ReadOptions | None = None, timeline: Timeline | None = None) -> ClipStream:
    """`read_clips` for clips given by their frame numbers (presentation order, from 0), as
    `vidsearch.video.dali.clip_frame_numbers` computes them: what a server decoding for a client runs,
    so that its frames are the ones `read_clips` would take. A number past the end is a
    VideoDecodeError; each clip spans its first to its last frame."""
    stream = FrameStream(source, [], preprocess.sampling, options, _preparer(preprocess), timeline, frames)
    return ClipStream(stream, preprocess)
