"""The `vidsearch serve`, `vidsearch search` and `vidsearch demo` commands: arguments in, library calls out.

Registered on the main command in `vidsearch.cli`. Flags left out are None, so they do not hide
the values of the config file or the environment (see `vidsearch.serving.settings`).
"""

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from vidsearch.cli.common import fail, numbered_key_values

ENV_TOKEN = "VIDSEARCH_TOKEN"


def _section(**values: Any) -> dict[str, Any] | None:
    given = {key: value for key, value in values.items() if value is not None}
    return given or None


def serve_command(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Settings (.toml, .json).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="gRPC port (0: any free port) [50051].")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus /metrics port [9464].")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP API and web page port (0: off) [8080].")] = None,
    index: Annotated[str | None, typer.Option(
        help="Index directory (made if missing), or milvus://HOST:PORT/[DATABASE/]COLLECTION \\[index]."
    )] = None,
    index_device: Annotated[str | None, typer.Option(
        help="FAISS runs on: cpu, gpu or auto \\[auto].")] = None,
    milvus_concurrent_searches: Annotated[int | None, typer.Option(
        help="Search batches kept in flight to a Milvus index [4].")] = None,
    milvus_timeout: Annotated[float | None, typer.Option(
        help="Seconds each Milvus call may take before UNAVAILABLE [10].")] = None,
    milvus_index: Annotated[str | None, typer.Option(
        help="Index type of a Milvus collection the server creates: HNSW, IVF_FLAT, IVF_SQ8, DISKANN, "
             "GPU_CAGRA, FLAT \\[HNSW].")] = None,
    milvus_param: Annotated[list[str] | None, typer.Option(
        help="Its build parameter KEY=VALUE, e.g. nlist=4096 (repeatable).")] = None,
    milvus_search_param: Annotated[list[str] | None, typer.Option(
        help="Its recorded search parameter KEY=VALUE, e.g. nprobe=64 (repeatable).")] = None,
    model_repository: Annotated[Path | None, typer.Option(help="Exported model repository.")] = None,
    runtime: Annotated[str | None, typer.Option(
        help="auto (a GPU runtime when a GPU starts, else embedded), embedded (ONNX Runtime), torch "
             "(PyTorch in-process) or triton.")] = None,
    gpu: Annotated[str | None, typer.Option(help="auto (fall back to the CPU), required or off.")] = None,
    triton_url: Annotated[str | None, typer.Option(help="Triton gRPC address (runtime triton).")] = None,
    allowed_root: Annotated[
        list[Path] | None, typer.Option(help="Directory path inputs may come from (repeatable).")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate chain (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server private key (PEM).")] = None,
    auth_token_file: Annotated[Path | None, typer.Option(help="Bearer tokens, one per line.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
) -> None:
    """Run the gRPC search service, the HTTP API and the web page until Ctrl-C or SIGTERM."""
    from vidsearch.errors import VidsearchError
    from vidsearch.serving import logs, serve
    from vidsearch.serving.settings import load_settings

    try:
        settings = load_settings(
            config, host=host, port=port, metrics_port=metrics_port, log_level=log_level,
            index=_section(location=index), index_device=index_device,
            milvus=_section(concurrent_searches=milvus_concurrent_searches, timeout_s=milvus_timeout,
                            index_type=milvus_index,
                            index_params=numbered_key_values(milvus_param, "--milvus-param") or None,
                            search_params=numbered_key_values(milvus_search_param, "--milvus-search-param")
                            or None),
            allowed_roots=tuple(allowed_root) if allowed_root else None,
            runtime=_section(model_repository=model_repository, kind=runtime, gpu=gpu,
                             triton_url=triton_url),
            tls=_section(cert=tls_cert, key=tls_key), auth=_section(token_file=auth_token_file),
            http=None if http_port is None else {"port": http_port} if http_port else {"enabled": False},
        )
        logs.configure(settings.log_level)
        serve(settings)
    except VidsearchError as exc:
        fail(exc)


def search_command(
    query: Annotated[str, typer.Argument(help="What the clips should show.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many clips.")] = 10,
    server: Annotated[str, typer.Option(help="host:port of the service.")] = "127.0.0.1:50051",
    video_id: Annotated[list[str] | None, typer.Option(help="Only clips of this video (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only clips with this tag (repeatable).")] = None,
    group_by_video: Annotated[bool, typer.Option(help="Group the hits per video.")] = False,
    token_file: Annotated[Path | None, typer.Option(help=f"Bearer token file (or ${ENV_TOKEN}).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="Use TLS, trusting this CA certificate (PEM).")] = None,
    tls: Annotated[bool, typer.Option(help="Use TLS with the system's trusted roots.")] = False,
    timeout: Annotated[float, typer.Option(help="Deadline in seconds.")] = 30.0,
) -> None:
    """Search the service: print the best clips with video, start–end and score."""
    import grpc
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from vidsearch.client import SearchClient

    token = token_file.read_text().strip() if token_file else os.environ.get(ENV_TOKEN)
    try:
        with SearchClient(server, token=token, tls=tls, root_certificate=tls_ca, timeout_s=timeout) as client:
            result = client.search(query, top_k=top_k, video_ids=video_id or (), tags=tag or (),
                                   group_by_video=group_by_video)
    except grpc.RpcError as err:
        fail(f"{err.code().name}: {err.details()}")
    hits = [h for group in result.groups for h in group.hits] if group_by_video else list(result.hits)
    caption = Text(f"{result.model}, index {result.index_version}, {result.timings_ms['total']:.1f} ms")
    # Text, not str: Rich would read "[red]" in a query or file name as a style, and "[/b]" as an error
    table = Table("#", "video", "start–end", "score", "clip", title=Text(f"“{query}”"), title_justify="left",
                  caption=caption)
    for rank, hit in enumerate(hits, 1):
        span = f"{hit.start_s:.2f}–{hit.end_s:.2f} s"
        table.add_row(str(rank), Text(hit.video_id), span, f"{hit.score:.4f}", Text(hit.clip_id))
    Console().print(table)


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Where the corpus, model repository and index go.")] = Path(
        ".vidsearch-demo"
    ),
    model: Annotated[
        Path | None,
        typer.Option(help="A trained ViCLIP folder (config.json + weights) \\[the shipped demo]."),
    ] = None,
    videos: Annotated[int, typer.Option(min=1, help="Videos in the demo corpus.")] = 12,
    query: Annotated[list[str] | None, typer.Option(help="Query to run (repeatable; default: four).")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the server running for the page until Ctrl-C.")] = False,
) -> None:
    """Make a corpus, export the demo model, index it through the server and query it (under a minute)."""
    from rich.console import Console

    from vidsearch.demo.corpus import CorpusSpec
    from vidsearch.demo.run import DEMO_PORT, DemoOptions, run_demo
    from vidsearch.errors import VidsearchError

    console = Console()
    try:
        options = DemoOptions(workdir, model, CorpusSpec(videos=videos), tuple(query or ()), keep=keep)
        result = run_demo(options, console)
    except VidsearchError as exc:
        fail(exc)
    console.print(f"top-1 correct: {result.top1_correct} of {len(result.results)} queries; contact sheet: "
                  f"{result.contact_sheet}; {result.seconds:.0f} s in all", markup=False)
    console.print(f"\nKeep it running:  vidsearch serve --config {result.config_file}\n"
                  f"Query it:         vidsearch search \"{result.results[0].query}\" --top-k 5 "
                  f"--server 127.0.0.1:{DEMO_PORT}\n"
                  f"Health:           grpc_health_probe -addr 127.0.0.1:{DEMO_PORT}   (or grpcurl -plaintext "
                  f"127.0.0.1:{DEMO_PORT} list)", markup=False)
