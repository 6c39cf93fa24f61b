"""The DALI pipeline built from the same spec, run on the CPU, against the PyAV path.

Tolerance: one grey level (1/255 before normalisation) per value. Both paths convert YUV with the
same arithmetic (swscale's bilinear full-chroma conversion, BT.601) and resize in float with the
same geometry; what remains is float rounding at exact .5 boundaries, where one path rounds up and
the other down. Measured: at most 1 level, on fewer than 1 % of values.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidsearch.errors import MissingDependencyError, VideoDecodeError
from vidsearch.video import ClipSpec, get_preprocess_preset, probe, read_clips, segment
from vidsearch.video.dali import Device, build_pipeline, dali_read_clips

from .media import VideoFactory, VideoSpec

pytest.importorskip("nvidia.dali")  # in the test extra; this keeps a bare install's suite running

FILES = {
    "vp9": VideoSpec(codec="libvpx-vp9", suffix=".webm", width=320, height=240, frames=45, gop=15),
    "vp8": VideoSpec(codec="libvpx", suffix=".webm", width=320, height=180, frames=45, gop=15),
    "mjpeg": VideoSpec(codec="mjpeg", suffix=".mkv", pix_fmt="yuvj420p", width=320, height=240, frames=45),
}


def _compare(path: Path, preset: str, device: Device = "cpu", device_id: int | None = None) -> None:
    spec = get_preprocess_preset(preset)
    clips = segment(probe(path), ClipSpec(length_s=0.5))
    ours = list(read_clips(path, clips, spec))
    theirs = list(dali_read_clips(path, clips, spec, device=device, device_id=device_id))
    assert [c for c, _ in theirs] == clips
    one_level = 1.0 / 255.0 / min(spec.std) + 1e-5
    for (_, a), (_, b) in zip(ours, theirs, strict=True):
        assert b.shape == spec.output_shape
        assert b.dtype == np.float32
        difference = np.abs(a - b)
        assert difference.max() <= one_level
        assert (difference > 1e-5).mean() < 0.01


@pytest.mark.parametrize("preset", ["viclip", "videomae_v2"])
@pytest.mark.parametrize("file_name", sorted(FILES))
def test_cpu_pipeline_matches_the_pyav_path(video_factory: VideoFactory, file_name: str, preset: str) -> None:
    _compare(video_factory.make(FILES[file_name]), preset)


def test_gpu_pipeline_is_defined_and_serialised_without_a_gpu() -> None:
    pipe = build_pipeline(get_preprocess_preset("videomae_v2"), device="gpu", batch_size=4, device_id=None)
    serialised = pipe.serialize()  # what a Triton DALI model stores (model.dali)
    assert b"decoders__Video" in serialised
    assert b"device\x12\x06string*\x05mixed" in serialised  # the decoder runs on the GPU (NVDEC)
    assert b"__Video_0\x12\x03gpu" in serialised  # and hands frames on in GPU memory
    cpu = build_pipeline(get_preprocess_preset("videomae_v2"), device="cpu", batch_size=4).serialize()
    assert b"device\x12\x06string*\x05mixed" not in cpu  # the CPU variant differs only in the device
    assert b"__Video_0\x12\x03cpu" in cpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks how a GPU-less machine fails")
def test_running_the_gpu_pipeline_without_a_gpu_fails_plainly(video_factory: VideoFactory) -> None:
    with pytest.raises(RuntimeError, match="CUDA"):
        build_pipeline(get_preprocess_preset("viclip"), device="gpu", device_id=0).build()


@pytest.mark.gpu
def test_gpu_pipeline_matches_the_pyav_path_on_h264(video_factory: VideoFactory) -> None:
    _compare(video_factory.make(width=320, height=240, frames=45, gop=15), "viclip", "gpu", 0)


def test_cpu_decoding_of_h264_is_refused_with_the_reason(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=30)
    clips = segment(probe(path), ClipSpec())
    with pytest.raises(VideoDecodeError, match="DALI decodes h264 only on a GPU"):
        list(dali_read_clips(path, clips, get_preprocess_preset("viclip")))


def test_rotated_video_is_refused(video_factory: VideoFactory) -> None:
    path = video_factory.make(codec="libvpx-vp9", suffix=".webm", frames=15, rotation=90)
    with pytest.raises(VideoDecodeError, match="rotated video"):
        list(dali_read_clips(path, segment(probe(path), ClipSpec()), get_preprocess_preset("viclip")))


def test_without_dali_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what Python does when it is not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'vidsearch\[gpu\]'"):
        build_pipeline(get_preprocess_preset("viclip"), device="cpu")


def test_the_dali_path_reads_a_file_once(video_factory: VideoFactory,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from vidsearch.video import probe_timeline
    from vidsearch.video.source import Deadline, load_input

    from .test_demux_once import Opens

    path = video_factory.make(FILES["vp9"])
    spec = get_preprocess_preset("viclip")
    clips = segment(probe(path), ClipSpec(length_s=0.5))
    opens = Opens(monkeypatch)
    by_path = list(dali_read_clips(path, clips, spec))
    assert (opens.containers, opens.files) == (1, [str(path)])  # read into memory once, probed there
    opens.files.clear()
    opens.containers = 0
    data = load_input(path, Deadline(str(path), 10.0))  # as the job does: load, probe, cut, decode
    probed = probe_timeline(data)
    handed = list(dali_read_clips(data, clips, spec, probed=probed))
    assert (opens.containers, opens.files) == (1, [str(path)])
    assert [c for c, _ in handed] == [c for c, _ in by_path] == clips
    for (_, a), (_, b) in zip(handed, by_path, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_dali_path_names_the_file_in_its_errors(video_factory: VideoFactory) -> None:
    path = video_factory.make(frames=15)  # H.264: not decodable by DALI on the CPU
    clips = segment(probe(path), ClipSpec(length_s=0.5))
    with pytest.raises(VideoDecodeError) as excinfo:
        next(iter(dali_read_clips(path, clips, get_preprocess_preset("viclip"))))
    assert excinfo.value.path == str(path)
    assert "only on a GPU" in excinfo.value.reason
