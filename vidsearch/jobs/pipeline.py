"""The local engine: decoding processes feed the model through bounded queues, batches span videos.

    main ─► a pipe each (1 item ahead) ─► N decoding processes ─► a pipe each (queue_clips in all) ─► main:
    batches of clips across videos ─► runtime.embed_video ─► JobOutput (assemble, shard, ledger)

(With the `server` decoder the processes send each video's encoded file and frame numbers instead,
and the main process hands them to `runtime.embed_encoded`: the Triton server decodes.)

Decoding runs in other processes while the main process runs the model, so one hides behind the
other; each process's bounded buffer stops decoders that run ahead (backpressure), and nothing held
grows with the size of the collection. Each process has pipes of its own (`processes.py`): one that
dies (a decoder crash, the OOM killer, SIGKILL mid-message) costs only its current video, which is
recorded as failed; the items it had not taken up go to a new process that takes its place.

Each stage checks its time limit between reads, which cannot help a process stuck inside one read
(a hung network mount): a watchdog here kills a process whose video runs past the whole limit
(`DecodeSettings.time_limit_s`), records the video as failed, and starts another. Decoding processes
die with the job however it ends (`die_with_parent`), and Ctrl-C stops it between events, keeping
every commit made so far.
"""

import functools
import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

import numpy as np
from numpy.typing import NDArray

from vidsearch.errors import VideoDecodeError
from vidsearch.jobs.decoding import (
    ClipTensor,
    DecodeSettings,
    EncodedVideo,
    Failure,
    VideoEnd,
    WorkerProbed,
    WorkerStarted,
    WorkerStopped,
    left_out,
)
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.output import JobOutput
from vidsearch.jobs.processes import POLL_S, DecodeProcess, VideoWatch
from vidsearch.runtime.base import Runtime
from vidsearch.video import Clip

log = logging.getLogger(__name__)


class ClipBatches:
    """Clips from any videos, run through the model `size` at a time."""

    def __init__(self, runtime: Runtime, size: int, output: JobOutput) -> None:
        self._runtime = runtime
        self._size = size
        self._output = output
        self._clips: list[ClipTensor] = []

    def add(self, clip: ClipTensor) -> None:
        self._clips.append(clip)
        if len(self._clips) >= self._size:
            self.run()

    def run(self) -> None:
        if not self._clips:
            return
        vectors: NDArray[np.float32] = self._runtime.embed_video(np.stack([c.tensor for c in self._clips]))
        for clip, vector in zip(self._clips, vectors, strict=True):
            self._output.clip(clip.video_id, clip.clip, vector)
        self._clips = []

    def encoded(self, video: EncodedVideo) -> "ServerEmbedding":
        """Embed a whole video on the server that decodes it; what it could not decode is returned,
        for the video's `VideoEnd`."""
        embedded = embed_on_server(self._runtime, video, self._output.uri(video.video_id))
        if embedded.clips:
            self._output.clips(video.video_id, embedded.clips, embedded.vectors)
        return embedded


@dataclass(frozen=True)
class ServerEmbedding:
    """What the server made of one video's clips: those it embedded, and those it could not decode."""

    video_id: str
    uri: str
    clips: list[Clip]
    vectors: NDArray[np.float32]
    skipped: list[tuple[int, str]]  # (clip index, why), as the in-process decoders record them

    def end(self, end: VideoEnd) -> VideoEnd:
        """The video's end as its decoding process sent it, with the clips the server left out: none
        embedded is a fatal VideoDecodeError; some, a ClipDecodeError naming them, as on PyAV's path."""
        if not self.skipped or end.fatal:
            return end
        if not self.clips:
            failure = Failure(self.video_id, self.uri, VideoDecodeError.__name__, self.skipped[0][1])
            return VideoEnd(self.video_id, 0, failure, fatal=True)
        message = left_out(self.skipped, len(self.clips) + len(self.skipped))
        earlier = end.failure  # a cut-off file keeps its kind, and names the clips too
        failure = (Failure(self.video_id, self.uri, "ClipDecodeError", message) if earlier is None
                   else replace(earlier, message=f"{earlier.message}; {message}"))
        return VideoEnd(self.video_id, len(self.clips), failure)


