"""`vidsearch demo` end to end with a small model and corpus: export, server, Ingest, queries, sheet."""

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console

from vidsearch.demo import run as demo
from vidsearch.demo.corpus import CorpusSpec
from vidsearch.demo.run import DemoOptions, run_demo
from vidsearch.index import FaissClipIndex, OpenOptions
from vidsearch.models import create_model
from vidsearch.serving.settings import load_settings
from vidsearch.training import artifact
from vidsearch.video import Preprocess, SamplingRule

from ..tiny_configs import TINY_VICLIP


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained-model folder as `vidsearch train` writes it (random weights, stored as float16)."""
    folder = tmp_path_factory.mktemp("model") / "tiny-demo"
    preset = folder.parent / "tiny-demo.json"
    preset.write_text(json.dumps({"family": "viclip", "config": TINY_VICLIP}))
    torch.manual_seed(0)
    spec = Preprocess(SamplingRule(8), size=(32, 32))
    model = create_model(preset)
    return artifact.save_model_folder(folder, model, "viclip", "tiny-demo", spec, torch.float16)


def test_the_demo_indexes_unseen_videos_queries_them_and_draws_the_hits(model_folder: Path,
                                                                        tmp_path: Path) -> None:
    workdir = tmp_path / "demo [v1]"  # printed as typed, not read as Rich markup
    output = io.StringIO()
    options = DemoOptions(workdir, model_folder, CorpusSpec(videos=2, scenes_per_video=3, size=64), top_k=4)
    result = run_demo(options, Console(file=output, width=200))
    text = output.getvalue()
    assert f"6 scenes of 2 s (seed 2026, never seen by the model) in {workdir / 'videos'}" in text
    assert "exported viclip_text, viclip_vision" in text
    assert "6 clips of 2 videos ingested" in text
    assert "server: stopped" in text
    assert "page: http://127.0.0.1:" in text  # the web page's address, while the server ran
    assert 1 <= len(result.results) <= 4
    for query in result.results:
        assert len(query.hits) == 4
        assert all(h.end_s - h.start_s == pytest.approx(2.0) and h.start_s % 2 == 0 for h in query.hits)
        assert all(truth.startswith(("a ", "an ")) for truth in query.truth)  # each hit's scene was found
        assert f"“{query.query}”" in text
    with Image.open(result.contact_sheet) as sheet:
        assert sheet.format == "PNG"
        assert sheet.size == (6 + 4 * 134, len(result.results) * (22 + 158) + 6)
    settings = load_settings(result.config_file)  # how to run it again: the saved index is the demo's
    assert settings.port == demo.DEMO_PORT
    with FaissClipIndex.open(settings.index, OpenOptions(read_only=True)) as index:
        assert (len(index), index.model) == (6, "tiny-demo")
    again = io.StringIO()
    run_demo(options, Console(file=again, width=200))
    assert "holds these weights already (v1)" in again.getvalue()  # nothing exported twice


def test_without_the_shipped_model_the_demo_runs_untrained_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifact, "demo_model_dir", lambda: tmp_path / "demo_model")
    output = io.StringIO()
    folder = demo._model_folder(None, tmp_path / "work", Console(file=output, width=300))
    assert folder == tmp_path / "work" / "untrained_demo_model"
    assert "UNTRAINED weights" in output.getvalue()
    loaded = artifact.load_model_folder(folder)
    assert loaded.config["preset"] == "viclip-demo"
    assert loaded.preprocess.size == (64, 64)
