"""`vidsearch export`: a checkpoint in; ONNX (and TensorRT on a GPU) in a Triton model repository out."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from vidsearch.cli.common import fail


def export_command(
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
    vocabulary: Annotated[
        Path | None, typer.Option(help="InternVideo2's vocab.txt (default: the one beside the checkpoint).")
    ] = None,
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
            vocabulary=vocabulary,
        )
        result = export_model(config)
    except VidsearchError as exc:
        fail(exc)
    for exported in result.models:
        typer.echo(f"{exported.path}: {exported.serving}")
        for figure in exported.parity:
            typer.echo(f"  parity {figure.line()}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"exported {len(result.models)} models into {result.out} in {result.seconds:.1f} s")
