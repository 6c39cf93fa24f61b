"""`vidsearch data …`: make training data — the synthetic set, manifests from InternVid annotations."""

from pathlib import Path
from typing import Annotated

import typer

from vidsearch.cli.common import fail
from vidsearch.cli.display import Display
from vidsearch.errors import VidsearchError

data_app = typer.Typer(
    help="Make training data: the synthetic set, manifests from InternVid.", no_args_is_help=True
)


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
        display = Display(1)
        paths = generate(out, spec, lambda done, total: display.progress("generate", done, total), workers)
    except VidsearchError as err:
        fail(err)
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
        fail(err)
    typer.echo(f"{len(rows)} clips → {out}")
