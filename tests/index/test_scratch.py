"""Scratch copies of an open index's metadata: a process killed with SIGKILL leaves one behind, and the
next index opened in the same temporary directory removes it (not those of live processes)."""

import os
import subprocess
import sys
from pathlib import Path

OPEN_INDEX = """
import os, signal, sys
from vidsearch.index import FaissClipIndex, IndexConfig
index = FaissClipIndex.create(IndexConfig(dim=4, model="m", factory="Flat"))
if sys.argv[1] == "crash":
    os.kill(os.getpid(), signal.SIGKILL)
index.close()
"""


def _run(mode: str, tmp: Path) -> int:
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run([sys.executable, "-c", OPEN_INDEX, mode], env=env, timeout=60).returncode


def _scratch(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.glob("vidsearch-index-*"))


def test_the_scratch_copy_of_a_killed_process_is_removed_by_the_next(tmp_path: Path) -> None:
    live = tmp_path / f"vidsearch-index-{os.getpid()}-live"  # this process is alive: kept
    live.mkdir()
    assert _run("crash", tmp_path) == -9
    assert len(_scratch(tmp_path)) == 2  # the killed process could not clean up
    assert _run("close", tmp_path) == 0
    assert _scratch(tmp_path) == [live.name]
