"""The local engine: decoding processes feed the model through bounded queues, batches span videos.

    feeder thread ─► tasks (2 × workers) ─► N decoding processes ─► events (queue_clips) ─► main:
    batches of clips across videos ─► runtime.embed_video ─► JobOutput (assemble, shard, ledger)

Decoding runs in other processes while the main process runs the model, so one hides behind the
other; the bounded queues stop decoders that run ahead (backpressure), and nothing held grows with
the size of the collection. A decoding process that dies (a decoder crash, the OOM killer) costs only
its current video, which is recorded as failed; a new process takes its place.
"""

import logging
import multiprocessing
import queue
import threading
from collections.abc import Sequence
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vidsearch.jobs.decoding import (
    ClipTensor,
    DecodeSettings,
    Failure,
    VideoEnd,
    WorkerStarted,
    WorkerStopped,
    decode_worker,
)
from vidsearch.jobs.inputs import WorkItem
from vidsearch.jobs.output import JobOutput
from vidsearch.runtime.base import Runtime

log = logging.getLogger(__name__)

_POLL_S = 0.5


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
        self._events: Queue[Any] = self._context.Queue(maxsize=queue_clips)
        self._workers: dict[int, SpawnProcess] = {}
        self._current: dict[int, str] = {}
        self._count = workers
        self._next = 0

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

    def run(self, runtime: Runtime, batch_size: int, output: JobOutput) -> None:
        """Embed and commit everything the decoding processes produce, until all have stopped."""
        batches = ClipBatches(runtime, batch_size, output)
        while self._workers:
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                self._replace_dead(output)
                continue
            self._handle(event, batches, output)
        batches.run()
        output.flush()

    def _handle(self, event: object, batches: ClipBatches, output: JobOutput) -> None:
        if isinstance(event, ClipTensor):
            batches.add(event)
        elif isinstance(event, VideoEnd):
            self._current = {w: v for w, v in self._current.items() if v != event.video_id}
            output.end(event)
        elif isinstance(event, WorkerStarted):
            self._current[event.worker] = event.video_id
        elif isinstance(event, WorkerStopped):
            self._workers.pop(event.worker).join()

    def _replace_dead(self, output: JobOutput) -> None:
        """Called when no event came for a while, so a dead process's last events have been read."""
        for number, process in list(self._workers.items()):
            if process.exitcode is None:
                continue
            del self._workers[number]
            video = self._current.pop(number, None)
            log.warning("decoding process %d died (exit code %s) on %s", number, process.exitcode, video)
            if video is not None:
                failure = Failure(video, output.uri(video), "DecoderCrashed",
                                  f"the decoding process died (exit code {process.exitcode})")
                output.end(VideoEnd(video, 0, failure, fatal=True))
            self._spawn()
