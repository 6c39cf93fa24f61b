"""VideoMAE V2 recipes: dual-masking pre-training, and fine-tuning a classifier from its encoder.

Pre-training draws, per clip, a tube mask for the encoder and a running-cell mask for the decoder
(ratios from the recipe; a decoder ratio of 0 reconstructs every hidden token) and minimises the
normalised-pixel loss of `vidsearch.models.videomae_pretrain`. Fine-tuning starts the classifier
from a pre-training checkpoint's encoder (or a classifier checkpoint), trains with label smoothing
and layer-wise learning-rate decay, and is evaluated top-1 / top-5 over several views per video.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.formats.imagenet import IMAGENET_MEAN, IMAGENET_STD
from vidsearch.models import VideoMAEv2, VideoMAEv2Pretrain, create_model, read_state_dict
from vidsearch.models.videomae import checkpoint_filter_fn, is_pretrain_checkpoint
from vidsearch.models.videomae_pretrain import (
    pretrain_loss,
    pretrain_targets,
    running_cell_mask,
    tube_mask,
)
from vidsearch.training.artifact import save_model_folder
from vidsearch.training.config import Recipe
from vidsearch.training.data import Progress, clip_dataset, resolve_manifests
from vidsearch.training.datasets import ItemSpec
from vidsearch.training.distributed import process_placement
from vidsearch.training.loop import StepCallback, Trainer, TrainResult
from vidsearch.training.viclip import preprocess_of
from vidsearch.training.videomae_eval import evaluate_classifier
from vidsearch.video import Preprocess
from vidsearch.video.manifest import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MAEObjectiveConfig:
    encoder_mask_ratio: float = 0.9
    decoder_mask_ratio: float = 0.5  # 0: no decoder masking (reconstruct every hidden token)


@dataclass(frozen=True)
class FinetuneObjectiveConfig:
    label_smoothing: float = 0.1
    temporal_views: int = 5  # evaluation: clips per video
    spatial_crops: int = 3  # evaluation: crops per clip (1 or 3)

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"objective.label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.temporal_views < 1 or self.spatial_crops not in (1, 3):
            raise ConfigError("objective: temporal_views must be ≥ 1 and spatial_crops 1 or 3")


class MAEObjective(nn.Module):
    """Batch {video [B, 3, T, H, W]} → normalised-pixel reconstruction loss under dual masking."""

    def __init__(self, model: VideoMAEv2Pretrain, config: MAEObjectiveConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def masks(self, batch: int, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Per-clip masks, drawn from the global torch RNG (so a resume restores them)."""
        config = self.model.config
        encoder = torch.stack([tube_mask(config, self.config.encoder_mask_ratio) for _ in range(batch)])
        if self.config.decoder_mask_ratio == 0:
            return encoder.to(device), None
        decoder = torch.stack(
            [running_cell_mask(config, self.config.decoder_mask_ratio) for _ in range(batch)]
        )
        return encoder.to(device), decoder.to(device)

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        video = batch["video"]
        encoder_mask, decoder_mask = self.masks(video.shape[0], video.device)
        pred = self.model(video, encoder_mask, decoder_mask)
        targets = pretrain_targets(video, self.model.config)
        return {"loss": pretrain_loss(pred.float(), targets, encoder_mask, decoder_mask)}


class ClassifierObjective(nn.Module):
    """Batch {video, label} → cross-entropy with label smoothing."""

    def __init__(self, model: VideoMAEv2, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        logits = self.model(batch["video"])
        loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.label_smoothing)
        accuracy = (logits.argmax(dim=1) == batch["label"]).float().mean()
        return {"loss": loss, "accuracy": accuracy.detach()}


def init_classifier(model: VideoMAEv2, path: str) -> None:
    """Start a classifier from a pre-training checkpoint's encoder (its decoder dropped, head new) or
    from a classifier checkpoint of another class count (head new)."""
    raw = read_state_dict(path)
    state = checkpoint_filter_fn(raw, pretrain=False)
    expected = model.state_dict()
    if is_pretrain_checkpoint(raw):
        state = {k: v for k, v in state.items() if k in expected}
    if "head.weight" in state and state["head.weight"].shape != expected["head.weight"].shape:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing = sorted(
        set(expected) - set(state) - {k for k in expected if k.startswith(("head.", "fc_norm."))}
    )
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path} does not fit the recipe's model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, other shapes {shapes[:5]}"
        )
    model.load_state_dict(state, strict=False)
    log.info("classifier initialised from %s", path)


