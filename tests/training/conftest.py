"""Shared fixtures: a small synthetic data set (generated once per session) and a tiny ViCLIP recipe."""

import json
from pathlib import Path
from typing import Any

import pytest

from vidsearch.training.synthetic import SynthSpec, generate

TINY_MODEL = {
    "embed_dim": 32,
    "image_size": 32,
    "patch_size": 16,
    "num_frames": 8,
    "vision_width": 32,
    "vision_layers": 1,
    "vision_heads": 2,
    "text_width": 32,
    "text_layers": 1,
    "text_heads": 2,
}
TINY_PREPROCESS = {
    "version": 1,
    "sampling": {"frames": 8, "mode": "segment_middle", "stride_frames": None},
    "size": [32, 32],
    "resize": "direct",
    "short_side": None,
    "interpolation": "bilinear",
    "antialias": False,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "channels": "RGB",
    "layout": "TCHW",
}


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 videos of 48² (18 train, 6 test)."""
    folder = tmp_path_factory.mktemp("synth")
    generate(folder, SynthSpec(n=24, seed=5, test_fraction=0.25, size=48))
    return folder


def tiny_recipe(data: Path, **loop: Any) -> dict[str, Any]:
    return {
        "task": "viclip",
        "model": "viclip-b16",
        "model_overrides": dict(TINY_MODEL),
        "preprocess": dict(TINY_PREPROCESS),
        "data": {
            "train": str(data / "train.jsonl"),
            "test": str(data / "test.jsonl"),
            "cache": True,
            "positives": "label",
        },
        "loop": {"steps": 6, "batch_size": 8, "seed": 0, "precision": "fp32", "log_every": 1, **loop},
        "optim": {"lr": 1e-3, "weight_decay": 0.01, "warmup_steps": 2, "grad_clip": 1.0},
        "objective": {"mask_ratio": 0.5},
        "device": "cpu",
    }


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(json.dumps(recipe))
    return path
