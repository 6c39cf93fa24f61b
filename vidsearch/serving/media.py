"""Video inputs of requests → clips → embeddings, by the same rules the batch jobs use.

The input (encoded bytes, or an allowed path) is probed, cut into clips (`vidsearch.video.segment`),
decoded (planned from the probe's timeline: the input is demuxed once) and preprocessed by the
model's own spec (`read_clips`), and handed to the runtime as they are decoded (the runtime runs them
in batches of the model's limit, so a long video is never held in memory whole). Decoding is
bounded by the request's deadline. A runtime that decodes on its server (Triton with the
`viclip_video_embed` ensemble) is sent the encoded file and each clip's frame numbers instead,
chosen by the same rules.
"""

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, LimitExceededError, RequestError, VideoDecodeError
from vidsearch.runtime.base import Runtime
from vidsearch.runtime.facts import ModelFacts
from vidsearch.serving.deadline import RequestDeadline
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.settings import LimitSettings, VideoSettings
from vidsearch.video import (
    Clip,
    ClipSpec,
    Probed,
    ReadOptions,
    VideoSource,
    probe_timeline,
    read_clips,
    segment,
)
from vidsearch.video.dali import encoded_clip_frames

# per-clip costs of `request_bytes`, measured roughly on CPython 3.12: a sampled frame's entries in the
# decoding plan, one output value in numpy and as a Python float in the response, a clip's objects
_PLAN_BYTES_PER_FRAME = 128
_BYTES_PER_OUTPUT = 40
_CLIP_BYTES = 512

ModelCall = Callable[[Iterable[NDArray[np.float32]], float], NDArray[np.float32]]
"""A runtime method: clip tensors and the time left → one output row per clip."""


@dataclass(frozen=True)
class ClipOutputs:
    """One output row per clip of a video input (embeddings or class scores)."""

    clips: tuple[Clip, ...]
    values: NDArray[np.float32]
    duration_s: float


def _seconds(value: float, what: str, minimum: float) -> float:
    if not math.isfinite(value):
        raise RequestError(f"clip {what} must be a finite number of seconds, got {value}")
    if value < minimum:
        raise RequestError(f"clip {what} {value:g} s is below the minimum of {minimum:g} s "
                           "(limits.min_clip_s)")
    return value


def clip_spec(settings: VideoSettings, limits: LimitSettings, options: pb.ClipOptions | None = None
              ) -> ClipSpec:
    """The server's clip windows, or those a request asks for (RequestError below `limits.min_clip_s`)."""
    length = options.length_s if options is not None and options.length_s else settings.clip_length_s
    stride = options.stride_s if options is not None and options.stride_s else settings.clip_stride_s
    length = _seconds(length, "length", limits.min_clip_s)
    if stride is not None:
        stride = _seconds(stride, "stride", limits.min_clip_s)
    return ClipSpec(length_s=length, stride_s=min(stride, length) if stride else None)


def within(clips: list[Clip], start_s: float, end_s: float) -> list[Clip]:
    """The clips of the span [start_s, end_s) (end 0: to the end), renumbered; RequestError if none."""
    if start_s < 0 or end_s < 0 or (end_s and end_s <= start_s):
        raise RequestError(f"the span [{start_s}, {end_s}) is empty or negative")
    chosen = [c for c in clips if c.end_s > start_s and (not end_s or c.start_s < end_s)]
    if not chosen:
        raise RequestError(f"the span [{start_s}, {end_s}) lies outside the video")
    return [Clip(i, max(c.start_s, start_s), min(c.end_s, end_s) if end_s else c.end_s)
            for i, c in enumerate(chosen)]


@contextmanager
def _deadline_first(deadline: RequestDeadline) -> Iterator[None]:
    """A decode that failed because the request's time ran out is a passed deadline, not a bad video."""
    try:
        yield
    except VideoDecodeError:
        deadline.remaining()  # raises DeadlineExceededError when that is what happened
        raise


def request_bytes(clips: int, model: ModelFacts) -> int:
    """What running `clips` through `model` holds at once besides its decoded frames, known before
    decoding: a batch of input tensors (and its stacked copy), and per clip its sampling plan, its
    output row (as the response's Python floats too) and its bookkeeping."""
    spec = model.preprocess
    assert spec is not None
    height, width = spec.size
    batch = 2 * min(clips, model.batch) * spec.frames * 3 * height * width * 4
    per_clip = spec.frames * _PLAN_BYTES_PER_FRAME + model.width * _BYTES_PER_OUTPUT + _CLIP_BYTES
    return batch + clips * per_clip


