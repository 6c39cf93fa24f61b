"""Progress on stderr for the long commands: bars for data preparation, a line per logged training step."""

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from vidsearch.training.loop import StepInfo

console = Console(stderr=True)


class Display:
    """Progress bars for data preparation, one line per `log_every` training steps."""

    def __init__(self, log_every: int) -> None:
        self.log_every = log_every
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def progress(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.bars.start()
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done)
        if done >= total:
            self.bars.stop()

    def step(self, info: "StepInfo") -> None:
        if info.step % self.log_every and info.step != info.total:
            return
        extra = " ".join(f"{k} {v:.4g}" for k, v in info.metrics.items())
        console.print(
            f"step {info.step}/{info.total}  loss {info.loss:.4f}  lr {info.lr:.3g}  "
            f"grad {info.grad_norm:.3g}  {info.step / max(info.seconds, 1e-9):.2f} steps/s  {extra}",
            soft_wrap=True,
        )
