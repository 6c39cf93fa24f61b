"""The batch job against hostile inputs and rough endings (issue 18): special files, a decoding process
that makes no progress, SIGINT and SIGKILL of the real `vidsearch embed`, content-sniffed folders,
and a cut-off file. Real H.264/VP8 files, real processes, real signals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from vidsearch.jobs import EXIT_OK, EXIT_WITH_FAILURES, JobSummary, list_inputs, run_embed
from vidsearch.video import ClipSpec, ReadOptions, ShotSpec

from ..runtime.models import Repository
from ..video.media import VideoSpec, truncate, write_long_video, write_video
from .conftest import Corpus
from .helpers import alive, cmdline, descendants, has_open, job, read_output, wait_for

VIDSEARCH = str(Path(sys.executable).parent / "vidsearch")


def _failures(out: Path) -> dict[str, dict[str, str]]:
    return {f["video_id"]: f for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}


def _command(folder: Path, out: Path, repository: Repository, *extra: str) -> list[str]:
    return [VIDSEARCH, "embed", str(folder), "--out", str(out), "--model-repository", str(repository.path),
            "--clip-len", "1.0", "--threads", "1", "--shard-clips", "2", "--no-progress", *extra]


def test_special_files_fail_with_a_line_and_never_hang(repository: Repository, corpus: Corpus,
                                                       tmp_path: Path) -> None:
    fifo = tmp_path / "live.mp4"
    os.mkfifo(fifo)
    manifest = tmp_path / "list.jsonl"
    rows = [{"video": str(fifo), "video_id": "fifo"}, {"video": "/dev/zero", "video_id": "zero"},
            {"video": str(tmp_path), "video_id": "folder"},
            {"video": str(corpus.videos[0]), "video_id": "good"}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results: list[JobSummary] = []
    runner = threading.Thread(target=lambda: results.append(run_embed(job(manifest, tmp_path / "out",
                                                                          repository.path))), daemon=True)
    runner.start()
    runner.join(timeout=120)
    if runner.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the job hung on a special file")
    (summary,) = results
    assert summary.exit_code == EXIT_WITH_FAILURES
    failures = _failures(tmp_path / "out")
    assert failures["fifo"]["message"] == "is a FIFO (named pipe), not a regular video file"
    assert failures["zero"]["message"] == "is a character device, not a regular video file"
    assert failures["folder"]["message"] == "is a directory, not a regular video file"
    assert set(failures) == {"fifo", "zero", "folder"}
    assert len(read_output(tmp_path / "out")) == 2  # the real video went in


@pytest.mark.slow
def test_a_decoding_process_without_progress_is_stopped_at_the_time_limit(
        repository: Repository, corpus: Corpus, tmp_path: Path) -> None:
    """SIGSTOP freezes a decoding process as a read on a hung mount would, where its own deadline
    checks cannot run: only the watchdog outside it can act. It is frozen during shot detection (a
    long pass that sends nothing, so no result is half-sent). The video fails with the limit named,
    and a new process does the rest."""
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    write_long_video(folder / "a-long.mp4", seconds=300)  # first in order
    read = ReadOptions(time_limit_s=1.0, on_clip_error="skip")
    shots = ShotSpec(time_limit_s=5.0)
    results: list[JobSummary] = []
    runner = threading.Thread(target=lambda: results.append(
        run_embed(job(folder, tmp_path / "out", repository.path, workers=1, read=read, scenes=shots))))
    runner.start()

    def on_the_long_video() -> list[int]:
        return [p for p in descendants(os.getpid())
                if "spawn_main" in cmdline(p) and has_open(p, "a-long.mp4")]

    (worker,) = wait_for(on_the_long_video, 60, "no decoding process took up the long video")
    time.sleep(0.3)  # its start event is on its way
    os.kill(worker, signal.SIGSTOP)
    runner.join(timeout=120)
    assert not runner.is_alive(), "the watchdog did not fire"
    (summary,) = results
    assert summary.exit_code == EXIT_WITH_FAILURES
    failure = _failures(tmp_path / "out")["a-long.mp4"]
    assert failure["error_type"] == "TimeLimitExceeded"
    assert "time limit of 8 s" in failure["message"]  # shot detection 5 s + 3 × 1 s (load, probe, decode)
    assert len(read_output(tmp_path / "out")) >= len(corpus.videos)  # a new process did the rest
    wait_for(lambda: not alive(worker), 10, "the frozen process was not stopped")


def test_sigkill_of_the_job_leaves_no_process_behind(repository: Repository, corpus: Corpus,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    write_long_video(folder / "a-long.mp4", seconds=300)
    process = subprocess.Popen(_command(folder, tmp_path / "out", repository, "--workers", "2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def decoding() -> bool:  # both processes at work on videos (past their start-up)
            below = descendants(process.pid)
            workers = [p for p in below if "spawn_main" in cmdline(p) and has_open(p, ".mp4")]
            return len(workers) == 2 and any("resource_tracker" in cmdline(p) for p in below)

        wait_for(decoding, 90, "the decoding processes and the resource tracker did not start")
        below = descendants(process.pid)
    finally:
        process.kill()
        process.wait()
    wait_for(lambda: not any(alive(p) for p in below), 20,
              f"still running after the job was killed: {[cmdline(p) for p in below if alive(p)]}")


def test_a_decoding_process_killed_mid_message_costs_only_its_video(repository: Repository, corpus: Corpus,
                                                                    tmp_path: Path) -> None:
    """SIGKILL of a decoding process of the real command while it streams clips (most of its time is
    spent inside a send, the model being slower): with one queue shared by every process, the half
    message and the lock it held stalled the job; with a pipe of its own, only its video is lost."""
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    write_long_video(folder / "a-long.mp4", seconds=300, width=640, height=360)
    out = tmp_path / "out"
    process = subprocess.Popen(_command(folder, out, repository, "--workers", "2", "--queue-clips", "2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def on_the_long_video() -> list[int]:
            return [p for p in descendants(process.pid)
                    if "spawn_main" in cmdline(p) and has_open(p, "a-long.mp4")]

        (worker,) = wait_for(on_the_long_video, 90, "no decoding process took up the long video")
        time.sleep(1.5)  # into its clips: the pipe to the model is full, the process inside a send
        os.kill(worker, signal.SIGKILL)
        code = process.wait(timeout=180)
    finally:
        process.kill()
        stderr = process.communicate()[1]
    assert code == EXIT_WITH_FAILURES, stderr
    failures = _failures(out)
    assert set(failures) == {"a-long.mp4"}
    assert failures["a-long.mp4"]["error_type"] == "DecoderCrashed"
    videos = {clip_id.split("#")[0] for clip_id in read_output(out)}
    assert videos == {p.name for p in corpus.videos}  # every other video, from both processes


def test_sigint_stops_the_job_promptly_and_keeps_its_commits(repository: Repository, corpus: Corpus,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    shutil.copytree(corpus.folder, folder)
    write_long_video(folder / "z-long.mp4", seconds=60, width=320, height=180)  # last in order
    out = tmp_path / "out"
    process = subprocess.Popen(_command(folder, out, repository), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        ledger = out / "ledger.jsonl"
        wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 4, 120,
                  "nothing was committed")
        below = descendants(process.pid)
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = process.wait(timeout=60)
        took = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
    assert code == 130  # 128 + SIGINT, as shells report an interrupted command
    assert took < 30, f"SIGINT took {took:.1f} s to stop the job"  # 1–5 s here, on a loaded machine
    wait_for(lambda: not any(alive(p) for p in below), 10, "a process outlived the interrupted job")
    kept = read_output(out)
    assert kept  # what was committed stays, and a second run completes it
    again = run_embed(job(folder, out, repository.path, workers=2, clips=ClipSpec(1.0)))
    assert again.exit_code == EXIT_OK
    assert set(kept) <= set(read_output(out))


def _write_opus(path: Path) -> None:
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        for start in range(0, 48000, 960):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_folder_lists_videos_by_content(corpus: Corpus, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(corpus.videos[0], folder / "a.mp4")
    write_video(folder / "b.ogg", VideoSpec(codec="libvpx", suffix=".ogg", frames=15))  # VP8 in Ogg
    _write_opus(folder / "music.ogg")  # audio alone: passed over
    shutil.copy(corpus.videos[1], folder / "export-without-suffix")
    (folder / "notes.txt").write_text("not a video")
    (folder / "picture.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    os.mkfifo(folder / "pipe.ogg")  # never opened while listing
    os.mkfifo(folder / "pipe.mp4")  # a video suffix: listed, to fail with a line saying what it is
    (folder / "dir.mp4").mkdir()
    assert [i.video_id for i in list_inputs(str(folder))] == ["a.mp4", "b.ogg", "export-without-suffix",
                                                              "pipe.mp4"]
    with av.open(str(folder / "b.ogg")) as container:
        assert container.format.name == "ogg"


def test_a_cut_off_file_is_recorded_with_what_is_missing(repository: Repository, corpus: Corpus,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    whole = write_video(folder / "whole.mp4", VideoSpec(frames=150, gop=15, width=96, height=64,
                                                        container_options={"movflags": "faststart"}))
    truncate(whole, folder / "cut.mp4", 0.6)
    out = tmp_path / "out"
    summary = run_embed(job(folder, out, repository.path))
    assert summary.exit_code == EXIT_WITH_FAILURES
    (failure,) = _failures(out).values()
    assert (failure["video_id"], failure["error_type"]) == ("cut.mp4", "TruncatedVideo")
    assert "of the 5.00 s its headers claim could be read" in failure["message"]
    clips = read_output(out)
    whole_clips = sorted(c for c in clips if c.startswith("whole.mp4#"))
    cut_clips = sorted(c for c in clips if c.startswith("cut.mp4#"))
    assert 0 < len(cut_clips) < len(whole_clips)  # the readable part went in
    for clip in cut_clips:
        np.testing.assert_allclose(clips[clip], clips[clip.replace("cut", "whole")], atol=1e-6)
