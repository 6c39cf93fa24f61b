"""`vidsearch train …` and `vidsearch data …`: argument parsing, progress display, and calls into
`vidsearch.training`. Heavy modules are imported inside the commands so `vidsearch --help` stays fast.
"""

import json
import logging
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vidsearch.errors import VidsearchError

if TYPE_CHECKING:
    from vidsearch.training.loop import StepInfo

train_app = typer.Typer(help="Train ViCLIP and VideoMAE V2 models from recipes.", no_args_is_help=True)
data_app = typer.Typer(
    help="Make training data: the synthetic set, manifests from InternVid.", no_args_is_help=True
)
console = Console(stderr=True)

PresetOpt = Annotated[
    str, typer.Option("--preset", "-p", help="Training recipe: a shipped name or a JSON file.")
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: runs/<preset>).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a recipe setting: KEY=VALUE, dotted keys.")
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the run folder's last checkpoint.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Processes decoding video (data.workers).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Total optimiser steps (loop.steps).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Global batch size (loop.batch_size).")]
TrainOpt = Annotated[Path | None, typer.Option("--train", help="Training manifest (JSONL or CSV).")]
TestOpt = Annotated[Path | None, typer.Option("--test", help="Test manifest, evaluated after training.")]
InitOpt = Annotated[Path | None, typer.Option("--init", help="Checkpoint to start from.")]


