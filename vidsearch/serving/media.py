"""Video inputs of requests → clips → embeddings, by the same rules the batch jobs use.

The input (encoded bytes, or an allowed path) is probed, cut into clips (`vidsearch.video.segment`),
decoded and preprocessed by the model's own spec (`read_clips`), and handed to the runtime as they
are decoded (the runtime runs them in batches of the model's limit, so a long video is never held
in memory whole). Decoding is bounded by the request's deadline.
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, RequestError, VideoDecodeError
from vidsearch.runtime.base import Runtime
from vidsearch.runtime.facts import ModelFacts
from vidsearch.serving.deadline import RequestDeadline
from vidsearch.serving.proto.vidsearch.v1 import search_pb2 as pb
from vidsearch.serving.settings import VideoSettings
from vidsearch.video import Clip, ClipSpec, ReadOptions, VideoSource, probe, read_clips, segment

ModelCall = Callable[[Iterable[NDArray[np.float32]], float], NDArray[np.float32]]
"""A runtime method: clip tensors and the time left → one output row per clip."""


@dataclass(frozen=True)
class ClipOutputs:
    """One output row per clip of a video input (embeddings or class scores)."""

    clips: tuple[Clip, ...]
    values: NDArray[np.float32]
    duration_s: float


def clip_spec(settings: VideoSettings, options: pb.ClipOptions | None = None) -> ClipSpec:
    """The server's clip windows, or those a request asks for."""
    length = options.length_s if options is not None and options.length_s else settings.clip_length_s
    stride = options.stride_s if options is not None and options.stride_s else settings.clip_stride_s
    if length < 0 or (stride is not None and stride < 0):
        raise RequestError(f"clip length and stride must be positive, got {length}, {stride}")
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


class VideoModels:
    """Runs video inputs through the runtime's vision tower or classifier."""

    def __init__(self, runtime: Runtime, settings: VideoSettings) -> None:
        self._runtime = runtime
        self._settings = settings

    def segment(self, source: VideoSource, spec: ClipSpec,
                deadline: RequestDeadline) -> tuple[list[Clip], float]:
        with _deadline_first(deadline):
            info = probe(source, time_limit_s=deadline.remaining())
        return segment(info, spec), info.duration_s

    def embed(self, source: VideoSource, clips: list[Clip], duration_s: float,
              deadline: RequestDeadline) -> ClipOutputs:
        """L2-normalised embeddings of `clips` of the input (the ViCLIP vision tower)."""
        model = self._model(self._runtime.facts.vision, "video embeddings (viclip_vision)")
        return self._run(source, clips, duration_s, model, self._runtime.embed_video, deadline)

    def classify(self, source: VideoSource, clips: list[Clip], duration_s: float,
                 deadline: RequestDeadline) -> ClipOutputs:
        """Class scores before softmax of `clips` (the VideoMAE V2 classifier)."""
        model = self._model(self._runtime.facts.classifier, "classification (videomae_v2)")
        return self._run(source, clips, duration_s, model, self._runtime.classify, deadline)

    def _model(self, model: ModelFacts | None, what: str) -> ModelFacts:
        if model is None or model.preprocess is None:
            raise ConfigError(f"this server's model repository has no model for {what}")
        return model

    def _run(self, source: VideoSource, clips: list[Clip], duration_s: float, model: ModelFacts,
             run: ModelCall, deadline: RequestDeadline) -> ClipOutputs:
        """Decode and preprocess the clips by the model's spec, and run them through the model."""
        spec = model.preprocess
        assert spec is not None
        options = ReadOptions(time_limit_s=deadline.remaining(), time_limit_per_video_s=0.0)
        done: list[Clip] = []

        def tensors() -> Iterator[NDArray[np.float32]]:
            for clip, tensor in read_clips(source, clips, spec, options):
                done.append(clip)
                yield tensor

        with _deadline_first(deadline):
            values = run(tensors(), deadline.remaining())
        return ClipOutputs(tuple(done), values, duration_s)
