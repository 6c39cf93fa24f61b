"""Each file is read once per stage: the probe's timeline goes to the decoder (one demux pass before
decoding, not two), the DALI path reads the file once into memory. Counted on real files by wrapping
`av.open` and `os.open`; the tensors are bit-identical to a decoder that scans the file itself."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import vidsearch.video.source as source_module
from vidsearch.video import ClipSpec, get_preprocess_preset, probe, probe_timeline, read_clips, segment
from vidsearch.video.source import Deadline, load_input

from .media import VideoFactory, VideoSpec

SPEC = get_preprocess_preset("viclip")
FILES = {
    "h264-bframes": VideoSpec(frames=90, gop=30),
    "h264-vfr": VideoSpec(frames=40, pts=tuple(i * 3 + (i % 3) for i in range(40)), time_base=(1, 90)),
    "h264-rotated": VideoSpec(frames=45, rotation=90, audio=True),
}


class Opens:
    """Counts the containers FFmpeg opens, and the files opened by path, while a test runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.containers = 0
        self.files: list[str] = []
        real_av_open: Callable[..., Any] = av.open
        real_os_open: Callable[..., int] = os.open

        def counting_av_open(*args: Any, **kwargs: Any) -> Any:
            self.containers += 1
            return real_av_open(*args, **kwargs)

        def counting_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
            self.files.append(os.fspath(path))
            return real_os_open(path, *args, **kwargs)

        monkeypatch.setattr(source_module.av, "open", counting_av_open)
        monkeypatch.setattr(source_module.os, "open", counting_os_open)


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_probe_timeline_spares_the_decoder_a_demux_pass(video_factory: VideoFactory, name: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = video_factory.make(FILES[name])
    clips = segment(probe(path), ClipSpec(length_s=0.5))
    scanned_itself = [(c, t) for c, t in read_clips(path, clips, SPEC)]

    opens = Opens(monkeypatch)
    probed = probe_timeline(path)
    assert opens.containers == 1  # one pass: timeline and the first frame's rotation together
    assert probed.info == probe(path)
    assert probed.info.rotation == FILES[name].rotation
    opens.containers = 0
    handed = list(read_clips(path, segment(probed.info, ClipSpec(length_s=0.5)), SPEC,
                             timeline=probed.timeline))
    assert opens.containers == 1  # the decoding pass only: no second scan
    assert [c for c, _ in handed] == [c for c, _ in scanned_itself] == clips
    for (_, ours), (_, theirs) in zip(handed, scanned_itself, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_job_reads_each_video_in_two_passes(video_factory: VideoFactory, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    from vidsearch.jobs.decoding import ClipTensor, DecodeSettings, VideoEnd, decode_video
    from vidsearch.jobs.inputs import list_inputs
    from vidsearch.video import ReadOptions

    path = video_factory.make(FILES["h264-bframes"])
    (item,) = list_inputs(str(path))
    settings = DecodeSettings(SPEC, ClipSpec(1.0), None, ReadOptions())
    opens = Opens(monkeypatch)
    events = list(decode_video(item, settings))
    assert [type(e) for e in events] == [ClipTensor] * 3 + [VideoEnd]
    assert events[-1].failure is None
    assert (opens.containers, opens.files) == (2, [str(path), str(path)])  # probe, then decode


def test_loading_reads_the_file_once(video_factory: VideoFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = video_factory.make(FILES["h264-bframes"])
    opens = Opens(monkeypatch)
    data = load_input(path, Deadline(str(path), 10.0))
    assert data.getvalue() == Path(path).read_bytes()
    assert data.name == str(path)
    probed = probe_timeline(data)
    assert probed.info.source == str(path)  # errors and logs name the file, not "<bytes>"
    assert (opens.containers, opens.files) == (1, [str(path)])
