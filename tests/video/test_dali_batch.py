"""The batch path of DALI (`dali_read_clips`, `DaliSession`) on DALI's CPU decoder with VP9/VP8 files
made here: each video fed once, clips equal to the PyAV path's, bad videos give the PyAV path's typed
errors, and what DALI cannot decode falls back to PyAV with a warning. GPU-only failure modes (NVDEC's
size limits, a session that fails) are driven by real files and a pipeline that fails on purpose."""

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vidsearch.video.dali as dali
from vidsearch.errors import VideoDecodeError
from vidsearch.video import (
    ClipSpec,
    Preprocess,
    ReadOptions,
    get_preprocess_preset,
    probe,
    read_clips,
    segment,
)
from vidsearch.video.dali import DaliSession, dali_read_clips, refusal

from .media import (
    VideoFactory,
    VideoSpec,
    damage_packet,
    packet_layout,
    patch_jpeg_size,
    read_code,
    replace_fourcc,
    truncate,
    unnormalise,
    write_audio_only,
    write_empty_video_track,
)

pytest.importorskip("nvidia.dali")

VP9 = VideoSpec(codec="libvpx-vp9", suffix=".webm", width=192, height=144, frames=90, gop=15)
VP8 = VideoSpec(codec="libvpx", suffix=".webm", width=160, height=120, frames=75, gop=30)
OVERLAPPING = ClipSpec(length_s=1.0, stride_s=0.5)  # neighbouring clips share frames: the union is smaller


def _grey(clip: np.ndarray, spec: Preprocess) -> np.ndarray:
    """[T, H, W, C] uint8 grey levels."""
    return unnormalise(clip, spec.layout, spec.mean, spec.std)


def _assert_same_clips(ours: list[tuple[Any, np.ndarray]], theirs: list[tuple[Any, np.ndarray]],
                       spec: Preprocess) -> None:
    """Same clips in order; per clip mean abs difference ≤ 1 grey level; frames in the same order."""
    assert [c for c, _ in theirs] == [c for c, _ in ours]
    for (_, a), (_, b) in zip(ours, theirs, strict=True):
        assert b.shape == spec.output_shape
        ga, gb = _grey(a, spec), _grey(b, spec)
        assert np.abs(ga.astype(np.int16) - gb).mean() <= 1.0
        assert [read_code(f) for f in gb] == [read_code(f) for f in ga]