def embed_on_server(runtime: Runtime, video: EncodedVideo, uri: str) -> ServerEmbedding:
    """The video's clips embedded by the server that decodes them. A decode error fails a whole
    request, so a group that fails is halved and sent again until the clips the server cannot decode
    stand alone: they are left out, the rest go in (a bad clip costs about log2(clips) more requests)."""
    vectors: list[NDArray[np.float32]] = []
    kept: list[Clip] = []
    skipped: list[tuple[int, str]] = []

    def run(part: list[int]) -> None:
        try:
            values = runtime.embed_encoded(video.data, [video.frames[i] for i in part], name=uri)
        except VideoDecodeError as err:
            if len(part) == 1:
                skipped.append((video.clips[part[0]].index, err.reason))
                return
            if len(part) == len(video.clips):
                log.info("%s: the server could not decode a clip (%s); sending the clips in smaller groups",
                         uri, err.reason)
            half = len(part) // 2
            run(part[:half])
            run(part[half:])
            return
        kept.extend(video.clips[i] for i in part)
        vectors.append(values)

    run(list(range(len(video.clips))))
    width = runtime.facts.dim
    stacked = np.concatenate(vectors) if vectors else np.empty((0, width), np.float32)
    return ServerEmbedding(video.video_id, uri, kept, np.asarray(stacked, np.float32), skipped)


class LocalEngine:
    """One run of the local engine. Entering starts the decoding (so it fills the buffers while the
    model loads); `run` consumes it; leaving stops whatever processes are left."""

    def __init__(self, items: Sequence[WorkItem], settings: DecodeSettings, workers: int,
                 queue_clips: int, cpu_workers: int = 0) -> None:
        self._pending = deque(items)
        self._context = multiprocessing.get_context("spawn")  # no fork after ONNX Runtime's threads start
        self._settings = settings
        # with DALI, `cpu_workers` PyAV processes take videos beside the DALI ones
        self._kinds = [settings] * workers
        if settings.decoder == "dali":
            self._kinds += [replace(settings, decoder="pyav")] * cpu_workers
        self._buffered = max(1, queue_clips // len(self._kinds))
        self._processes: dict[Connection, DecodeProcess] = {}
        self._next = 0
        self._server: dict[str, ServerEmbedding] = {}  # videos the server embedded, until their VideoEnd

    def _spawn(self, settings: DecodeSettings) -> None:
        process = DecodeProcess(self._context, self._next, settings, self._buffered)
        self._next += 1
        self._processes[process.events] = process
        process.give(self._take())

    def _take(self) -> WorkItem | None:
        return self._pending.popleft() if self._pending else None

    def __enter__(self) -> "LocalEngine":
        for settings in self._kinds:
            self._spawn(settings)
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._processes.values():
            process.stop()

    def run(self, runtime: Runtime, batch_size: int, output: JobOutput) -> None:
        """Embed and commit everything the decoding processes produce, until all have stopped."""
        batches = ClipBatches(runtime, batch_size, output)
        while self._processes:
            for connection in wait(list(self._processes), timeout=POLL_S):
                process = self._processes[connection]  # type: ignore[index]
                try:
                    event = process.receive()
                except (EOFError, OSError):
                    code = process.exit_code()
                    log.warning("decoding process %d died (exit code %s)", process.number, code)
                    self._retire(process, output, functools.partial(VideoWatch.crashed, code=code))
                    continue
                self._handle(process, event, batches, output)
            self._stop_overdue(output)
        batches.run()
        output.flush()

    def _handle(self, process: DecodeProcess, event: object, batches: ClipBatches, output: JobOutput) -> None:
        if isinstance(event, ClipTensor):
            if process.watch is not None:
                process.watch.progressed()
            batches.add(event)
        elif isinstance(event, EncodedVideo):
            if process.watch is not None:
                process.watch.progressed()
            self._server[event.video_id] = batches.encoded(event)
        elif isinstance(event, VideoEnd):
            process.watch = None
            embedded = self._server.pop(event.video_id, None)
            output.end(event if embedded is None else embedded.end(event))
        elif isinstance(event, WorkerStarted):
            process.started(event.video_id, self._settings.time_limit_s(None))
            process.give(self._take())  # one item ahead
        elif isinstance(event, WorkerProbed):
            if process.watch is not None:
                process.watch.limit_s = self._settings.time_limit_s(event.duration_s)
                process.watch.progressed()
        elif isinstance(event, WorkerStopped):
            del self._processes[process.events]
            process.stop()

    def _stop_overdue(self, output: JobOutput) -> None:
        """Kill the processes whose video has run past its whole time limit (stuck inside a read)."""
        for process in list(self._processes.values()):
            watch = process.watch
            if watch is not None and watch.overdue():
                log.warning("decoding process %d is past the time limit on %s; stopping it", process.number,
                            watch.video_id)
                self._retire(process, output, VideoWatch.timed_out)

    def _retire(self, process: DecodeProcess, output: JobOutput, ending: Callable[[VideoWatch, str], VideoEnd]
                ) -> None:
        """A process is gone: its video (if any) ends as `ending` says (fatal), its queued items go back
        to the others, and a new process of the same kind (a new decoder session) takes its place while
        work is left."""
        del self._processes[process.events]
        process.stop()
        if process.watch is not None:
            output.end(ending(process.watch, output.uri(process.watch.video_id)))
        self._pending.extendleft(reversed(process.queued))
        if self._pending:
            self._spawn(process.settings)
