"""The decode stage: decoder choice by capability (DALI on a GPU, faked here), and inputs → work items."""

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vidsearch.video.dali as dali
from vidsearch.errors import ConfigError, JobError
from vidsearch.jobs import decoding
from vidsearch.jobs.decoding import ClipTensor, DecodeSettings, VideoEnd, decode_video, resolve_decoder
from vidsearch.jobs.inputs import list_inputs
from vidsearch.video import Clip, ClipSpec, Preprocess, Probed, ReadOptions, get_preprocess_preset
from vidsearch.video.source import LoadedInput

from ..video.test_demux_once import Opens
from .conftest import CLIP_LEN, SCENES, Corpus


def test_decoder_choice_without_a_gpu(monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    assert decoding.gpu_count() == 0  # no GPU on the build machines
    assert resolve_decoder("auto") == ("pyav", "cpu")
    assert resolve_decoder("pyav") == ("pyav", "cpu")
    with caplog.at_level(logging.WARNING, logger="vidsearch.jobs.decoding"):
        assert resolve_decoder("dali") == ("dali", "cpu")  # DALI's CPU decoder: VP8/VP9/MJPEG
    assert "DALI decodes VP8, VP9 and MJPEG on the CPU" in caplog.text
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what Python does when it is not installed
    with pytest.raises(ConfigError, match="needs NVIDIA DALI"):
        resolve_decoder("dali")


def test_dali_decodes_on_the_gpu_when_there_is_one(monkeypatch: pytest.MonkeyPatch, corpus: Corpus) -> None:
    calls: list[dict[str, Any]] = []

    class FakeClips:
        def __init__(self, source: LoadedInput, clips: Sequence[Clip], spec: Preprocess, device: str,
                     device_id: int, options: ReadOptions, probed: Probed, fallback: bool) -> None:
            calls.append({"source": source, "clips": list(clips), "spec": spec, "device": device,
                          "device_id": device_id, "probed": probed, "fallback": fallback})
            self.clips, self.spec = clips, spec
            self.failed_clips: list[tuple[int, str]] = []

        def __iter__(self) -> Iterator[tuple[Clip, np.ndarray]]:
            for clip in self.clips:
                yield clip, np.zeros(self.spec.output_shape, np.float32)

    monkeypatch.setattr(decoding, "gpu_count", lambda: 1)
    monkeypatch.setattr(dali, "dali_read_clips", FakeClips)
    assert resolve_decoder("auto") == ("dali", "gpu")
    spec = get_preprocess_preset("viclip")
    settings = DecodeSettings(spec, ClipSpec(CLIP_LEN), None, ReadOptions(), "dali", "gpu", device_id=0)
    item = list_inputs(str(corpus.videos[0]))[0]
    opens = Opens(monkeypatch)
    events = list(decode_video(item, settings))
    assert [type(e) for e in events] == [ClipTensor] * SCENES + [VideoEnd]
    assert events[-1] == VideoEnd(item.video_id, SCENES)
    (call,) = calls
    assert (call["device"], call["device_id"], call["spec"], call["fallback"]) == ("gpu", 0, spec, True)
    assert [c.index for c in call["clips"]] == list(range(SCENES))
    # the file is read once, into memory; the probe ran there and its timeline goes to DALI
    assert (call["source"].name, call["source"].getvalue()) == (item.path, corpus.videos[0].read_bytes())
    assert (opens.files, opens.containers) == ([item.path], 1)
    assert call["probed"].timeline.frame_count == call["probed"].info.frame_count > 0


def test_inputs_folder_glob_and_manifest(corpus: Corpus, tmp_path: Path) -> None:
    names = sorted(p.name for p in corpus.videos)
    assert [i.video_id for i in list_inputs(str(corpus.folder))] == names
    assert [i.video_id for i in list_inputs(str(corpus.folder / "clip-[0-3].mp4"))] == names[:4]
    manifest = tmp_path / "list.jsonl"
    rows = [{"video": str(corpus.videos[1]), "video_id": "yt:abc", "start": 0, "end": 1, "caption": "x"},
            {"video": str(corpus.videos[1]), "video_id": "yt:abc", "start": 1, "end": 2, "caption": "y"},
            {"video": str(corpus.videos[2])}]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = list_inputs(str(manifest))
    assert [(i.video_id, Path(i.path)) for i in items] == [(corpus.videos[2].as_posix(), corpus.videos[2]),
                                                           ("yt:abc", corpus.videos[1])]
    csv = tmp_path / "list.csv"
    csv.write_text("video,video_id\nx.mp4,a\ny.mp4,a\n")
    with pytest.raises(JobError, match="more than once"):
        list_inputs(str(csv))
    with pytest.raises(JobError, match="no such folder"):
        list_inputs(str(tmp_path / "nowhere"))
    with pytest.raises(JobError, match="names no videos"):
        list_inputs(str(tmp_path / "*.avi"))
