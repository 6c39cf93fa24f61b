"""The `vidsearch` command: argument parsing and calls into the library, nothing else.

One module per command group (`index`, `video`, `train`, `data`) or door (`export`, `embed`, and
`serve`/`search`/`demo`). Each imports only Typer at the top and the library inside its commands, so
`vidsearch search` runs where only the client extra is installed. Exit statuses are shared by every
command (see `vidsearch.errors`): 0 ok, 1 error, 2 bad arguments, 3 finished with failures.
"""

import typer

from vidsearch import __version__
from vidsearch.cli.data import data_app
from vidsearch.cli.export import export_command
from vidsearch.cli.index import index_app
from vidsearch.cli.jobs import embed_command
from vidsearch.cli.serving import demo_command, search_command, serve_command
from vidsearch.cli.training import train_app
from vidsearch.cli.video import video_app

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


app.add_typer(index_app, name="index")
app.command("export")(export_command)
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
app.add_typer(video_app, name="video")
app.command("serve")(serve_command)
app.command("search")(search_command)
app.command("demo")(demo_command)
app.command("embed")(embed_command)
