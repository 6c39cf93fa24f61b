"""`vidsearch index …`: build an index (a directory, or a Milvus collection) from the shards of
`vidsearch embed`, inspect and verify one."""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from vidsearch.cli.common import fail, numbered_key_values

if TYPE_CHECKING:
    from vidsearch.index.base import IndexStats
    from vidsearch.index.milvus import MilvusIndexSpec, MilvusTarget

ENV_MILVUS_TOKEN = "VIDSEARCH_MILVUS_TOKEN"
"""A Milvus token ("user:password" or an API key); kept out of the command line and the URI."""

index_app = typer.Typer(help="Build and inspect clip indexes.", no_args_is_help=True)


@index_app.command("build")
def index_build(
    source: Annotated[Path, typer.Option("--from", help="Directory of Parquet embedding shards.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Index directory (faiss; replaced atomically).")
    ] = None,
    backend: Annotated[Literal["faiss", "milvus"], typer.Option(help="faiss: an index directory; "
                                                                     "milvus: a collection.")] = "faiss",
    factory: Annotated[
        str | None, typer.Option(help="FAISS factory string, e.g. 'HNSW32,Flat' (default: chosen by size).")
    ] = None,
    gpu: Annotated[str, typer.Option(help="auto | never | require: run the index on GPUs.")] = "auto",
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows read and added per batch (faiss).")] = 65_536,
    expect_model: Annotated[str | None, typer.Option(help="Refuse shards of any other model.")] = None,
    milvus_uri: Annotated[str | None, typer.Option(help="Milvus server: http://HOST:19530.")] = None,
    collection: Annotated[str | None, typer.Option(help="Milvus collection to create.")] = None,
    milvus_database: Annotated[str, typer.Option(help="Milvus database the collection goes in (it must "
                                                      "exist) \\[default].")] = "",
    milvus_index: Annotated[str, typer.Option(help="Milvus index type: HNSW, IVF_FLAT, IVF_SQ8, DISKANN, "
                                                   "GPU_CAGRA, FLAT.")] = "HNSW",
    milvus_param: Annotated[list[str] | None, typer.Option(help="Milvus index build parameter KEY=VALUE, "
                                                           "e.g. nlist=4096 or M=32 (repeatable).")] = None,
    milvus_search_param: Annotated[list[str] | None, typer.Option(
        help="Milvus search parameter KEY=VALUE the collection records, e.g. nprobe=64 (repeatable)."
    )] = None,
    replace: Annotated[bool, typer.Option(help="Replace an existing collection of that name (same model) "
                                               "once the new one is complete.")] = False,
    milvus_partitions: Annotated[int, typer.Option(min=1, max=4096, help="Partitions the video ids hash "
                                                   "into: more make video filters cheaper and other "
                                                   "searches dearer.")] = 1,
    milvus_replicas: Annotated[int | None, typer.Option(min=1, help="In-memory copies the query nodes load, "
                                                        "each serving a share of the searches \\[those of "
                                                        "the collection replaced, else 1].")] = None,
) -> None:
    """Build an index from the Parquet shards of `vidsearch embed`: a directory, or a Milvus collection."""
    from vidsearch.errors import VidsearchError
    from vidsearch.index.base import GpuPolicy, IndexStats
    from vidsearch.index.build import BuildOptions, build_from_parquet

    try:
        policy = GpuPolicy(gpu)
    except ValueError:
        raise typer.BadParameter(f"{gpu!r}: use auto, never or require", param_hint="--gpu") from None
    stats: IndexStats
    try:
        if backend == "milvus":
            spec = _milvus_spec(milvus_index, milvus_param, milvus_search_param)
            target = _milvus_target(milvus_uri, collection, milvus_database)
            where = target.address
            stats = _build_milvus(source, target, spec, expect_model, replace, milvus_partitions,
                                  milvus_replicas)
        else:
            if out is None:
                raise typer.BadParameter("faiss writes an index directory: give --out", param_hint="--out")
            options = BuildOptions(factory, batch_rows, policy, expect_model=expect_model)
            stats = build_from_parquet(source, out, options)
            where = str(out)
    except VidsearchError as exc:
        fail(exc)
    summary = f"{stats.clips} clips, {stats.videos} videos, {stats.index_type}, {stats.device}"
    typer.echo(f"built {where}: {summary}")


def _milvus_spec(index_type: str, build: list[str] | None, search: list[str] | None) -> "MilvusIndexSpec":
    """The index type with its `--milvus-param` / `--milvus-search-param` values (whole numbers as ints)."""
    from vidsearch.index.milvus import MilvusIndexSpec

    return MilvusIndexSpec(index_type, numbered_key_values(build, "--milvus-param"),
                           numbered_key_values(search, "--milvus-search-param"))


def _milvus_target(uri: str | None, collection: str | None, database: str) -> "MilvusTarget":
    from vidsearch.index.milvus import MilvusTarget

    if not uri or not collection:
        raise typer.BadParameter("the milvus backend needs --milvus-uri and --collection",
                                 param_hint="--backend")
    return MilvusTarget(uri=uri, collection=collection, db_name=database,
                        token=os.environ.get(ENV_MILVUS_TOKEN, ""))


def _build_milvus(source: Path, target: "MilvusTarget", spec: "MilvusIndexSpec", expect_model: str | None,
                  replace: bool, partitions: int, replicas: int | None) -> "IndexStats":
    from vidsearch.index.milvus.build import MilvusBuildOptions, build_collection_from_parquet

    options = MilvusBuildOptions(spec, expect_model=expect_model, replace=replace,
                                 partitions=partitions, replicas=replicas)  # fmt: skip
    return build_collection_from_parquet(source, target, options)


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
    where: Annotated[str, typer.Argument(help="Index directory, or milvus://HOST:PORT/[DATABASE/]COLLECTION.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show what an index (a directory or a Milvus collection) holds and how it is built."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from vidsearch.errors import VidsearchError
    from vidsearch.index import FaissClipIndex, GpuPolicy, OpenOptions
    from vidsearch.index.milvus import MilvusClipIndex, MilvusTarget, is_milvus_address

    try:
        if is_milvus_address(where):
            target = MilvusTarget.parse(where, token=os.environ.get(ENV_MILVUS_TOKEN, ""))
            with MilvusClipIndex.open(target) as milvus:
                stats = dataclasses.asdict(milvus.stats())
        else:
            options = OpenOptions(read_only=True, gpu=GpuPolicy.NEVER)
            with FaissClipIndex.open(Path(where), options) as index:
                stats = dataclasses.asdict(index.stats())
    except VidsearchError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    table = Table("field", "value", title=Text(where))  # Text: a path or value is not Rich markup
    for name, value in stats.items():
        table.add_row(name, Text(str(value)))
    Console().print(table)
