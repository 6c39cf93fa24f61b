"""Decoding processes with pipes of their own, and the watchdog that gives up on a stuck video.

Both engines use them: the local engine runs several, each Ray decode task one (kept for the life of
its Ray worker). A process gets its work items and sends its events over its own two pipes, so when
it is killed (the OOM killer, a decoder crash, the watchdog) nothing but those pipes is lost: its end
of file says so, its current video is recorded as failed, and the items it had not taken up go to
another process. A watchdog outside the process covers what the process's own deadline checks
cannot: a read that never returns (a hung mount).
"""

import contextlib
import time
from collections import deque
from multiprocessing.context import SpawnContext

from vidsearch.jobs.decoding import DecodeSettings, Failure, VideoEnd, decode_worker
from vidsearch.jobs.inputs import WorkItem

POLL_S = 0.5
"""How long the watcher waits for events before it looks for processes past their time limit."""
WATCHDOG_GRACE_S = 2.0
"""How long past a video's time limit its process is killed: the process's own checks come first."""


class VideoWatch:
    """The video a decoding process is on, and when the watchdog gives up on it: after a video's whole
    time limit without any result from it (waiting for the model does not count: results come)."""

    def __init__(self, video_id: str, limit_s: float) -> None:
        self.video_id = video_id
        self.limit_s = limit_s
        self.last_result = time.monotonic()

    def progressed(self) -> None:
        self.last_result = time.monotonic()

    def overdue(self) -> bool:
        return time.monotonic() > self.last_result + self.limit_s + WATCHDOG_GRACE_S

    def failure(self, uri: str, error: str, message: str) -> VideoEnd:
        """The fatal end of this video when its process is gone."""
        return VideoEnd(self.video_id, 0, Failure(self.video_id, uri, error, message), fatal=True)

    def timed_out(self, uri: str) -> VideoEnd:
        """The fatal end of this video when the watchdog stopped its process."""
        limit = f"{self.limit_s:.0f} s"
        return self.failure(uri, "TimeLimitExceeded",
                            f"no result within its time limit of {limit} (the decoding process was stopped)")

    def crashed(self, uri: str, code: int | None) -> VideoEnd:
        """The fatal end of this video when its process died on its own."""
        return self.failure(uri, "DecoderCrashed", f"the decoding process died (exit code {code})")


class DecodeProcess:
    """One decoding process (`decode_worker`) and its pipes; `events` is what to wait on."""

    def __init__(self, context: SpawnContext, number: int, settings: DecodeSettings, buffered: int) -> None:
        task_end, self._tasks = context.Pipe(duplex=False)
        self.events, event_end = context.Pipe(duplex=False)
        self.process = context.Process(target=decode_worker, name=f"vidsearch-decode-{number}",
                                       args=(number, task_end, event_end, settings, buffered), daemon=True)
        self.process.start()
        task_end.close()  # the child's ends: with none left here, its death is an end of file
        event_end.close()
        self.number = number
        self.settings = settings
        self.queued: deque[WorkItem] = deque()  # sent, not yet taken up
        self.watch: VideoWatch | None = None

    def give(self, item: WorkItem | None) -> None:
        """Queue a work item (None: stop once the queued ones are done)."""
        if item is not None:
            self.queued.append(item)
        with contextlib.suppress(OSError):  # it is gone: the end of its events says so
            self._tasks.send(item)

    def receive(self) -> object:
        """The next event; EOFError (or OSError, cut mid-message) once the process is gone."""
        return self.events.recv()

    def started(self, video_id: str, limit_s: float) -> None:
        """The process took up its oldest queued item."""
        if self.queued and self.queued[0].video_id == video_id:
            self.queued.popleft()
        self.watch = VideoWatch(video_id, limit_s)

    def exit_code(self) -> int | None:
        """How it ended, after a moment to be reaped (None: it is still running)."""
        self.process.join(timeout=1.0)
        return self.process.exitcode

    def stop(self) -> None:
        """Kill it (if it still runs) and close its pipes (idempotent)."""
        self.process.kill()
        self.process.join()
        self.events.close()
        self._tasks.close()
