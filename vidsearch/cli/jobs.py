"""The `vidsearch embed` command: arguments in, `vidsearch.jobs.run_embed` out.

Exit status (shared by every command, see `vidsearch.errors`): 0 every video embedded; 3 the job
finished and some videos are in the failures file; 1 the job could not run or stopped on an error;
2 bad arguments.
"""

import logging
from pathlib import Path
from typing import Annotated, Literal

import typer

from vidsearch.cli.common import fail


def embed_command(
    input: Annotated[str, typer.Argument(help="A folder, a glob ('videos/**/*.mp4'), a manifest "
                                              "(.jsonl/.csv) or one video file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: shards, ledger, failures.")],
    model_repository: Annotated[Path, typer.Option(help="Exported model repository (vidsearch export).")],
    engine: Annotated[Literal["local", "ray"], typer.Option(help="local processes, or Ray Data.")] = "local",
    clip_len: Annotated[float, typer.Option(help="Clip window length in seconds.")] = 10.0,
    stride: Annotated[float | None, typer.Option(
        help="Seconds between window starts \\[clip length].")] = None,
    min_tail: Annotated[float, typer.Option(help="Shortest last window kept, in seconds.")] = 1.0,
    scenes: Annotated[bool, typer.Option(help="Cut at shot changes first; windows within shots.")] = False,
    dtype: Annotated[Literal["float32", "float16"], typer.Option(help="Embedding storage type.")] = "float32",
    workers: Annotated[int, typer.Option(min=1, help="Decoding processes (local engine); with DALI, "
                                                     "decoder sessions.")] = 1,
    cpu_workers: Annotated[int, typer.Option(min=0, help="Local engine with DALI: PyAV decoding processes "
                                                         "beside the DALI ones.")] = 0,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Clips per model call \\[model max].")] = None,
    shard_clips: Annotated[int, typer.Option(min=1, help="Clips per shard commit.")] = 8192,
    queue_clips: Annotated[int, typer.Option(min=1, help="Decoded clips waiting for the model.")] = 16,
    decoder: Annotated[Literal["auto", "pyav", "dali", "server"], typer.Option(
        help="auto: the Triton server when it has the decoding ensemble, else DALI on a GPU when "
             "installed, else PyAV. dali without a GPU: DALI's CPU decoder (VP8/VP9/MJPEG; PyAV the "
             "rest).")] = "auto",
    runtime: Annotated[Literal["auto", "embedded", "torch", "triton"], typer.Option(
        help="Model runtime: auto (a GPU runtime when a GPU starts, else embedded), embedded (ONNX "
             "Runtime), torch (PyTorch in-process) or triton.")] = "embedded",
    gpu: Annotated[Literal["auto", "required", "off"], typer.Option(
        help="auto: fall back to the CPU without a GPU; required: refuse; off: never use one.")] = "auto",
    triton_url: Annotated[str, typer.Option(help="Triton gRPC address (runtime triton).")] = "127.0.0.1:8001",
    threads: Annotated[int, typer.Option(min=0, help="ONNX Runtime threads (0: one per core).")] = 0,
    actors: Annotated[int, typer.Option(min=1, help="Ray: model actors.")] = 1,
    num_gpus: Annotated[float, typer.Option(min=0.0, help="Ray: GPUs per model actor.")] = 0.0,
    decode_gpus: Annotated[float, typer.Option(min=0.01, max=1.0, help="Ray: GPUs per decoding task "
                                                                       "when DALI decodes on a GPU.")] = 0.25,
    ray_address: Annotated[str | None, typer.Option(help="Ray: cluster [RAY_ADDRESS or local].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Start again in an --out of another job.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Embed every clip of a video collection into Parquet shards; run again to resume."""
    from rich.console import Console

    from vidsearch.errors import VidsearchError
    from vidsearch.jobs import EmbedJob, run_embed
    from vidsearch.runtime import RuntimeConfig
    from vidsearch.video import ClipSpec, ShotSpec

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        job = EmbedJob(
            input=input, out=out, engine=engine, clips=ClipSpec(clip_len, stride, min_tail),
            scenes=ShotSpec() if scenes else None, float16=dtype == "float16", decoder=decoder,
            runtime=RuntimeConfig(kind=runtime, gpu=gpu, model_repository=model_repository,
                                  triton_url=triton_url, threads=threads),
            workers=workers, cpu_workers=cpu_workers, decode_gpus=decode_gpus, batch_size=batch_size,
            shard_clips=shard_clips, queue_clips=queue_clips,
            actors=actors, num_gpus=num_gpus, ray_address=ray_address, overwrite=overwrite, progress=progress,
        )  # fmt: skip
        summary = run_embed(job)
    except VidsearchError as exc:
        fail(exc)
    Console(stderr=True).print(summary.table())
    if summary.failures_total:
        failures = out / "failures.jsonl"
        typer.echo(f"finished with {summary.failures_total} failed videos: see {failures}", err=True)
    raise typer.Exit(code=summary.exit_code)
