"""Exactly once under SIGKILL: the real command killed at random moments, run again until it finishes;
every clip is then in the output once, with the vectors of an uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vidsearch.index.parquet import ShardRows
from vidsearch.jobs import EXIT_OK, run_embed
from vidsearch.jobs.decoding import Failure
from vidsearch.jobs.ledger import LEDGER, Ledger, shard_name

from ..runtime.models import Repository
from .conftest import CLIP_LEN, Corpus
from .helpers import job, read_output

KILLS = 4


def _commits(out: Path) -> int:
    ledger = out / LEDGER
    return ledger.read_bytes().count(b"\n") if ledger.exists() else 0


def _command(corpus: Corpus, out: Path, repository: Repository) -> list[str]:
    return [sys.executable, "-c", "from vidsearch.cli import app; app()", "embed", str(corpus.folder),
            "--out", str(out), "--model-repository", str(repository.path), "--clip-len", str(CLIP_LEN),
            "--shard-clips", "2", "--workers", "2", "--threads", "1", "--no-progress"]


@pytest.mark.slow
def test_killed_at_random_moments_then_resumed(repository: Repository, corpus: Corpus,
                                               tmp_path: Path) -> None:
    assert run_embed(job(corpus.folder, tmp_path / "clean", repository.path)).exit_code == EXIT_OK
    reference = read_output(tmp_path / "clean")
    out = tmp_path / "killed"
    rng = random.Random(8)
    killed, commits = 0, [0]
    for attempt in range(KILLS):
        process = subprocess.Popen(_command(corpus, out, repository), start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the first kill lands while the job starts (at a random moment, or at its first commit at the
        # latest); the others once the next commit is in, after a random few milliseconds more (inside
        # the following commit, or between two). The job starts in ~1.1 s and then makes its 8 commits
        # in ~40 ms (measured 2026-12-06), so the ledger is polled every millisecond and the extra wait
        # stays under one commit; a longer one let the job finish with nothing left to kill. The target
        # stops short of the last commit for the same reason.
        target = min(commits[-1] + 1, len(corpus.videos) - 1) if attempt else 1
        deadline = time.monotonic() + (rng.uniform(0.3, 1.0) if attempt == 0 else 60)
        while _commits(out) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.004) if attempt else 0.0)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the command and its decoding processes
            killed += 1
        process.wait()
        commits.append(_commits(out))
    # the kills must have landed mid-job, or the test proves nothing
    assert killed >= 3, commits
    assert any(0 < n < len(corpus.videos) for n in commits), commits
    final = subprocess.run(_command(corpus, out, repository), capture_output=True, text=True, timeout=120)
    assert final.returncode == EXIT_OK, final.stderr
    vectors = read_output(out)  # fails on any clip id twice
    assert sorted(vectors) == corpus.clip_ids == sorted(reference)
    for clip_id, vector in reference.items():
        np.testing.assert_allclose(vectors[clip_id], vector, atol=1e-5)
    assert json.loads((out / "summary.json").read_text())["clips_total"] == len(reference)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _rows(video: str) -> ShardRows:
    return ShardRows([f"{video}#00000"], [video], ["file:///v"], np.zeros(1), np.ones(1), ["m"],
                     np.ones((1, 4), np.float32), ["d"])


def test_a_torn_commit_is_undone_on_open(tmp_path: Path) -> None:
    identity = {"job": 1}
    ledger = Ledger(tmp_path, identity)
    ledger.commit(_rows("a"), ["a"], [], float16=False, model_checksum="")
    ledger.commit(None, ["bad"], [Failure("bad", "file:///bad", "VideoDecodeError", "empty")],
                  float16=False, model_checksum="")
    ledger.close()
    # killed after the shard's rename, before its ledger line was whole
    (tmp_path / shard_name(2)).write_bytes(b"PAR1")
    (tmp_path / f"{shard_name(2)}.sha256").write_text("0" * 64)
    with open(tmp_path / LEDGER, "ab") as handle:
        handle.write(b'{"shard": "part-000002.parquet", "vid')
    (tmp_path / ".part-000003.parquet.tmp-4242").write_bytes(b"partial")  # as atomic_path names it
    reopened = Ledger(tmp_path, identity)
    try:
        assert reopened.settled == {"a", "bad"}
        names = sorted(p.name for p in tmp_path.glob("*parquet*"))
        assert names == [shard_name(0), f"{shard_name(0)}.sha256"], "stray shards and digests removed"
        assert [f.video_id for f in reopened.failures()] == ["bad"]
        reopened.commit(_rows("b"), ["b"], [], float16=False, model_checksum="")
        assert (tmp_path / shard_name(2)).is_file()
        assert len((tmp_path / LEDGER).read_text().splitlines()) == 3
    finally:
        reopened.close()


def test_one_job_per_output_directory(tmp_path: Path) -> None:
    from vidsearch.errors import JobError

    first = Ledger(tmp_path, {"job": 1})
    try:
        with pytest.raises(JobError, match="another job"):
            Ledger(tmp_path, {"job": 1})
    finally:
        first.close()
