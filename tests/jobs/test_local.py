"""The local engine end to end: real H.264 files, decoding processes, ONNX Runtime, Parquet shards."""

import json
import multiprocessing
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vidsearch.errors import JobError, JobMismatchError
from vidsearch.index import FaissClipIndex, OpenOptions, SearchOptions
from vidsearch.index.build import build_from_parquet
from vidsearch.index.parquet import scan_shards
from vidsearch.jobs import EXIT_OK, EXIT_WITH_FAILURES, JobSummary, run_embed
from vidsearch.runtime import RuntimeConfig, open_runtime
from vidsearch.serving.media import VideoModels
from vidsearch.serving.settings import LimitSettings
from vidsearch.video import ClipSpec

from ..runtime.models import Repository
from ..video.media import truncate, write_audio_only, write_empty_video_track, write_long_video
from .conftest import CLIP_LEN, Corpus
from .helpers import has_open, job, read_output


class _NoDeadline:
    """The gRPC context a `RequestDeadline` reads: no deadline, never cancelled."""

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True


def test_embeds_every_clip_into_shards(repository: Repository, corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run_embed(job(corpus.folder, out, repository.path, workers=2))
    assert summary.exit_code == EXIT_OK
    assert (summary.videos, summary.clips, summary.videos_failed) == (8, 16, 0)
    vectors = read_output(out)
    assert sorted(vectors) == corpus.clip_ids
    assert np.allclose(np.linalg.norm(np.stack(list(vectors.values())), axis=1), 1.0, atol=1e-5)
    shards = scan_shards(out)
    assert shards.rows == 16
    assert shards.dim == 32
    assert len(shards.files) == 4
    row = pq.read_table(shards.files[0]).slice(0, 1).to_pylist()[0]
    assert row["model"] == "tiny-viclip"
    assert len(row["preprocess"]) == 16
    assert row["uri"].startswith("file://")
    assert row["end_s"] > row["start_s"]
    assert json.loads((out / "summary.json").read_text())["exit_code"] == 0
    assert (out / "failures.jsonl").read_text() == ""

    # the same vectors as the Ingest RPC's path through the server (ARCHITECTURE: one preprocessing)
    from vidsearch.serving.deadline import RequestDeadline

    runtime = open_runtime(RuntimeConfig(model_repository=repository.path, threads=1))
    try:
        models = VideoModels(runtime, LimitSettings())
        deadline = RequestDeadline(_NoDeadline(), 60.0)  # type: ignore[arg-type]
        video = corpus.videos[3]
        clips, duration = models.segment(video, ClipSpec(CLIP_LEN), deadline)
        served = models.embed(video, clips, duration, deadline)
    finally:
        runtime.close()
    batch = np.stack([vectors[f"{video.name}#{c.index:05d}"] for c in served.clips])
    np.testing.assert_allclose(batch, served.values, atol=1e-5)

    # `vidsearch index build --from OUT` reads the job's output as it is
    index_dir = tmp_path / "index"
    stats = build_from_parquet(out, index_dir)
    assert (stats.clips, stats.videos) == (16, 8)
    with FaissClipIndex.open(index_dir, OpenOptions(read_only=True)) as index:
        page = index.search(vectors[f"{video.name}#00001"][None, :], SearchOptions(top_k=1))[0]
    assert page.hits[0].clip.clip_id == f"{video.name}#00001"


def test_a_second_run_resumes_and_refuses_another_job(repository: Repository, corpus: Corpus,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_embed(job(corpus.folder, out, repository.path))
    again = run_embed(job(corpus.folder, out, repository.path, engine="local", workers=2, batch_size=3))
    assert (again.videos, again.videos_skipped, again.clips, again.clips_total) == (0, 8, 0, first.clips)
    with pytest.raises(JobMismatchError, match="clips"):
        run_embed(job(corpus.folder, out, repository.path, clips=ClipSpec(1.0)))
    with pytest.raises(JobMismatchError, match="dtype"):
        run_embed(job(corpus.folder, out, repository.path, float16=True))
    redone = run_embed(job(corpus.folder, out, repository.path, float16=True, overwrite=True))
    assert redone.clips == 16
    assert pq.read_schema(scan_shards(out).files[0]).field("embedding").type.value_type == "halffloat"
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(JobError, match="not empty"):
        run_embed(job(corpus.folder, stranger, repository.path))


def test_bad_videos_are_recorded_and_the_job_goes_on(repository: Repository, corpus: Corpus,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(corpus.folder, folder)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    write_audio_only(folder / "audio.m4a.mp4")
    write_empty_video_track(folder / "no-frames.mkv")
    truncate(corpus.videos[0], folder / "cut.mp4", 0.3)
    out = tmp_path / "out"
    summary = run_embed(job(folder, out, repository.path, workers=2))
    assert summary.exit_code == EXIT_WITH_FAILURES
    failures = {f["video_id"]: f for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert {"empty.mp4", "noise.mp4", "audio.m4a.mp4", "no-frames.mkv", "cut.mp4"} == set(failures)
    assert failures["empty.mp4"]["error_type"] == "VideoDecodeError"
    assert failures["empty.mp4"]["message"] == "empty file (0 bytes)"
    assert "audio only" in failures["audio.m4a.mp4"]["message"]
    assert failures["noise.mp4"]["uri"] == (folder / "noise.mp4").absolute().as_uri()
    assert sorted(read_output(out)) == corpus.clip_ids  # the good videos all went in
    again = run_embed(job(folder, out, repository.path))
    assert (again.videos, again.failures_total, again.exit_code) == (0, 5, EXIT_WITH_FAILURES)


def test_a_dead_decoding_process_costs_only_its_video(repository: Repository, corpus: Corpus,
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    write_long_video(folder / "a-long.mp4", seconds=300)  # first in order: the process is on it when killed
    results: list[JobSummary] = []
    runner = threading.Thread(target=lambda: results.append(
        run_embed(job(folder, tmp_path / "out", repository.path, workers=1))))
    runner.start()
    deadline = time.monotonic() + 90
    while not [p for p in multiprocessing.active_children()
               if p.name == "vidsearch-decode-0" and p.pid is not None and has_open(p.pid, "a-long.mp4")]:
        assert time.monotonic() < deadline, "no decoding process took up the long video"
        time.sleep(0.05)
    time.sleep(0.5)  # into the long video, its start event delivered
    (process,) = [p for p in multiprocessing.active_children() if p.name == "vidsearch-decode-0"]
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    runner.join(timeout=120)
    (summary,) = results
    assert summary.exit_code == EXIT_WITH_FAILURES
    (failure,) = map(json.loads, (tmp_path / "out" / "failures.jsonl").read_text().splitlines())
    assert (failure["video_id"], failure["error_type"]) == ("a-long.mp4", "DecoderCrashed")
    assert sorted(read_output(tmp_path / "out")) == corpus.clip_ids  # a new process did the rest
