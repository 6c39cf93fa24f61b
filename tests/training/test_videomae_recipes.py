from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.models import create_model
from vidsearch.training.artifact import load_model_folder
from vidsearch.training.config import recipe_from_dict
from vidsearch.training.distributed import ProcessPlacement
from vidsearch.training.loop import LoopConfig, Trainer
from vidsearch.training.optim import OptimConfig
from vidsearch.training.sampler import Shard
from vidsearch.training.videomae import ClassifierObjective, init_classifier, train_videomae
from vidsearch.training.videomae_eval import spatial_crops, temporal_views
from vidsearch.video import Clip
from vidsearch.video.manifest import read_manifest, write_manifest

ENCODER = {
    "image_size": 32,
    "patch_size": 16,
    "num_frames": 4,
    "tubelet_size": 2,
    "width": 32,
    "depth": 2,
    "heads": 2,
    "mlp_hidden": 64,
}
DECODER = {"decoder_width": 32, "decoder_depth": 1, "decoder_heads": 2}
PREPROCESS = {
    "version": 1,
    "sampling": {"frames": 4, "mode": "centre_stride", "stride_frames": 2},
    "size": [32, 32],
    "resize": "short_side_crop",
    "short_side": 32,
    "interpolation": "bilinear",
    "antialias": False,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "channels": "RGB",
    "layout": "CTHW",
}


def _recipe(task: str, model: str, train: Path, test: Path | None, **extra: Any) -> dict[str, Any]:
    return {
        "task": task,
        "model": model,
        "preprocess": PREPROCESS,
        "data": {"train": str(train), "test": str(test) if test else None, "cache": True},
        "loop": {"steps": 3, "batch_size": 4, "seed": 0, "precision": "fp32"},
        "optim": {"lr": 1e-3, "warmup_steps": 1, "layer_decay": 0.75 if task == "videomae-finetune" else 1.0},
        "device": "cpu",
        **extra,
    }


def _motion_labelled(source: Path, target: Path) -> Path:
    """The synthetic manifest with the motion as class label."""
    manifest = read_manifest(source)
    rows = [
        type(r)(str(manifest.path_of(r)), r.start_s, r.end_s, r.caption, r.extra["motion"], r.extra)
        for r in manifest.rows
    ]
    write_manifest(target, rows)
    return target


def test_pretrain_then_finetune_then_multiview_evaluation(synth_data: Path, tmp_path: Path) -> None:
    train = _motion_labelled(synth_data / "train.jsonl", tmp_path / "train.jsonl")
    pretrain = recipe_from_dict(
        {
            **_recipe("videomae-pretrain", "videomae-v2-s-pretrain", train, None),
            "model_overrides": {**ENCODER, **DECODER},
            "objective": {"encoder_mask_ratio": 0.75, "decoder_mask_ratio": 0.5},
        }
    )
    losses: list[float] = []
    first = train_videomae(pretrain, tmp_path / "pt", on_step=lambda info: losses.append(info.loss))
    assert len(losses) == 3
    assert all(0 < loss < 10 for loss in losses)
    assert first.model_dir is not None
    encoder = load_model_folder(first.model_dir).model

    train_labels = read_manifest(train).labels()
    test_rows = [r for r in read_manifest(train).rows if r.label in train_labels][:3]
    test = tmp_path / "test.jsonl"
    write_manifest(test, test_rows)
    finetune = recipe_from_dict(
        {
            **_recipe(
                "videomae-finetune",
                "videomae-v2-s",
                train,
                test,
                init=str(first.model_dir / "model.safetensors"),
            ),
            "model_overrides": ENCODER,
            "objective": {"label_smoothing": 0.1, "temporal_views": 2, "spatial_crops": 3},
        }
    )
    second = train_videomae(finetune, tmp_path / "ft")
    assert second.metrics["views"] == 6
    assert second.metrics["videos"] == 3
    assert 0.0 <= second.metrics["top1"] <= second.metrics["top5"] <= 1.0
    assert second.model_dir is not None
    classifier = load_model_folder(second.model_dir)
    assert classifier.config["training"]["labels"] == train_labels
    assert classifier.model.head.weight.shape[0] == len(train_labels)  # type: ignore[union-attr]
    assert encoder.config.width == classifier.model.config.width  # type: ignore[union-attr]


def test_classifier_starts_from_the_pretrained_encoder(tmp_path: Path) -> None:
    pretrained = create_model("videomae-v2-s-pretrain", **ENCODER, **DECODER)
    path = tmp_path / "pt.safetensors"
    save_file({k: v.contiguous() for k, v in pretrained.state_dict().items()}, str(path))
    classifier = create_model("videomae-v2-s", **ENCODER, num_classes=5)
    head = classifier.head.weight.clone()  # type: ignore[union-attr]
    init_classifier(classifier, str(path))  # type: ignore[arg-type]
    for name, value in classifier.state_dict().items():
        if name.startswith(("blocks.", "patch_embed.")):
            assert torch.equal(value, pretrained.state_dict()["encoder." + name]), name
    assert torch.equal(classifier.head.weight, head)  # type: ignore[union-attr]
    wider = create_model("videomae-v2-s", **{**ENCODER, "width": 64, "heads": 2}, num_classes=5)
    with pytest.raises(CheckpointError, match="does not fit"):
        init_classifier(wider, str(path))  # type: ignore[arg-type]


def test_views_cover_the_video_and_crops_follow_the_long_side() -> None:
    views = temporal_views(Clip(0, 0.0, 10.0), 2.0, 3)
    assert [(v.start_s, v.end_s) for v in views] == [(0.0, 2.0), (4.0, 6.0), (8.0, 10.0)]
    assert [(v.start_s, v.end_s) for v in temporal_views(Clip(0, 1.0, 2.0), 2.0, 2)] == [(1.0, 2.0)] * 2
    video = torch.arange(40.0).view(1, 1, 1, 40).expand(3, 2, 32, 40)
    left, centre, right = spatial_crops(video, (32, 32), 3)
    assert (left[0, 0, 0, 0].item(), centre[0, 0, 0, 0].item(), right[0, 0, 0, 0].item()) == (0.0, 4.0, 8.0)
    assert [c.shape for c in spatial_crops(video, (32, 32), 1)] == [(3, 2, 32, 32)]


def test_videomae_recipes_check_their_preprocessing(synth_data: Path, tmp_path: Path) -> None:
    bad = {**PREPROCESS, "layout": "TCHW"}
    recipe = recipe_from_dict(
        {
            **_recipe("videomae-pretrain", "videomae-v2-s-pretrain", synth_data / "train.jsonl", None),
            "preprocess": bad,
        }
    )
    with pytest.raises(ConfigError, match="CTHW"):
        train_videomae(recipe, tmp_path)


def test_finetune_optimiser_decays_the_learning_rate_layer_by_layer(tmp_path: Path) -> None:
    model = create_model("videomae-v2-s", **ENCODER, num_classes=3)
    loop = LoopConfig(steps=1, batch_size=1)
    optim = OptimConfig(lr=1.0, layer_decay=0.5)
    run = ProcessPlacement(torch.device("cpu"), Shard())
    trainer = Trainer(ClassifierObjective(model, 0.1), [], loop, optim, run, tmp_path, {}, depth=2)  # type: ignore[arg-type]
    lr = {name: group["lr"] for group in trainer.optimizer.param_groups for name in group["names"]}
    assert lr["head.weight"] == 1.0
    assert lr["blocks.1.attn.qkv.weight"] == 0.5
    assert lr["blocks.0.attn.qkv.weight"] == 0.25
    assert lr["patch_embed.proj.weight"] == 0.125
