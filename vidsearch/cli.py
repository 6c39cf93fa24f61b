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
