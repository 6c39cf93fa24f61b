"""The `vidsearch` command: argument parsing and calls into the library, nothing else."""

import typer

from vidsearch import __version__

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