class VideoModels:
    """Runs video inputs through the runtime's vision tower or classifier, within the request limits."""

    def __init__(self, runtime: Runtime, limits: LimitSettings) -> None:
        self._runtime = runtime
        self._limits = limits

    def segment(self, source: VideoSource, spec: ClipSpec,
                deadline: RequestDeadline) -> tuple[list[Clip], Probed]:
        """The clips of the input and its probe (whose timeline `embed` and `classify` decode by);
        RequestError when it would make more than `max_clips_per_request`."""
        with _deadline_first(deadline):
            probed = probe_timeline(source, time_limit_s=deadline.remaining())
        info = probed.info
        most = spec.max_clips(info.duration_s)
        if most > self._limits.max_clips_per_request:
            limit = self._limits.max_clips_per_request
            raise RequestError(f"{info.duration_s:.1f} s in clips of {spec.length_s:g} s every "
                               f"{spec.stride:g} s would make up to {most} clips; the limit is {limit} "
                               "(limits.max_clips_per_request): ask for longer clips or a larger stride")
        deadline.remaining()
        return segment(info, spec), probed

    def embed(self, source: VideoSource, clips: list[Clip], probed: Probed,
              deadline: RequestDeadline) -> ClipOutputs:
        """L2-normalised embeddings of `clips` of the input (the ViCLIP vision tower)."""
        model = self._model(self._runtime.facts.vision, "video embeddings (viclip_vision)")
        if self._runtime.decodes_on_server:
            return self._embed_on_server(source, clips, probed, model, deadline)
        return self._run(source, clips, probed, model, self._runtime.embed_video, deadline)

    def classify(self, source: VideoSource, clips: list[Clip], probed: Probed,
                 deadline: RequestDeadline) -> ClipOutputs:
        """Class scores before softmax of `clips` (the VideoMAE V2 classifier)."""
        model = self._model(self._runtime.facts.classifier, "classification (videomae_v2)")
        return self._run(source, clips, probed, model, self._runtime.classify, deadline)

    def _model(self, model: ModelFacts | None, what: str) -> ModelFacts:
        if model is None or model.preprocess is None:
            raise ConfigError(f"this server's model repository has no model for {what}")
        return model

    def _check_bytes(self, clips: int, model: ModelFacts, encoded: int = 0) -> int:
        """The bytes the request would hold; RequestError when that passes `max_request_bytes`.
        `encoded`: the bytes of the file sent to a server that decodes, once per clip of a batch."""
        needed = request_bytes(clips, model) + min(clips, model.batch) * encoded
        if needed > self._limits.max_request_bytes:
            raise RequestError(f"{clips} clips through {model.name} need about {needed >> 20} MiB; the "
                               f"limit is {self._limits.max_request_bytes >> 20} MiB per request "
                               "(limits.max_request_bytes): ask for fewer or longer clips")
        return needed

    def _embed_on_server(self, source: VideoSource, clips: list[Clip], probed: Probed, model: ModelFacts,
                         deadline: RequestDeadline) -> ClipOutputs:
        """Send the encoded file and each clip's frame numbers; the runtime's server decodes them."""
        spec = model.preprocess
        assert spec is not None
        self._check_bytes(len(clips), model)
        with _deadline_first(deadline):
            data, _, frames = encoded_clip_frames(source, clips, spec, deadline.remaining(), probed)
            self._check_bytes(len(clips), model, len(data.getbuffer()))
            values = self._runtime.embed_encoded(data.getvalue(), frames, deadline.remaining(), data.name)
        return ClipOutputs(tuple(clips), values, probed.info.duration_s)

    def _run(self, source: VideoSource, clips: list[Clip], probed: Probed, model: ModelFacts,
             run: ModelCall, deadline: RequestDeadline) -> ClipOutputs:
        """Decode and preprocess the clips by the model's spec, and run them through the model."""
        spec = model.preprocess
        assert spec is not None
        budget = self._limits.max_request_bytes
        needed = self._check_bytes(len(clips), model)
        # the decoded frames the open clips hold are counted as they are decoded, against what is left
        options = ReadOptions(time_limit_s=deadline.remaining(), time_limit_per_video_s=0.0,
                              max_held_bytes=budget - needed)
        done: list[Clip] = []

        def tensors() -> Iterator[NDArray[np.float32]]:
            for clip, tensor in read_clips(source, clips, spec, options, probed.timeline):
                done.append(clip)
                yield tensor

        try:
            with _deadline_first(deadline):
                values = run(tensors(), deadline.remaining())
        except LimitExceededError as exc:
            raise LimitExceededError(f"{exc}; with the rest of the request that passes its limit of "
                                     f"{budget >> 20} MiB (limits.max_request_bytes): ask for shorter "
                                     "clips or a larger stride") from None
        return ClipOutputs(tuple(done), values, probed.info.duration_s)
