"""The local engine: decoding processes feed the model through bounded queues, batches span videos.

    feeder thread ─► tasks (2 × workers) ─► N decoding processes ─► events (queue_clips) ─► main:
    batches of clips across videos ─► runtime.embed_video ─► JobOutput (assemble, shard, ledger)

(With the `server` decoder the processes send each video's encoded file and frame numbers instead,
and the main process hands them to `runtime.embed_encoded`: the Triton server decodes.)

Decoding runs in other processes while the main process runs the model, so one hides behind the
other; the bounded queues stop decoders that run ahead (backpressure), and nothing held grows with
the size of the collection. A decoding process that dies (a decoder crash, the OOM killer) costs only
its current video, which is recorded as failed; a new process takes its place.

Each stage checks its time limit between reads, which cannot help a process stuck inside one read
(a hung network mount): a watchdog here kills a process whose video runs past the whole limit
(`DecodeSettings.time_limit_s`), records the video as failed, and starts another. Decoding processes
die with the job however it ends (`die_with_parent`), and Ctrl-C stops it between events, keeping
every commit made so far.
"""

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Sequence
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from typing import Any

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
    decode_worker,
)
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.output import JobOutput
from vidsearch.runtime.base import Runtime

log = logging.getLogger(__name__)

_POLL_S = 0.5
_WATCHDOG_GRACE_S = 2.0  # past a video's time limit before its process is killed: its own checks come first


class _Current:
    """The video a decoding process is on, and when the watchdog gives up on it: after a video's whole
    time limit without any result from it (waiting for the model does not count: results come)."""

    def __init__(self, video_id: str, limit_s: float) -> None:
        self.video_id = video_id
        self.limit_s = limit_s
        self.last_result = time.monotonic()

    def progressed(self) -> None:
        self.last_result = time.monotonic()

    def overdue(self) -> bool:
        return time.monotonic() > self.last_result + self.limit_s + _WATCHDOG_GRACE_S


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


def _feed(tasks: "Queue[Any]", items: Sequence[WorkItem], workers: int) -> None:
    for item in items:
        tasks.put(item)
    for _ in range(workers):
        tasks.put(None)


class LocalEngine:
    """One run of the local engine. Entering starts the decoding (so it fills the queue while the
    model loads); `run` consumes it; leaving stops whatever processes are left."""

    def __init__(self, items: Sequence[WorkItem], settings: DecodeSettings, workers: int,
                 queue_clips: int) -> None:
        self._items = items
        self._context = multiprocessing.get_context("spawn")  # no fork after ONNX Runtime's threads start
        self._settings = settings
        self._tasks: Queue[Any] = self._context.Queue(maxsize=2 * workers)
        self._tasks.cancel_join_thread()  # on the way out, work not taken up is dropped, never waited for
        self._events: Queue[Any] = self._context.Queue(maxsize=queue_clips)
        self._workers: dict[int, SpawnProcess] = {}
        self._current: dict[int, _Current] = {}
        self._count = workers
        self._next = 0
        self._failed: dict[str, Failure] = {}  # videos the server could not decode, until their VideoEnd

    def _spawn(self) -> None:
        number, self._next = self._next, self._next + 1
        process = self._context.Process(target=decode_worker, name=f"vidsearch-decode-{number}",
                                        args=(number, self._tasks, self._events, self._settings), daemon=True)
        process.start()
        self._workers[number] = process

    def __enter__(self) -> "LocalEngine":
        for _ in range(self._count):
            self._spawn()
        threading.Thread(target=_feed, args=(self._tasks, self._items, self._count), daemon=True,
                         name="vidsearch-feed").start()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._workers.values():
            process.kill()
        for process in self._workers.values():
            process.join()

    def run(self, runtime: Runtime, batch_size: int, output: JobOutput) -> None:
        """Embed and commit everything the decoding processes produce, until all have stopped."""
        batches = ClipBatches(runtime, batch_size, output)
        while self._workers:
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                self._replace_dead(output)
                self._stop_overdue(output)  # only here: with the queue drained, no process is mid-send
                continue
            self._handle(event, batches, output)
        batches.run()
        output.flush()

    def _handle(self, event: object, batches: ClipBatches, output: JobOutput) -> None:
        if isinstance(event, ClipTensor):
            for current in self._current.values():
                if current.video_id == event.video_id:
                    current.progressed()
            batches.add(event)
        elif isinstance(event, EncodedVideo):
            failure = batches.encoded(event)
            if failure is not None:
                self._failed[event.video_id] = failure
        elif isinstance(event, VideoEnd):
            self._current = {w: c for w, c in self._current.items() if c.video_id != event.video_id}
            failure = self._failed.pop(event.video_id, None)
            output.end(event if failure is None else VideoEnd(event.video_id, 0, failure, fatal=True))
        elif isinstance(event, WorkerStarted):
            self._current[event.worker] = _Current(event.video_id, self._settings.time_limit_s(None))
        elif isinstance(event, WorkerProbed):
            if event.worker in self._current:
                self._current[event.worker].limit_s = self._settings.time_limit_s(event.duration_s)
                self._current[event.worker].progressed()
        elif isinstance(event, WorkerStopped):
            self._workers.pop(event.worker).join()

    def _replace_dead(self, output: JobOutput) -> None:
        """Called when no event came for a while, so a dead process's last events have been read."""
        for number, process in list(self._workers.items()):
            if process.exitcode is not None:
                log.warning("decoding process %d died (exit code %s)", number, process.exitcode)
                self._retire(number, output, "DecoderCrashed",
                             f"the decoding process died (exit code {process.exitcode})")

    def _stop_overdue(self, output: JobOutput) -> None:
        """Kill the processes whose video has run past its whole time limit (stuck inside a read)."""
        for number, current in list(self._current.items()):
            if current.overdue() and number in self._workers:
                log.warning("decoding process %d is past the time limit on %s; stopping it", number,
                            current.video_id)
                self._workers[number].kill()
                self._workers[number].join()
                self._retire(number, output, "TimeLimitExceeded",
                             f"no result within its time limit of {current.limit_s:.0f} s "
                             f"(the decoding process was stopped)")

    def _retire(self, number: int, output: JobOutput, error: str, message: str) -> None:
        """A process is gone: its video (if any) is a fatal failure, and a new process takes its place."""
        del self._workers[number]
        current = self._current.pop(number, None)
        if current is not None:
            failure = Failure(current.video_id, output.uri(current.video_id), error, message)
            output.end(VideoEnd(current.video_id, 0, failure, fatal=True))
        self._spawn()
