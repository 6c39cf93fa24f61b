"""A saving process killed (SIGKILL) at random moments always leaves a loadable index: old or new."""

from __future__ import annotations

import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vidsearch.index import FaissClipIndex, OpenOptions, SearchFilter, Tuning

from .helpers import build, clustered, make_records

KILLS = 50
PARALLEL = 2  # savers at once: the test waits mostly on process start-up

# Opens the directory (changes kept in memory until saved), changes contents A into contents B, then
# saves B, A, B, A, ... until it is killed ("once": save B a single time and exit). Going back to A
# re-inserts the clips B removed, whose records and vectors the test hands over in restore.pkl.
SAVER = """
import pickle
import sys
from pathlib import Path

import numpy as np

from vidsearch.index import ClipRecord, FaissClipIndex, OpenOptions

directory, mode = Path(sys.argv[1]), sys.argv[2]
restore, restore_vectors = pickle.loads((directory.parent / "restore.pkl").read_bytes())
index = FaissClipIndex.open(directory, OpenOptions(log_changes=False))
rng = np.random.default_rng(0)
moved = ClipRecord("c0", "v99", "file:///moved.mp4", 0.0, 1.0, index.model, tags=frozenset({"moved"}))
moved_vector = rng.standard_normal((1, index.dim))
extra = [ClipRecord(f"n{i}", "v100", "file:///v100.mp4", i, i + 1.0, index.model) for i in range(20)]
extra_vectors = rng.standard_normal((20, index.dim))


def to_b():
    index.delete_videos(["v1"])
    index.upsert([moved], moved_vector)
    index.add(extra, extra_vectors)


def to_a():
    index.delete_videos(["v100"])
    index.upsert(restore, restore_vectors)


to_b()
if mode == "once":
    index.save()
    sys.exit(0)
print("ready", flush=True)
while True:
    index.save()
    to_a()
    index.save()
    to_b()
"""


def contents(directory: Path, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    with FaissClipIndex.open(directory, OpenOptions(read_only=True)) as index:
        hits = index.search_hits(queries, len(index), SearchFilter(), Tuning())
    return [[(repr(h.clip), round(h.score, 5)) for h in row] for row in hits]


def interrupted(directory: Path) -> bool:
    """True if the kill landed inside a save: a temporary or not-yet-current snapshot is left."""
    names = [p.name for p in directory.iterdir() if p.is_dir()]
    return any(n.startswith(".tmp-") for n in names) or sum(n.startswith("snapshot-") for n in names) > 1


def spawn_saver(script: Path, template: Path, work: Path) -> subprocess.Popen[bytes]:
    shutil.copytree(template, work)
    return subprocess.Popen(
        [sys.executable, str(script), str(work), "loop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_ready(saver: subprocess.Popen[bytes]) -> None:
    """Block until the saver has loaded both copies and is about to start saving."""
    assert saver.stdout is not None
    assert saver.stdout.readline() == b"ready\n", saver.stderr.read() if saver.stderr else ""


@pytest.mark.slow
def test_killed_saves_leave_old_or_new_contents(tmp_path: Path) -> None:
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    template = tmp_path / "template"
    records, vectors = make_records(150), clustered(150, 16, seed=1)
    build(records, vectors).save(template)
    back = [0, *range(10, 20)]  # c0 (moved away in B) and the clips of v1 (deleted in B)
    (tmp_path / "restore.pkl").write_bytes(pickle.dumps(([records[i] for i in back], vectors[back])))
    queries = clustered(3, 16, seed=2)
    expected_new = tmp_path / "expected-new"
    shutil.copytree(template, expected_new)
    subprocess.run([sys.executable, str(script), str(expected_new), "once"], check=True, timeout=60)
    old, new = contents(template, queries), contents(expected_new, queries)
    assert old != new

    rng = np.random.default_rng(42)
    seen: dict[str, int] = {"old": 0, "new": 0}
    mid_save = 0
    for first in range(0, KILLS, PARALLEL):
        works = [tmp_path / f"kill-{attempt}" for attempt in range(first, first + PARALLEL)]
        savers = [spawn_saver(script, template, work) for work in works]
        for saver in savers:
            wait_ready(saver)
            time.sleep(rng.uniform(0.0, 0.08))
            saver.send_signal(signal.SIGKILL)
            saver.wait(timeout=30)
        for work in works:
            mid_save += interrupted(work)
            found = contents(work, queries)
            assert found in (old, new), (
                f"{work.name}: the directory holds neither the old nor the new contents"
            )
            seen["old" if found == old else "new"] += 1
            shutil.rmtree(work)
    assert seen["old"] > 0
    assert seen["new"] > 0
    assert mid_save >= 5, f"only {mid_save} of {KILLS} kills interrupted a save: the test lost its teeth"
