"""Scratch copies of an open index's metadata: a process killed with SIGKILL leaves one behind, and the
next index opened in the same temporary directory removes it (not those of live processes); a killed
`index build` leaves none there at all."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vidsearch.index import FaissClipIndex, OpenOptions
from vidsearch.index.parquet import shard_table, write_shard

from .test_integrity import shard_rows

VIDSEARCH = Path(sys.executable).with_name("vidsearch")

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


def test_a_killed_index_build_leaves_nothing_in_the_temporary_directory(tmp_path: Path) -> None:
    """`index build` keeps its working copy in the output's `.work` (the next writer removes it), under
    the output's lock: a SIGKILL midway leaves no scratch copy in $TMPDIR."""
    shards, dest, tmp = tmp_path / "shards", tmp_path / "ix", tmp_path / "tmp"
    shards.mkdir()
    tmp.mkdir()
    write_shard(shards / "part-000000.parquet", shard_table(shard_rows(160_000, 8)))
    command = [str(VIDSEARCH), "index", "build", "--from", str(shards), "--out", str(dest),
               "--factory", "Flat"]
    env = {**os.environ, "TMPDIR": str(tmp)}
    build = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        while not (_scratch(tmp) or (dest / ".work" / "metadata.sqlite").exists()):
            assert build.poll() is None, build.stderr.read() if build.stderr else ""
            assert time.monotonic() - started < 60
            time.sleep(0.005)
        time.sleep(0.3)  # well inside the build: its rows are being added
        assert build.poll() is None, "the build ended before it could be killed"
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait(timeout=30)
    assert _scratch(tmp) == []
    assert not (dest / "CURRENT").exists()
    rebuilt = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _scratch(tmp) == []
    assert not (dest / ".work").exists()
    with FaissClipIndex.open(dest, OpenOptions(read_only=True)) as index:
        assert len(index) == 160_000
