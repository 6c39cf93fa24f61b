"""The decode stage: one video → its clips' model input, then one end marker. Runs in worker processes
(local engine) or Ray tasks, so it imports only `vidsearch.video` and its arguments pickle.

Whatever goes wrong with a video ends up in its `VideoEnd` (never raised): a job must not stop for a
bad file. A clip the decoder cannot produce is left out and named in a non-fatal failure; a video
that cannot be opened, probed, segmented or read at all is a fatal failure and none of its clips count.
"""

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, VideoDecodeError
from vidsearch.jobs.inputs import WorkItem
from vidsearch.video import Clip, ClipSpec, Preprocess, ReadOptions, ShotSpec, detect_cuts, probe, read_clips
from vidsearch.video import segment as segment_video

Decoder = Literal["pyav", "dali"]


@dataclass(frozen=True)
class DecodeSettings:
    """How every video of a job is cut and read; the same for all workers."""

    preprocess: Preprocess
    clips: ClipSpec
    scenes: ShotSpec | None
    read: ReadOptions
    decoder: Decoder = "pyav"
    device_id: int = 0  # the GPU DALI decodes on


@dataclass(frozen=True)
class Failure:
    """One line of the failures file."""

    video_id: str
    uri: str
    error_type: str
    message: str


@dataclass(frozen=True)
class ClipTensor:
    video_id: str
    clip: Clip
    tensor: NDArray[np.float32]


@dataclass(frozen=True)
class VideoEnd:
    """The last event of a video: how many clips were produced, and what failed (fatal: the whole video)."""

    video_id: str
    clips: int
    failure: Failure | None = None
    fatal: bool = False


def gpu_count() -> int:
    """CUDA devices DALI can use; 0 without DALI or without a GPU."""
    try:
        import nvidia.dali.backend as backend
    except ImportError:
        return 0
    try:
        return int(backend.GetCUDADeviceCount())  # type: ignore[attr-defined]
    except RuntimeError:
        return 0


def resolve_decoder(wanted: Literal["auto", "pyav", "dali"]) -> Decoder:
    """`auto` picks DALI (NVDEC) when DALI and a GPU are present, PyAV otherwise."""
    gpus = gpu_count()
    if wanted == "dali" and gpus == 0:
        raise ConfigError("--decoder dali needs NVIDIA DALI (pip install 'vidsearch[gpu]') and a CUDA GPU")
    if wanted == "auto":
        return "dali" if gpus else "pyav"
    return wanted


def _read(item: WorkItem, clips: list[Clip], settings: DecodeSettings
          ) -> tuple[Iterator[tuple[Clip, NDArray[np.float32]]], list[tuple[int, str]]]:
    """The clip stream and the list its skipped clips are added to while it is read."""
    if settings.decoder == "dali":
        from vidsearch.video.dali import dali_read_clips

        return dali_read_clips(item.path, clips, settings.preprocess, device="gpu",
                               device_id=settings.device_id, time_limit_s=settings.read.time_limit_s), []
    stream = read_clips(item.path, clips, settings.preprocess, settings.read)
    return iter(stream), stream.stats.failed_clips


def _message(exc: Exception) -> str:
    return exc.reason if isinstance(exc, VideoDecodeError) else str(exc) or repr(exc)


def decode_video(item: WorkItem, settings: DecodeSettings) -> Iterator[ClipTensor | VideoEnd]:
    """The clips of one video in order, then exactly one `VideoEnd`."""
    count = 0
    try:
        cuts = detect_cuts(item.path, settings.scenes) if settings.scenes is not None else []
        clips = segment_video(probe(item.path, settings.read.time_limit_s), settings.clips, cuts)
        stream, skipped = _read(item, clips, settings)
        for clip, tensor in stream:
            count += 1
            yield ClipTensor(item.video_id, clip, tensor)
    except Exception as exc:  # any failure of one video is recorded, and the job goes on
        error = Failure(item.video_id, item.uri, type(exc).__name__, _message(exc))
        yield VideoEnd(item.video_id, count, error, fatal=True)
        return
    failure: Failure | None = None
    if skipped:
        message = f"{len(skipped)} of {len(clips)} clips left out; first: {skipped[0][1]}"
        failure = Failure(item.video_id, item.uri, "ClipDecodeError", message)
    yield VideoEnd(item.video_id, count, failure)


@dataclass(frozen=True)
class WorkerStarted:
    """A worker took up a video: if the worker dies, that video is the one to record as failed."""

    worker: int
    video_id: str


@dataclass(frozen=True)
class WorkerStopped:
    worker: int


def decode_worker(number: int, tasks: "Queue[Any]", results: "Queue[Any]", settings: DecodeSettings) -> None:
    """A decoding process of the local engine: work items in (None: stop), events out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while (item := tasks.get()) is not None:
        results.put(WorkerStarted(number, item.video_id))
        for event in decode_video(item, settings):
            results.put(event)
    results.put(WorkerStopped(number))
