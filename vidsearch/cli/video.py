"""`vidsearch video …`: what vidsearch reads from a video file, and the clips it cuts it into."""

from pathlib import Path
from typing import Annotated

import typer

from vidsearch.cli.common import fail

video_app = typer.Typer(help="Inspect video inputs: probe, clips.", no_args_is_help=True)


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
        fail(exc)
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
        fail(exc)
    for clip in clips:
        typer.echo(f"{clip.index}\t{clip.start_s:.3f}\t{clip.end_s:.3f}")
