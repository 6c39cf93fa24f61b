"""Scratch directories of writable indexes (their working copy of the metadata), named after the process
that owns them: one left by a process that was killed is found and removed when the next is made."""

import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "vidsearch-index-"


def make_scratch(parent: Path | None = None) -> Path:
    """A new scratch directory under `parent` (default: the temporary directory), orphans removed first."""
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    remove_orphans(base)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))


def remove_orphans(base: Path) -> None:
    """Remove the scratch directories under `base` whose process is gone (named without one: kept)."""
    for entry in base.glob(f"{PREFIX}*"):
        owner = entry.name.removeprefix(PREFIX).split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
