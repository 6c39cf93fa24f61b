"""`vidsearch train …`: one command per training task, all three one implementation (`_train`).

Argument parsing, progress display and a call into `vidsearch.training`; heavy modules are imported
inside the command so `vidsearch --help` stays fast.
"""

import inspect
import json
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from vidsearch.cli.common import fail, key_values
from vidsearch.cli.display import Display, console
from vidsearch.errors import VidsearchError

train_app = typer.Typer(help="Train ViCLIP and VideoMAE V2 models from recipes.", no_args_is_help=True)

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
    out: dict[str, Any] = dict(key_values(sets, "--set"))
    for key, value in named.items():
        if value is not None:  # a path is quoted so that override parsing keeps it a string
            out[key] = json.dumps(str(value)) if isinstance(value, Path) else value
    return out


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


@dataclass(frozen=True)
class _Task:
    """One `vidsearch train` subcommand: the recipe task it runs (also its name) and its defaults."""

    name: str
    default_preset: str
    summary: str
    evaluates: bool  # takes a --test manifest (pre-training has no test)


_TASKS = (
    _Task("viclip", "demo", "Contrastive video–text training of ViCLIP (the `demo` recipe trains the "
          "shipped demo model).", evaluates=True),
    _Task("videomae-pretrain", "videomae-s-pretrain", "VideoMAE V2 dual-masking pre-training.",
          evaluates=False),
    _Task("videomae-finetune", "videomae-s-finetune",
          "Fine-tune a VideoMAE V2 classifier (label smoothing, layer-wise lr decay, multi-view test).",
          evaluates=True),
)


def _train(ctx: typer.Context, task: str, preset: str, out: Path | None, resume: bool,
           overrides: dict[str, Any]) -> None:
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
            raise typer.BadParameter(f"recipe {preset!r} is a {recipe.task!r} recipe, not {task!r}",
                                     param_hint="--preset")
        display = Display(recipe.loop.log_every)
        trainer = train_viclip if task == "viclip" else train_videomae
        result = trainer(recipe, out or Path("runs") / Path(preset).stem, resume=resume,
                         command=_command_line(ctx), on_step=display.step, progress=display.progress)
    except VidsearchError as err:
        fail(err)
    if result.model_dir is not None:
        console.print(f"trained {result.steps} steps in {result.seconds:.0f} s; model in {result.model_dir}",
                      markup=False)
        if result.metrics:
            typer.echo(json.dumps(result.metrics, indent=2))


def _command(task: _Task) -> Callable[..., None]:
    """The subcommand of one task; a task that does not evaluate has no `--test` option."""

    def command(
        ctx: typer.Context,
        preset: PresetOpt = task.default_preset,
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
        named = {"data.workers": workers, "loop.steps": steps, "loop.batch_size": batch_size,
                 "data.train": train, "data.test": test, "init": init}
        _train(ctx, task.name, preset, out, resume, _overrides(sets, **named))

    command.__doc__ = task.summary
    if not task.evaluates:  # Typer reads the options from the signature
        signature = inspect.signature(command)
        kept = [p for p in signature.parameters.values() if p.name != "test"]
        setattr(command, "__signature__", signature.replace(parameters=kept))  # noqa: B010
    return command


for _task in _TASKS:
    train_app.command(_task.name)(_command(_task))


@train_app.command("recipes")
def recipes_command() -> None:
    """List the shipped training recipes."""
    from vidsearch.training.config import list_recipes, load_recipe

    for name in list_recipes():
        recipe = load_recipe(name)
        typer.echo(f"{name:24} {recipe.task:18} {recipe.description}")
