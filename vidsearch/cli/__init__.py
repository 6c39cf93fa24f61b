"""The `vidsearch` command: argument parsing and calls into the library, nothing else."""

from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from vidsearch import __version__
from vidsearch.cli.jobs import embed_command
from vidsearch.cli.serving import demo_command, search_command, serve_command
from vidsearch.cli.training import data_app, train_app

app = typer.Typer(
    name="vidsearch",
    help="Find moments in your videos by text: embed, index, serve and export video foundation models.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Find moments in your videos by text."""


@app.command()
def version() -> None:
    """Print the vidsearch version."""
    typer.echo(__version__)


@app.command()
def presets() -> None:
    """List the model presets (names accepted wherever a model is asked for)."""
    from rich.console import Console
    from rich.table import Table

    from vidsearch.models import get_preset, list_presets

    table = Table("preset", "family", "description")
    for name in list_presets():
        preset = get_preset(name)
        table.add_row(name, preset.family.name, preset.description)
    Console().print(table)


index_app = typer.Typer(help="Build and inspect clip indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)


@index_app.command("build")
def index_build(
    source: Annotated[Path, typer.Option("--from", help="Directory of Parquet embedding shards.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to write (replaced atomically).")],
    factory: Annotated[
        str | None, typer.Option(help="FAISS factory string, e.g. 'HNSW32,Flat' (default: chosen by size).")
    ] = None,
    gpu: Annotated[str, typer.Option(help="auto | never | require: run the index on GPUs.")] = "auto",
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows read and added per batch.")] = 65_536,
    expect_model: Annotated[str | None, typer.Option(help="Refuse shards of any other model.")] = None,
) -> None:
    """Build an index directory from the Parquet shards of `vidsearch embed`."""
    from vidsearch.errors import VidsearchError
    from vidsearch.index.base import GpuPolicy
    from vidsearch.index.build import BuildOptions, build_from_parquet

    try:
        policy = GpuPolicy(gpu)
    except ValueError:
        raise typer.BadParameter(f"{gpu!r}: use auto, never or require", param_hint="--gpu") from None
    options = BuildOptions(factory=factory, batch_rows=batch_rows, gpu=policy, expect_model=expect_model)
    try:
        stats = build_from_parquet(source, out, options)
    except VidsearchError as exc:
        _fail(exc)
    typer.echo(f"built {out}: {stats.clips} clips, {stats.videos} videos, {stats.index_type}, {stats.device}")


@index_app.command("stats")
def index_stats(
    directory: Annotated[Path, typer.Argument(help="Index directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show what an index directory holds and how it is built."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.table import Table

    from vidsearch.errors import VidsearchError
    from vidsearch.index import FaissClipIndex, GpuPolicy, OpenOptions

    try:
        with FaissClipIndex.open(directory, OpenOptions(read_only=True, gpu=GpuPolicy.NEVER)) as index:
            stats = dataclasses.asdict(index.stats())
    except VidsearchError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    table = Table("field", "value", title=str(directory))
    for name, value in stats.items():
        table.add_row(name, str(value))
    Console().print(table)


@app.command("export")
def export(
    model: Annotated[str, typer.Option(help="Preset name (see `vidsearch presets`) or a preset JSON file.")],
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint file (.pth, .pt, .bin or .safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Triton model repository to write into.")] = Path(
        "model_repository"
    ),
    target: Annotated[Literal["cpu", "gpu"], typer.Option(help="cpu: Python backend + ORT.")] = "cpu",
    precision: Annotated[
        Literal["fp32", "fp16", "int8"], typer.Option(help="fp16 and int8 need --target gpu.")
    ] = "fp32",
    max_batch: Annotated[int, typer.Option(help="Largest batch the models accept.")] = 16,
    version: Annotated[int | None, typer.Option(help="Model version (default: the next free one).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (at least 18).")] = 18,
    simplify: Annotated[bool, typer.Option(help="Constant folding and dead-code removal.")] = True,
    sample_video: Annotated[
        list[Path] | None, typer.Option(help="Video(s) for the parity check's real inputs (repeatable).")
    ] = None,
    calibration_video: Annotated[
        list[Path] | None, typer.Option(help="Video(s) to calibrate int8 on (repeatable).")
    ] = None,
    queue_delay_us: Annotated[int, typer.Option(help="Triton dynamic batching queue delay (µs).")] = 2000,
    instances: Annotated[int, typer.Option(help="Triton model instances per device.")] = 1,
    cpu_threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads (0: its default).")] = 0,
) -> None:
    """Export a checkpoint to ONNX (and TensorRT on a GPU machine) into a Triton model repository."""
    import logging

    from vidsearch.errors import VidsearchError
    from vidsearch.export import ExportConfig, export_model

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        config = ExportConfig(
            model=model, checkpoint=checkpoint, out=out, target=target, precision=precision,
            max_batch=max_batch, version=version, opset=opset, simplify=simplify,
            sample_videos=tuple(sample_video or ()), calibration_videos=tuple(calibration_video or ()),
            queue_delay_us=queue_delay_us, instances=instances, cpu_threads=cpu_threads,
        )
        result = export_model(config)
    except VidsearchError as exc:
        _fail(exc)
    for exported in result.models:
        typer.echo(f"{exported.path}: {exported.serving}")
        for figure in exported.parity:
            typer.echo(f"  parity {figure.line()}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"exported {len(result.models)} models into {result.out} in {result.seconds:.1f} s")


app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")

video_app = typer.Typer(help="Inspect video inputs: probe, clips.", no_args_is_help=True)
app.add_typer(video_app, name="video")


@video_app.command("probe")
def video_probe(path: Annotated[Path, typer.Argument(help="Video file.")]) -> None:
    """Print what vidsearch reads from a video file, as JSON."""
    import dataclasses
    import json

    from vidsearch.errors import VidsearchError
    from vidsearch.video import probe

    try:
        info = probe(path)
    except VidsearchError as exc:
        _fail(exc)
    typer.echo(json.dumps(dataclasses.asdict(info), indent=2))


@video_app.command("clips")
def video_clips(
    path: Annotated[Path, typer.Argument(help="Video file.")],
    length: Annotated[float, typer.Option(help="Window length in seconds.")] = 10.0,
    stride: Annotated[float | None, typer.Option(help="Seconds between window starts (default: length).")] = (
        None
    ),
    min_tail: Annotated[float, typer.Option(help="Shortest last window kept, in seconds.")] = 1.0,
    shots: Annotated[bool, typer.Option(help="Cut at shot changes first (PySceneDetect).")] = False,
) -> None:
    """Print the clips (index, start, end in seconds) a video is cut into, one per line."""
    from vidsearch.errors import VidsearchError
    from vidsearch.video import ClipSpec, detect_cuts, probe, segment

    try:
        cuts = detect_cuts(path) if shots else []
        clips = segment(probe(path), ClipSpec(length, stride, min_tail), cuts)
    except VidsearchError as exc:
        _fail(exc)
    for clip in clips:
        typer.echo(f"{clip.index}\t{clip.start_s:.3f}\t{clip.end_s:.3f}")


app.command("serve")(serve_command)
app.command("search")(search_command)
app.command("demo")(demo_command)
app.command("embed")(embed_command)
