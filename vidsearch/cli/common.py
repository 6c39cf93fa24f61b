"""What every `vidsearch` command does the same way: report an error and leave with the shared status.

The statuses themselves are defined once, in `vidsearch.errors`: 0 ok, 1 error, 2 bad arguments
(Click's usage errors, including `typer.BadParameter`), 3 finished with failures (`embed`), 4 a GPU
was required (`gpu = "required"`) and no GPU runtime could start. `EXIT_CODES` maps errors to them.
"""

from typing import NoReturn

import typer

from vidsearch.errors import EXIT_ERROR, EXIT_NO_GPU, GpuUnavailableError

# The errors that leave with their own status (first match wins); any other error leaves with EXIT_ERROR.
EXIT_CODES: tuple[tuple[type[Exception], int], ...] = ((GpuUnavailableError, EXIT_NO_GPU),)


def fail(reason: Exception | str) -> NoReturn:
    """Print `error: <reason>` on stderr and exit with the error's status (`EXIT_CODES`)."""
    typer.echo(f"error: {reason}", err=True)
    code = next((code for kind, code in EXIT_CODES if isinstance(reason, kind)), EXIT_ERROR)
    raise typer.Exit(code=code)


def key_values(items: list[str] | None, option: str) -> dict[str, str]:
    """Repeated `KEY=VALUE` options as a dict (a usage error, exit 2, names a malformed one)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{option} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def numbered_key_values(items: list[str] | None, option: str) -> dict[str, int | str]:
    """`key_values` with whole numbers as ints: index parameters (`nlist=4096`, `build_algo=NN_DESCENT`)."""
    given = key_values(items, option)
    return {key: int(value) if value.isdigit() else value for key, value in given.items()}
