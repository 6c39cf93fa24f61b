"""The decode stage: one video → its clips' model input, then one end marker. Runs in worker processes
(local engine) or Ray tasks, so it imports only `vidsearch.video` and its arguments pickle.

With the `server` decoder (a Triton runtime whose server has the `viclip_video_embed` ensemble) a
video is not decoded here: its file is read once and sent on as an `EncodedVideo` with each clip's
frame numbers, and the model process hands both to the server, which decodes by the same rules.

Whatever goes wrong with a video ends up in its `VideoEnd` (never raised): a job must not stop for a
bad file. A clip the decoder cannot produce is left out and named in a non-fatal failure, and so is a
file cut off before the length its headers claim (its readable part goes in); a video that cannot
be opened, probed, segmented or read at all is a fatal failure and none of its clips count.
"""

import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import ConfigError, VideoDecodeError
from vidsearch.jobs.inputs import WorkItem
from vidsearch.video import (
    Clip,
    ClipSpec,
    Preprocess,
    ReadOptions,
    ShotSpec,
    VideoInfo,
    detect_cuts,
    probe_timeline,
    read_clips,
)
from vidsearch.video import segment as segment_video
from vidsearch.video.dali import encoded_clip_frames
from vidsearch.video.source import Deadline, load_input

log = logging.getLogger(__name__)

Decoder = Literal["pyav", "dali", "server"]


@dataclass(frozen=True)
class DecodeSettings:
    """How every video of a job is cut and read; the same for all workers."""

    preprocess: Preprocess
    clips: ClipSpec
    scenes: ShotSpec | None
    read: ReadOptions
    decoder: Decoder = "pyav"
    dali_device: Literal["cpu", "gpu"] = "gpu"  # where DALI decodes (the CPU: VP8/VP9/MJPEG, PyAV the rest)
    device_id: int = 0  # the GPU DALI decodes on

    def time_limit_s(self, duration_s: float | None) -> float:
        """The most one video may take, all stages together: shot detection, reading (DALI), probing,
        and decoding with its allowance per second of video once the length is known. Each stage
        checks its own limit between reads; this whole is what a watchdog enforces from outside,
        for a process stuck inside one read."""
        before = self.read.time_limit_s * 2 + (self.scenes.time_limit_s if self.scenes is not None else 0.0)
        if duration_s is None:
            return before + self.read.time_limit_s
        return before + self.read.time_limit_s + self.read.time_limit_per_video_s * duration_s


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
class EncodedVideo:
    """A whole video for a server that decodes: its encoded file and each clip's frame numbers."""

    video_id: str
    data: bytes
    clips: tuple[Clip, ...]
    frames: tuple[NDArray[np.int32], ...]


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


def resolve_decoder(wanted: Literal["auto", "pyav", "dali", "server"], server_decodes: bool = False
                    ) -> tuple[Decoder, Literal["cpu", "gpu"]]:
    """The decoder and where DALI runs. `auto` picks the server when the runtime decodes on its server
    (`server_decodes`), DALI on the GPU (NVDEC) when DALI and a GPU are present, PyAV otherwise; `dali`
    without a GPU runs DALI's CPU decoder (VP8, VP9, MJPEG; other codecs fall back to PyAV, each with a
    warning)."""
    if wanted == "server" and not server_decodes:
        raise ConfigError("--decoder server needs --runtime triton and a server with the viclip_video_embed "
                          "ensemble (export the model again with this vidsearch)")
    if wanted == "server" or (wanted == "auto" and server_decodes):
        return "server", "cpu"
    gpus = gpu_count() if wanted != "pyav" else 0
    if wanted != "dali":
        return ("dali", "gpu") if gpus else ("pyav", "cpu")
    try:
        import nvidia.dali  # noqa: F401 - only whether it is there
    except ImportError:
        raise ConfigError("--decoder dali needs NVIDIA DALI: pip install 'vidsearch[gpu]'") from None
    if gpus == 0:
        log.warning("--decoder dali without a CUDA GPU: DALI decodes VP8, VP9 and MJPEG on the CPU, "
                    "PyAV the other codecs")
    return "dali", "gpu" if gpus else "cpu"


ClipIterator = Iterator[tuple[Clip, NDArray[np.float32]]]


def _read(item: WorkItem, settings: DecodeSettings, scenes: list[float],
          on_probe: Callable[[VideoInfo], None] | None
          ) -> tuple[VideoInfo, list[Clip], ClipIterator, list[tuple[int, str]]]:
    """Probe, cut and start reading one video, demuxing it once before decoding: the probe's timeline
    goes to the decoder. Returns the video's facts, its clips, the clip stream, and the list its
    skipped clips are added to while it is read."""
    limit = settings.read.time_limit_s
    if settings.decoder == "dali":
        from vidsearch.video.dali import dali_read_clips

        data = load_input(item.path, Deadline(item.path, limit))  # DALI takes bytes: the one read of the file
        probed = probe_timeline(data, limit)
        if on_probe is not None:
            on_probe(probed.info)
        clips = segment_video(probed.info, settings.clips, scenes)
        # this process's decoder session, built once; a video DALI cannot decode goes to PyAV
        stream = dali_read_clips(data, clips, settings.preprocess, settings.dali_device, settings.device_id,
                                 settings.read, probed, fallback=True)
        return probed.info, clips, iter(stream), stream.failed_clips
    probed = probe_timeline(item.path, limit)
    if on_probe is not None:
        on_probe(probed.info)
    clips = segment_video(probed.info, settings.clips, scenes)
    frames = read_clips(item.path, clips, settings.preprocess, settings.read, timeline=probed.timeline)
    return probed.info, clips, iter(frames), frames.stats.failed_clips


