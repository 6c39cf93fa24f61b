"""The progress bar (videos, clips per second, ETA) and the summary a run ends with."""

import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vidsearch.errors import EXIT_ERROR, EXIT_OK, EXIT_WITH_FAILURES

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_WITH_FAILURES", "JobProgress", "JobSummary"]


@dataclass(frozen=True)
class JobSummary:
    """What a run did. `videos`/`clips` count this run; `*_total` the whole output so far."""

    out: str
    engine: str
    decoder: str
    videos: int
    videos_skipped: int  # settled by an earlier run
    videos_failed: int  # in this run
    clips: int
    seconds: float
    videos_total: int
    clips_total: int
    failures_total: int
    shards_total: int

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_WITH_FAILURES if self.failures_total else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clips_per_s": self.clips_per_s, "exit_code": self.exit_code}

    def table(self) -> Table:
        table = Table("", "this run", "output", title=f"vidsearch embed → {self.out}")
        table.add_row("videos", f"{self.videos} ({self.videos_skipped} done before)", str(self.videos_total))
        table.add_row("clips", str(self.clips), str(self.clips_total))
        table.add_row("failed videos", str(self.videos_failed), str(self.failures_total))
        table.add_row("shards", "", str(self.shards_total))
        table.add_row("time", f"{self.seconds:.1f} s, {self.clips_per_s:.2f} clips/s", "")
        table.add_row("engine", f"{self.engine}, {self.decoder} decoding", "")
        return table


class JobProgress:
    """A bar over the videos still to do, with clip and video rates; silent when `enabled` is False."""

    def __init__(self, total: int, done: int, enabled: bool, console: Console | None = None) -> None:
        self.started = time.monotonic()
        self._clips = 0
        self._videos = 0
        self._progress = Progress(
            TextColumn("[bold]embed"), BarColumn(), TextColumn("{task.completed}/{task.total} videos"),
            TextColumn("{task.fields[clips]} clips, {task.fields[rate]}"), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(),
            console=console or Console(stderr=True), disable=not enabled,
        )  # fmt: skip
        self._task = self._progress.add_task("embed", total=total, completed=done, clips=0, rate="")

    def __enter__(self) -> "JobProgress":
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._progress.stop()

    def advance(self, videos: int, clips: int) -> None:
        self._clips += clips
        self._videos += videos
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = f"{self._clips / elapsed:.2f} clips/s, {self._videos / elapsed:.2f} videos/s"
        self._progress.update(self._task, advance=videos, clips=self._clips, rate=rate)