def _check_targets_preprocess(preprocess: Preprocess) -> None:
    if preprocess.layout != "CTHW" or preprocess.channels != "RGB":
        raise ConfigError(
            "VideoMAE V2 takes RGB clips laid out CTHW; use the videomae_v2 preprocessing preset"
        )
    if tuple(preprocess.mean) != IMAGENET_MEAN or tuple(preprocess.std) != IMAGENET_STD:
        raise ConfigError(
            "VideoMAE V2 pre-training targets un-normalise with ImageNet mean/std; the "
            f"preprocessing uses mean {preprocess.mean}, std {preprocess.std}"
        )


def _build(recipe: Recipe, labels: list[str]) -> tuple[nn.Module, nn.Module, int]:
    """(model, objective, depth) for the recipe's task."""
    overrides = dict(recipe.model_overrides)
    if recipe.task == "videomae-pretrain":
        model = create_model(recipe.model, **overrides)
        if not isinstance(model, VideoMAEv2Pretrain):
            raise ConfigError(
                f"videomae-pretrain needs a pre-training model preset; {recipe.model!r} is not one"
            )
        if recipe.init:
            model.load_state_dict(checkpoint_filter_fn(read_state_dict(recipe.init), pretrain=True))
        return model, MAEObjective(model, recipe.objective_as(MAEObjectiveConfig)), model.config.depth
    model = create_model(recipe.model, **{**overrides, "num_classes": len(labels)})
    if not isinstance(model, VideoMAEv2):
        raise ConfigError(f"videomae-finetune needs a classifier model preset; {recipe.model!r} is not one")
    if recipe.init:
        init_classifier(model, recipe.init)
    config = recipe.objective_as(FinetuneObjectiveConfig)
    return model, ClassifierObjective(model, config.label_smoothing), model.config.depth


def _evaluate(
    recipe: Recipe, model: nn.Module, test: Manifest, preprocess: Preprocess, labels: list[str]
) -> dict[str, Any]:
    config = recipe.objective_as(FinetuneObjectiveConfig)
    assert isinstance(model, VideoMAEv2)
    return evaluate_classifier(
        model, test, preprocess, labels, config.temporal_views, config.spatial_crops, recipe.data.workers
    )


def train_videomae(
    recipe: Recipe,
    out_dir: Path,
    *,
    resume: bool = False,
    command: str = "",
    on_step: StepCallback | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Pre-train or fine-tune VideoMAE V2 as the recipe says; export `out_dir/model`; fine-tuning is
    evaluated on the test manifest (multi-view top-1 / top-5)."""
    if recipe.task not in ("videomae-pretrain", "videomae-finetune"):
        raise ConfigError(f"train_videomae runs VideoMAE recipes, this one is {recipe.task!r}")
    if recipe.grad_checkpointing:
        raise ConfigError("gradient checkpointing is available for ViCLIP recipes only")
    preprocess = preprocess_of(recipe)
    _check_targets_preprocess(preprocess)
    started = time.perf_counter()
    with process_placement(recipe.device) as run:
        manifests = resolve_manifests(recipe.data, out_dir, run, progress)
        finetune = recipe.task == "videomae-finetune"
        labels = manifests.train.labels()
        if finetune and not labels:
            raise ConfigError("videomae-finetune needs a 'label' on the training manifest's rows")
        spec = ItemSpec(labels=labels) if finetune else ItemSpec()
        dataset = clip_dataset(
            manifests.train, preprocess, spec, recipe.data, out_dir / "cache", run, progress
        )
        torch.manual_seed(recipe.loop.seed)
        model, objective, depth = _build(recipe, labels)
        torch.manual_seed(recipe.loop.seed + run.shard.rank)
        loader_workers = 0 if recipe.data.cache else recipe.data.workers
        trainer = Trainer(
            objective,
            dataset,
            recipe.loop,
            recipe.optim,
            run,
            out_dir,
            recipe.to_dict(),
            depth,
            loader_workers,
        )
        if resume:
            trainer.resume()
        trainer.fit(on_step)
        seconds = time.perf_counter() - started
        if not run.is_main:
            return TrainResult(out_dir, None, trainer.step, seconds, {})
        metrics = (
            _evaluate(recipe, model, manifests.test, preprocess, labels)
            if finetune and manifests.test
            else {}
        )
        training = {
            "recipe": recipe.to_dict(),
            "command": command,
            "steps": trainer.step,
            "processes": run.shard.world,
            "seconds": round(seconds, 1),
            "torch": torch.__version__,
            "metrics": metrics,
            "labels": labels,
        }
        family = "videomae_v2" if finetune else "videomae_v2_pretrain"
        dtype = getattr(torch, recipe.export_dtype)
        model_dir = save_model_folder(
            out_dir / "model", model.cpu(), family, recipe.model, preprocess, dtype, training
        )
        return TrainResult(out_dir, model_dir, trainer.step, seconds, metrics)
