"""Durability of an index directory: one writer at a time, across real processes, and no acknowledged
change lost when the writer is killed (SIGKILL) at any moment, inside a log append or a fold."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import IndexLockedError
from vidsearch.index import FaissClipIndex, OpenOptions, SearchFilter, Tuning
from vidsearch.index.persistence import current_snapshot

from .helpers import build, clustered, make_records

VIDSEARCH = Path(sys.executable).with_name("vidsearch")

HOLDER = """
import sys
from pathlib import Path
from vidsearch.index import FaissClipIndex

index = FaissClipIndex.open(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.read()
"""

# Upserts clip n<i> (vector: a function of i) one at a time, printing i once add() has returned; folds
# its log into a snapshot every few kilobytes, so that kills land inside folds too.
WRITER = """
import sys
from pathlib import Path

import numpy as np

from vidsearch.index import ClipRecord, FaissClipIndex, faiss_index

faiss_index.COMPACT_LOG_BYTES = 6_000
index = FaissClipIndex.open(Path(sys.argv[1]))
i = int(sys.argv[2])
while True:
    vector = np.random.default_rng(i).standard_normal((1, index.dim))
    index.upsert([ClipRecord(f"n{i}", f"w{i}", "file:///w.mp4", 0.0, 1.0, index.model)], vector)
    print(i, flush=True)
    i += 1
"""


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    with build(make_records(30), clustered(30, 8, seed=1)) as index:
        index.save(tmp_path / "ix")
    return tmp_path / "ix"


def test_a_second_writer_process_is_refused_and_readers_share(index_dir: Path, tmp_path: Path) -> None:
    holder = start(HOLDER, str(index_dir))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(IndexLockedError, match=f"process {holder.pid}"):
            FaissClipIndex.open(index_dir)
        rebuilt = subprocess.run([str(VIDSEARCH), "index", "build", "--from", str(tmp_path / "none"),
                                  "--out", str(index_dir)], capture_output=True, text=True, timeout=120)
        assert rebuilt.returncode == 1
        with FaissClipIndex.open(index_dir, OpenOptions(read_only=True)) as reader:
            assert len(reader) == 30
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with FaissClipIndex.open(index_dir) as index:  # the kernel dropped the dead writer's lock
        assert len(index) == 30


def test_index_build_into_a_served_directory_is_refused(index_dir: Path, tmp_path: Path) -> None:
    from vidsearch.index.parquet import shard_table, write_shard

    from .test_integrity import shard_rows

    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "part-000000.parquet", shard_table(shard_rows(20, 8)))
    holder = start(HOLDER, str(index_dir))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        built = subprocess.run([str(VIDSEARCH), "index", "build", "--from", str(shards), "--out",
                                str(index_dir)], capture_output=True, text=True, timeout=120)
        assert built.returncode == 1
        assert "one writer per index directory" in built.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with FaissClipIndex.open(index_dir, OpenOptions(read_only=True)) as index:
        assert len(index) == 30, "the served index is untouched"


@pytest.mark.slow
def test_no_acknowledged_write_is_lost_over_sigkills(index_dir: Path) -> None:
    rng = np.random.default_rng(7)
    acknowledged: list[int] = []
    snapshots = set()
    for _ in range(10):
        writer = start(WRITER, str(index_dir), str(max(acknowledged, default=-1) + 1))
        assert writer.stdout is not None
        for _ in range(int(rng.integers(5, 60))):
            line = writer.stdout.readline()
            assert line, writer.stderr.read() if writer.stderr else ""
            acknowledged.append(int(line))
        time.sleep(float(rng.uniform(0.0, 0.05)))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate(timeout=30)
        acknowledged += [int(line) for line in out.split()]
        snapshots.add(current_snapshot(index_dir).name)
        with FaissClipIndex.open(index_dir, OpenOptions(read_only=True)) as index:
            found = index.get(f"n{i}" for i in acknowledged)
            assert len(found) == len(acknowledged), "an acknowledged add was lost"
            assert len(index) >= 30 + len(acknowledged)
    assert len(snapshots) >= 3, "the writers folded their logs into new snapshots along the way"


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW8"])
def test_a_replayed_log_gives_the_index_the_writer_had(tmp_path: Path, factory: str) -> None:
    """Replays apply FAISS changes in bulk: adds, upserts and deletes of the same clips, in any order,
    end as they did live (HNSW cannot delete: tombstones)."""
    records, vectors = make_records(80), clustered(80, 8, seed=4)
    with build(records[:60], vectors[:60], factory=factory) as index:
        index.save(tmp_path / "ix")
    queries = clustered(3, 8, seed=5)
    with FaissClipIndex.open(tmp_path / "ix") as live:
        live.add(records[60:70], vectors[60:70])
        live.delete_clips(["c61", "c5"])
        live.upsert(records[0:3], vectors[70:73])  # snapshot clips replaced by new vectors
        live.upsert(records[60:61], vectors[73:74])  # a logged clip deleted, then back
        live.delete_videos(["v2"])
        live.add(records[70:80], vectors[70:80])
        live.delete_clips(["c75"])
        expected = live.search_hits(queries, 80, SearchFilter(), Tuning(nprobe=4))
    with FaissClipIndex.open(tmp_path / "ix", OpenOptions(read_only=True)) as replayed:
        assert replayed.version == "snapshot-000001+7"
        found = replayed.search_hits(queries, 80, SearchFilter(), Tuning(nprobe=4))
    assert [[(h.clip, round(h.score, 5)) for h in row] for row in found] == [
        [(h.clip, round(h.score, 5)) for h in row] for row in expected
    ]