@pytest.mark.parametrize("preset", ["viclip", "videomae_v2"])
@pytest.mark.parametrize("spec_name", ["vp9", "vp8"])
def test_one_feed_per_video_and_clips_equal_to_pyav(video_factory: VideoFactory, preset: str,
                                                     spec_name: str) -> None:
    spec = get_preprocess_preset(preset)
    path = video_factory.make(VP9 if spec_name == "vp9" else VP8)
    clips = segment(probe(path), OVERLAPPING)
    session = DaliSession(spec)
    theirs = list(dali_read_clips(path, clips, spec, session=session))
    assert (session.feeds, session.builds) == (1, 1)  # the whole video in one sample
    _assert_same_clips(list(read_clips(path, clips, spec)), theirs, spec)
    again = list(dali_read_clips(path, clips, spec, session=session))
    assert (session.feeds, session.builds) == (2, 1)  # the next video reuses the built pipeline
    for (_, a), (_, b) in zip(again, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_long_video_is_fed_in_samples_of_whole_clips(video_factory: VideoFactory) -> None:
    spec = get_preprocess_preset("viclip")
    path = video_factory.make(VP9)
    clips = segment(probe(path), OVERLAPPING)  # 5 clips of 8 frames
    whole = list(dali_read_clips(path, clips, spec, session=DaliSession(spec)))
    small = DaliSession(spec, max_frames=8)  # one clip's frames at most: a sample per clip
    parts = list(dali_read_clips(path, clips, spec, session=small))
    assert small.feeds == len(clips) > 1
    assert [c for c, _ in parts] == clips
    for (_, a), (_, b) in zip(whole, parts, strict=True):
        np.testing.assert_array_equal(a, b)


def _error(read: Any) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as excinfo:
        list(read())
    return excinfo.value


def _bad_inputs(factory: VideoFactory, tmp: Path) -> dict[str, Path]:
    """Each bad-video kind the PyAV path handles (tests/video/test_bad_inputs.py), as a file."""
    empty = tmp / "empty.webm"
    empty.write_bytes(b"")
    noise = tmp / "noise.webm"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    h264 = factory.make(frames=30)
    mjpeg = factory.make(codec="mjpeg", suffix=".mkv", pix_fmt="yuvj420p", frames=30)
    fifo = tmp / "pipe.webm"
    os.mkfifo(fifo)
    return {
        "a FIFO": fifo,
        "missing": tmp / "nowhere.webm",
        "empty": empty,
        "noise": noise,
        "truncated index": truncate(factory.make(frames=90), tmp / "cut.mp4", 0.6),
        "audio only": write_audio_only(tmp / "talk.m4a"),
        "zero duration": write_empty_video_track(tmp / "no-frames.mkv"),
        "unsupported codec": replace_fourcc(h264, tmp / "mystery.mp4", b"avc1", b"zzzz"),
        "huge frames inside the bitstream": patch_jpeg_size(mjpeg, tmp / "huge-jpeg.mkv", 12000, 12000),
    }


def test_bad_videos_give_the_pyav_paths_typed_error(video_factory: VideoFactory, tmp_path: Path) -> None:
    spec = get_preprocess_preset("viclip")
    clips = [segment(probe(video_factory.make(VP9)), ClipSpec(length_s=1.0))[0]]
    for kind, path in _bad_inputs(video_factory, tmp_path).items():
        pyav = _error(lambda p=path: read_clips(p, clips, spec))
        ours = _error(lambda p=path: dali_read_clips(p, clips, spec, fallback=True))
        assert (type(ours), ours.path, ours.reason) == (type(pyav), pyav.path, pyav.reason), kind


def test_huge_declared_size_is_refused_as_on_the_pyav_path(video_factory: VideoFactory) -> None:
    spec = get_preprocess_preset("viclip")
    path = video_factory.make(VP9)
    clips = segment(probe(path), ClipSpec(length_s=1.0))
    small = ReadOptions(max_pixels=100 * 100)
    pyav = _error(lambda: read_clips(path, clips, spec, small))
    ours = _error(lambda: dali_read_clips(path, clips, spec, options=small, fallback=True))
    assert ours.reason == pyav.reason
    assert "declared frame size 192×144 exceeds the limit" in ours.reason


def test_a_truncated_webm_gives_what_pyav_gives(video_factory: VideoFactory) -> None:
    spec = get_preprocess_preset("viclip")
    cut = truncate(video_factory.make(replace(VP9, frames=150)), video_factory.path("cut-vp9.webm"), 0.6)
    clips = segment(probe(cut), ClipSpec(length_s=1.0))
    skip = ReadOptions(on_clip_error="skip")
    pyav = read_clips(cut, clips, spec, skip)
    ours = dali_read_clips(cut, clips, spec, options=skip, fallback=True)
    theirs = list(ours)
    _assert_same_clips(list(pyav), theirs, spec)
    assert len(theirs) >= 2
    assert ours.failed_clips == pyav.stats.failed_clips


def test_a_damaged_packet_is_never_silently_used(video_factory: VideoFactory, caplog: pytest.LogCaptureFixture
                                                 ) -> None:
    """DALI either refuses the damaged stream (then PyAV decodes it, counting the damage) or decodes
    it; the clips it gives are the clips PyAV gives, and the damaged clip is left out as PyAV does."""
    spec = get_preprocess_preset("viclip")
    path = video_factory.make(replace(VP9, frames=150, gop=30))
    victim = next(i for i, (_, _, _, key) in enumerate(packet_layout(path)) if i > 70 and not key)
    broken = damage_packet(path, video_factory.path("broken-vp9.webm"), victim)
    clips = segment(probe(broken), ClipSpec(length_s=1.0))
    skip = ReadOptions(on_clip_error="skip")
    pyav = read_clips(broken, clips, spec, skip)
    expected = list(pyav)
    ours = dali_read_clips(broken, clips, spec, options=skip, fallback=True)
    with caplog.at_level(logging.WARNING, logger="vidsearch.video.dali"):
        theirs = list(ours)
    assert ours.decoder == "pyav", "DALI decoded a damaged VP9 stream without saying so"
    assert "DALI failed" in caplog.text
    _assert_same_clips(expected, theirs, spec)
    assert ours.failed_clips == pyav.stats.failed_clips


def test_a_codec_dali_cannot_decode_here_falls_back_with_a_warning(video_factory: VideoFactory,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    spec = get_preprocess_preset("viclip")
    path = video_factory.make(frames=45, gop=15)  # H.264: GPU only in DALI
    clips = segment(probe(path), ClipSpec(length_s=0.5))
    session = DaliSession(spec)
    with caplog.at_level(logging.WARNING, logger="vidsearch.video.dali"):
        stream = dali_read_clips(path, clips, spec, fallback=True, session=session)
        got = list(stream)
    assert f"{path}: DALI decodes h264 only on a GPU" in caplog.text
    assert "decoding it with PyAV instead" in caplog.text
    assert (stream.decoder, session.builds, session.feeds) == ("pyav", 0, 0)
    for (c1, a), (c2, b) in zip(got, read_clips(path, clips, spec), strict=True):
        assert c1 == c2
        np.testing.assert_array_equal(a, b)


def test_rotated_video_falls_back_and_is_shown_upright(video_factory: VideoFactory,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    spec = get_preprocess_preset("viclip")
    path = video_factory.make(replace(VP9, frames=30, rotation=90))
    clips = segment(probe(path), ClipSpec(length_s=0.5))
    with caplog.at_level(logging.WARNING, logger="vidsearch.video.dali"):
        got = list(dali_read_clips(path, clips, spec, fallback=True))
    assert "rotated video (90°)" in caplog.text
    for (_, a), (_, b) in zip(got, read_clips(path, clips, spec), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nvdec_size_limits_send_large_frames_to_pyav(video_factory: VideoFactory,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """On a GPU, a frame larger than NVDEC decodes goes to PyAV before any pipeline is built (so this
    runs without a GPU: nothing touches CUDA)."""
    path = video_factory.make(width=4112, height=64, frames=6, options={"preset": "ultrafast"})
    info = probe(path)
    assert refusal(info, "gpu") == "4112×64 exceeds NVDEC's 4096×4096 for h264"
    assert refusal(replace(info, width=4096), "gpu") is None
    assert refusal(replace(info, codec="hevc", width=8000, height=4000), "gpu") is None
    assert refusal(replace(info, codec="theora"), "gpu") == "NVDEC does not decode theora"
    spec = get_preprocess_preset("viclip")
    clips = segment(info, ClipSpec(length_s=1.0))
    session = DaliSession(spec, "gpu", device_id=0)
    with caplog.at_level(logging.WARNING, logger="vidsearch.video.dali"):
        stream = dali_read_clips(path, clips, spec, "gpu", 0, fallback=True, session=session)
        got = list(stream)
    assert "exceeds NVDEC's 4096×4096" in caplog.text
    assert (stream.decoder, session.builds) == ("pyav", 0)
    assert len(got) == len(clips)


class _FailingOnce:
    """A real built pipeline whose first run fails as a broken decoder session does."""

    def __init__(self, pipe: Any, failures: list[int]) -> None:
        self._pipe, self._failures = pipe, failures

    def build(self) -> None:
        self._pipe.build()

    def feed_input(self, name: str, data: Any) -> None:
        self._pipe.feed_input(name, data)

    def run(self) -> Any:
        if self._failures:
            self._failures.pop()
            raise RuntimeError("Critical error in pipeline:\nError in MIXED operator `nvidia.dali.fn."
                               "decoders.video`\n\nencountered:\n\nCUDA error: the decoder session was lost")
        return self._pipe.run()


def test_a_failed_session_is_rebuilt_and_costs_only_its_video(video_factory: VideoFactory,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    spec = get_preprocess_preset("viclip")
    real_build = dali.build_pipeline
    failures = [1]
    monkeypatch.setattr(dali, "build_pipeline", lambda *a, **k: _FailingOnce(real_build(*a, **k), failures))
    first, second = video_factory.make(VP9), video_factory.make(VP8)
    session = DaliSession(spec)
    strict = [segment(probe(p), ClipSpec(length_s=1.0)) for p in (first, second)]
    with pytest.raises(VideoDecodeError, match="DALI failed: CUDA error: the decoder session was lost"):
        list(dali_read_clips(first, strict[0], spec, session=session))  # without fallback: the video fails
    assert list(dali_read_clips(second, strict[1], spec, session=session))  # the next video: a new session
    assert session.builds == 2
    failures.append(1)
    with caplog.at_level(logging.WARNING, logger="vidsearch.video.dali"):
        stream = dali_read_clips(first, strict[0], spec, fallback=True, session=session)
        got = list(stream)
    assert "DALI failed" in caplog.text
    assert stream.decoder == "pyav"  # with fallback even its own video is decoded, by PyAV
    _assert_same_clips(list(read_clips(first, strict[0], spec)), got, spec)
    assert list(dali_read_clips(second, strict[1], spec, session=session))
    assert session.builds == 3


@pytest.mark.gpu
@pytest.mark.parametrize("codec", ["libx264", "libvpx-vp9"])
def test_gpu_sessions_feed_each_video_once_and_match_pyav(video_factory: VideoFactory, codec: str) -> None:
    """On a GPU (NVDEC): H.264 with B-frames and VP9, two sessions in two threads at once."""
    import threading

    spec = get_preprocess_preset("viclip")
    suffix = ".mp4" if codec == "libx264" else ".webm"
    path = video_factory.make(VideoSpec(codec=codec, suffix=suffix, width=320, height=240, frames=90, gop=30))
    clips = segment(probe(path), OVERLAPPING)
    sessions = [DaliSession(spec, "gpu", 0) for _ in range(2)]
    results: list[list[Any]] = [[], []]

    def work(i: int) -> None:
        results[i] = list(dali_read_clips(path, clips, spec, "gpu", 0, session=sessions[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = list(read_clips(path, clips, spec))
    for session, got in zip(sessions, results, strict=True):
        assert (session.feeds, session.builds) == (1, 1)
        _assert_same_clips(expected, got, spec)


def test_a_gpu_session_that_cannot_start_falls_back_to_pyav(video_factory: VideoFactory,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Building the GPU pipeline fails here (no CUDA device), as it does on a GPU out of memory: the
    video goes to PyAV with a warning, and the next video tries a new session."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine where the GPU pipeline cannot be built")
    spec = get_preprocess_preset("viclip")
    path = video_factory.make(VP9)
    clips = segment(probe(path), ClipSpec(length_s=1.0))
    session = DaliSession(spec, "gpu", device_id=0)
    with pytest.raises(VideoDecodeError, match=r"DALI failed: .*CUDA"):
        list(dali_read_clips(path, clips, spec, "gpu", 0, session=session))
    with caplog.at_level(logging.WARNING, logger="vidsearch.video.dali"):
        stream = dali_read_clips(path, clips, spec, "gpu", 0, fallback=True, session=session)
        got = list(stream)
    assert "DALI failed" in caplog.text
    assert (stream.decoder, session.builds, session.feeds) == ("pyav", 0, 0)
    for (_, a), (_, b) in zip(got, read_clips(path, clips, spec), strict=True):
        np.testing.assert_array_equal(a, b)
