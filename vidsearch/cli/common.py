"""What every `vidsearch` command does the same way: report an error and leave with the shared status.

The statuses themselves are defined once, in `vidsearch.errors`: 0 ok, 1 error, 2 bad arguments
(Click's usage errors, including `typer.BadParameter`), 3 finished with failures (`embed`).
"""

from typing import NoReturn

import typer

from vidsearch.errors import EXIT_ERROR


def fail(reason: Exception | str) -> NoReturn:
    """Print `error: <reason>` on stderr and exit with the error status."""
    typer.echo(f"error: {reason}", err=True)
    raise typer.Exit(code=EXIT_ERROR)
