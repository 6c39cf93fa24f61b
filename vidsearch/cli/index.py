"""`vidsearch index …`: build an index from the shards of `vidsearch embed`, inspect and verify one."""

from pathlib import Path
from typing import Annotated

import typer

from vidsearch.cli.common import fail

index_app = typer.Typer(help="Build and inspect clip indexes.", no_args_is_help=True)


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
        fail(exc)
    typer.echo(f"built {out}: {stats.clips} clips, {stats.videos} videos, {stats.index_type}, {stats.device}")


@index_app.command("verify")
def index_verify(directory: Annotated[Path, typer.Argument(help="Index directory.")]) -> None:
    """Check every file of an index against its recorded SHA-256, and its counts and change log."""
    from vidsearch.errors import VidsearchError
    from vidsearch.index import FaissClipIndex, GpuPolicy, OpenOptions

    options = OpenOptions(read_only=True, gpu=GpuPolicy.NEVER, verify=True)
    try:
        with FaissClipIndex.open(directory, options) as index:
            typer.echo(f"{directory}: intact, {len(index)} clips, version {index.version}")
    except VidsearchError as exc:
        fail(exc)


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
        fail(exc)
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    table = Table("field", "value", title=str(directory))
    for name, value in stats.items():
        table.add_row(name, str(value))
    Console().print(table)