def _encoded(item: WorkItem, settings: DecodeSettings, scenes: list[float],
             on_probe: Callable[[VideoInfo], None] | None) -> tuple[VideoInfo, list[Clip], EncodedVideo]:
    """Read, probe and cut one video for a server that decodes: the file is read and demuxed once."""
    limit = settings.read.time_limit_s
    data = load_input(item.path, Deadline(item.path, limit))
    probed = probe_timeline(data, limit)
    if on_probe is not None:
        on_probe(probed.info)
    clips = segment_video(probed.info, settings.clips, scenes)
    data, _, frames = encoded_clip_frames(data, clips, settings.preprocess, limit, probed)
    return probed.info, clips, EncodedVideo(item.video_id, data.getvalue(), tuple(clips), tuple(frames))


def _message(exc: Exception) -> str:
    return exc.reason if isinstance(exc, VideoDecodeError) else str(exc) or repr(exc)


def left_out(skipped: list[tuple[int, str]], clips: int) -> str:
    """How a video's clips left out are named in its failure (whichever decoder left them out)."""
    return f"{len(skipped)} of {clips} clips left out; first: {skipped[0][1]}"


def _partial(item: WorkItem, info: VideoInfo, clips: int, skipped: list[tuple[int, str]]) -> Failure | None:
    """The non-fatal failure of a video that went in only in part: clips left out, or a cut-off file."""
    problems = []
    if info.missing_s:
        problems.append(f"cut off: {info.duration_s:.2f} s of the {info.declared_duration_s:.2f} s its "
                        f"headers claim could be read; the clips cover the readable part")
    if skipped:
        problems.append(left_out(skipped, clips))
    if not problems:
        return None
    kind = "TruncatedVideo" if info.missing_s else "ClipDecodeError"
    return Failure(item.video_id, item.uri, kind, "; ".join(problems))


def decode_video(item: WorkItem, settings: DecodeSettings, on_probe: Callable[[VideoInfo], None] | None = None
                 ) -> Iterator[ClipTensor | EncodedVideo | VideoEnd]:
    """The clips of one video in order (or, for the server decoder, the one `EncodedVideo`), then
    exactly one `VideoEnd`. `on_probe` learns the video's facts once probed (the local engine's
    watchdog sizes the time limit by its length)."""
    count = 0
    try:
        scenes = detect_cuts(item.path, settings.scenes) if settings.scenes is not None else []
        if settings.decoder == "server":
            info, clips, encoded = _encoded(item, settings, scenes, on_probe)
            count = len(clips)
            skipped: list[tuple[int, str]] = []
            yield encoded
        else:
            info, clips, stream, skipped = _read(item, settings, scenes, on_probe)
            for clip, tensor in stream:
                count += 1
                yield ClipTensor(item.video_id, clip, tensor)
    except Exception as exc:  # any failure of one video is recorded, and the job goes on
        error = Failure(item.video_id, item.uri, type(exc).__name__, _message(exc))
        yield VideoEnd(item.video_id, count, error, fatal=True)
        return
    yield VideoEnd(item.video_id, count, _partial(item, info, len(clips), skipped))


@dataclass(frozen=True)
class WorkerStarted:
    """A worker took up a video: if the worker dies, that video is the one to record as failed."""

    worker: int
    video_id: str


@dataclass(frozen=True)
class WorkerProbed:
    """The worker's video is this long: its time limit grows by the decoding allowance for that length."""

    worker: int
    duration_s: float


@dataclass(frozen=True)
class WorkerStopped:
    worker: int


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Have the kernel kill this process when the job's process dies, however it dies (SIGKILL too):
    a decoding process holds a few hundred MB and, with its siblings, keeps multiprocessing's resource
    tracker alive; none may outlive the job. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    parent = multiprocessing.parent_process()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the job died before the request took effect


def _send_all(events: "queue.Queue[object]", connection: Connection) -> None:
    while True:
        event = events.get()
        connection.send(event)
        if isinstance(event, WorkerStopped):
            return


def decode_worker(number: int, tasks: Connection, results: Connection, settings: DecodeSettings,
                  buffered: int) -> None:
    """A decoding process: work items in (None: stop), events out, each over a pipe of its own, so
    that a process killed mid-message garbles nothing but its own pipe (a queue shared by all
    processes is left locked, or holding half a message, and stalls the others). Up to `buffered`
    events wait for the parent in a sending thread while decoding goes on."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    events: queue.Queue[object] = queue.Queue(maxsize=buffered)
    sender = threading.Thread(target=_send_all, args=(events, results), name="vidsearch-send", daemon=True)
    sender.start()
    while (item := tasks.recv()) is not None:
        events.put(WorkerStarted(number, item.video_id))

        def on_probe(info: VideoInfo) -> None:
            events.put(WorkerProbed(number, info.duration_s))

        for event in decode_video(item, settings, on_probe):
            events.put(event)
    events.put(WorkerStopped(number))
    sender.join()
