"""The shipped demo model: present, small, self-describing, and still doing its job on fresh clips."""

from pathlib import Path

import pytest

from vidsearch.models import get_tokenizer, load_checkpoint
from vidsearch.training.artifact import demo_model_dir, load_model_folder
from vidsearch.training.datasets import ClipDataset, ItemSpec
from vidsearch.training.synthetic import SynthSpec, generate
from vidsearch.training.viclip_eval import evaluate_viclip, zero_shot_accuracy
from vidsearch.video.manifest import read_manifest


def test_the_demo_model_folder_describes_itself() -> None:
    folder = demo_model_dir()
    weights = folder / "model.safetensors"
    assert weights.stat().st_size <= 30 * 1024 * 1024
    shipped = load_model_folder(folder)  # checks the SHA-256 too
    config = shipped.config
    assert config["family"] == "viclip"
    assert config["preset"] == "viclip-demo"
    assert config["tokenizer"]["vocab_size"] == 49408
    assert shipped.preprocess.size == (64, 64)
    assert shipped.preprocess.frames == 8
    training = config["training"]
    assert training["command"].startswith("vidsearch train viclip --preset demo")
    metrics = training["metrics"]
    assert metrics["retrieval"]["gallery"] >= 200
    assert metrics["retrieval"]["t2v_r1"] >= 0.8
    assert metrics["motion"]["single_frame_accuracy"] < metrics["motion"]["clip_accuracy"] - 0.3
    # the weights also load through the generic loader with the model preset
    assert load_checkpoint(weights, preset="viclip-demo").config == shipped.model.config  # type: ignore[union-attr]


@pytest.mark.slow
def test_the_demo_model_retrieves_fresh_unseen_clips(tmp_path: Path) -> None:
    generate(tmp_path, SynthSpec(n=60, seed=1234, test_fraction=0.5))
    shipped = load_model_folder(demo_model_dir())
    manifest = read_manifest(tmp_path / "test.jsonl")
    dataset = ClipDataset(manifest, shipped.preprocess, ItemSpec())
    report = evaluate_viclip(shipped.model, manifest, dataset, get_tokenizer())  # type: ignore[arg-type]
    assert report["retrieval"]["t2v_r5"] >= 0.8
    assert report["retrieval"]["v2t_r1"] >= 0.5
    assert report["motion"]["clip_accuracy"] > report["motion"]["single_frame_accuracy"] + 0.25
    # zero-shot classification over the same captions is video→text retrieval by another road
    labels = manifest.labels()
    labelled = ClipDataset(manifest, shipped.preprocess, ItemSpec(labels=labels))
    zero_shot = zero_shot_accuracy(shipped.model, get_tokenizer(), labelled, labels, templates=("{}",))  # type: ignore[arg-type]
    assert zero_shot["top1"] == pytest.approx(report["retrieval"]["v2t_r1"], abs=1e-3)
