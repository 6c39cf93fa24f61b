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
from dataclasses import replace
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
)
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.output import JobOutput
from vidsearch.jobs.processes import POLL_S, DecodeProcess, VideoWatch
from vidsearch.runtime.base import Runtime

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

    def encoded(self, video: EncodedVideo) -> Failure | None:
        """Embed a whole video on the server that decodes it; a video it cannot decode is a failure of
        that video (returned, for its `VideoEnd`), never of the job."""
        uri = self._output.uri(video.video_id)
        try:
            vectors = self._runtime.embed_encoded(video.data, video.frames, name=uri)
        except VideoDecodeError as err:
            return Failure(video.video_id, uri, type(err).__name__, err.reason)
        self._output.clips(video.video_id, list(video.clips), vectors)
        return None


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
        self._failed: dict[str, Failure] = {}  # videos the server could not decode, until their VideoEnd

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
            failure = batches.encoded(event)
            if failure is not None:
                self._failed[event.video_id] = failure
        elif isinstance(event, VideoEnd):
            process.watch = None
            failure = self._failed.pop(event.video_id, None)
            output.end(event if failure is None else VideoEnd(event.video_id, 0, failure, fatal=True))
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