def _overrides(sets: list[str] | None, **named: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    for key, value in named.items():
        if value is not None:  # a path is quoted so that override parsing keeps it a string
            out[key] = json.dumps(str(value)) if isinstance(value, Path) else value
    return out


class _Display:
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


def _command_line(ctx: typer.Context) -> str:
    """The command as given, rebuilt from the parsed options (so it also works under a test runner)."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name != "option" or value is None or value == []:
            continue
        if value == param.default and param.name != "preset":  # the recipe is always named
            continue
        flag = param.opts[0]
        if getattr(param, "is_flag", False):
            words.append(flag)
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            words += [flag, str(item)]
    return shlex.join(words)


def _run(
    ctx: typer.Context,
    task: str,
    preset: str,
    out: Path | None,
    resume: bool,
    overrides: dict[str, Any],
) -> None:
    # Before torch loads OpenMP: idle threads sleep instead of spinning, which on a shared CPU
    # made a training step 4-8× slower with 2 threads than with 1 (measured on 2 busy cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from vidsearch.training.config import load_recipe
    from vidsearch.training.viclip import train_viclip
    from vidsearch.training.videomae import train_videomae

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        recipe = load_recipe(preset, overrides)
        if recipe.task != task:
            raise typer.BadParameter(f"recipe {preset!r} is a {recipe.task!r} recipe, not {task!r}")
        out_dir = out or Path("runs") / Path(preset).stem
        display = _Display(recipe.loop.log_every)
        command = _command_line(ctx)
        trainer = train_viclip if task == "viclip" else train_videomae
        result = trainer(
            recipe,
            out_dir,
            resume=resume,
            command=command,
            on_step=display.step,
            progress=display.progress,
        )
    except VidsearchError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    if result.model_dir is not None:
        console.print(f"trained {result.steps} steps in {result.seconds:.0f} s; model in {result.model_dir}")
        if result.metrics:
            typer.echo(json.dumps(result.metrics, indent=2))


@train_app.command("viclip")
def train_viclip_command(
    ctx: typer.Context,
    preset: PresetOpt = "demo",
    out: OutOpt = None,
    resume: ResumeOpt = False,
    workers: WorkersOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    train: TrainOpt = None,
    test: TestOpt = None,
    init: InitOpt = None,
    sets: SetOpt = None,
) -> None:
    """Contrastive video–text training of ViCLIP (the `demo` recipe trains the shipped demo model)."""
    _run(
        ctx,
        "viclip",
        preset,
        out,
        resume,
        _overrides(
            sets,
            **{
                "data.workers": workers,
                "loop.steps": steps,
                "loop.batch_size": batch_size,
                "data.train": train,
                "data.test": test,
                "init": init,
            },
        ),
    )


@train_app.command("videomae-pretrain")
def train_pretrain_command(
    ctx: typer.Context,
    preset: PresetOpt = "videomae-s-pretrain",
    out: OutOpt = None,
    resume: ResumeOpt = False,
    workers: WorkersOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    train: TrainOpt = None,
    init: InitOpt = None,
    sets: SetOpt = None,
) -> None:
    """VideoMAE V2 dual-masking pre-training."""
    _run(
        ctx,
        "videomae-pretrain",
        preset,
        out,
        resume,
        _overrides(
            sets,
            **{
                "data.workers": workers,
                "loop.steps": steps,
                "loop.batch_size": batch_size,
                "data.train": train,
                "init": init,
            },
        ),
    )


@train_app.command("videomae-finetune")
def train_finetune_command(
    ctx: typer.Context,
    preset: PresetOpt = "videomae-s-finetune",
    out: OutOpt = None,
    resume: ResumeOpt = False,
    workers: WorkersOpt = None,
    steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    train: TrainOpt = None,
    test: TestOpt = None,
    init: InitOpt = None,
    sets: SetOpt = None,
) -> None:
    """Fine-tune a VideoMAE V2 classifier (label smoothing, layer-wise lr decay, multi-view test)."""
    _run(
        ctx,
        "videomae-finetune",
        preset,
        out,
        resume,
        _overrides(
            sets,
            **{
                "data.workers": workers,
                "loop.steps": steps,
                "loop.batch_size": batch_size,
                "data.train": train,
                "data.test": test,
                "init": init,
            },
        ),
    )


@train_app.command("recipes")
def recipes_command() -> None:
    """List the shipped training recipes."""
    from vidsearch.training.config import list_recipes, load_recipe

    for name in list_recipes():
        recipe = load_recipe(name)
        typer.echo(f"{name:24} {recipe.task:18} {recipe.description}")


@data_app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write videos and manifests into.")],
    n: Annotated[int, typer.Option("--n", help="Number of videos.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; equal seeds give equal files.")] = 0,
    test_fraction: Annotated[float, typer.Option(help="Share of videos with held-out combinations.")] = 0.1,
    size: Annotated[int, typer.Option(help="Frame width and height in pixels.")] = 128,
    workers: Annotated[int, typer.Option(help="Encoding processes (0: this one).")] = 0,
) -> None:
    """Generate the moving-shapes video–text set (H.264 MP4 + train/test manifests)."""
    from vidsearch.training.synthetic import SynthSpec, generate

    try:
        spec = SynthSpec(n=n, seed=seed, test_fraction=test_fraction, size=size)
        display = _Display(1)
        paths = generate(out, spec, lambda done, total: display.progress("generate", done, total), workers)
    except VidsearchError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    for split, path in paths.items():
        typer.echo(f"{split}: {path}")


@data_app.command("internvid")
def internvid_command(
    annotations: Annotated[Path, typer.Argument(help="InternVid JSONL annotations.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Manifest to write (.jsonl or .csv).")],
    videos: Annotated[
        str | None, typer.Option(help="Local path pattern with {id}, relative to --root.")
    ] = None,
    table: Annotated[Path | None, typer.Option(help="JSON or CSV table: video id → local file.")] = None,
    root: Annotated[Path | None, typer.Option(help="Folder the local paths start from.")] = None,
) -> None:
    """Turn InternVid annotations into a manifest of the clips whose videos are present locally."""
    from vidsearch.video.manifest import read_internvid, read_video_table, video_locator, write_manifest

    try:
        locate = video_locator(videos, read_video_table(table) if table else None)
        manifest = read_internvid(annotations, locate, root=root or annotations.parent)
        rows = [
            type(r)(str(manifest.path_of(r).resolve()), r.start_s, r.end_s, r.caption, r.label, r.extra)
            for r in manifest.rows
        ]
        write_manifest(out, rows)
    except VidsearchError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    typer.echo(f"{len(rows)} clips → {out}")
