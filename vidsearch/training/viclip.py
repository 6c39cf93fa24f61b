"""ViCLIP contrastive training: model set-up (fresh, from a ViCLIP checkpoint, or from a CLIP one),
the objective, and the run from recipe to exported model and its evaluation.

A CLIP-style checkpoint (OpenAI CLIP / open_clip names: `visual.*`, `token_embedding.*`, …) is
inflated the way ViCLIP was initialised: the 2-D patch kernel becomes a Conv3d of temporal size 1,
the temporal position embedding starts at zero, the text positions are cut to the context length
and `logit_scale` is dropped (ViCLIP learns its own temperature).
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.models import ViCLIP, create_model, get_tokenizer, read_state_dict
from vidsearch.models.viclip import checkpoint_filter_fn
from vidsearch.training.artifact import load_model_folder, save_model_folder, update_training
from vidsearch.training.config import Recipe
from vidsearch.training.data import Progress, clip_dataset, resolve_manifests
from vidsearch.training.datasets import ItemSpec, group_ids
from vidsearch.training.distributed import ProcessPlacement, process_placement
from vidsearch.training.loop import StepCallback, Trainer, TrainResult
from vidsearch.training.losses import MIN_TEMPERATURE, clamp_temperature, video_text_contrastive_loss
from vidsearch.training.sampler import Shard
from vidsearch.training.viclip_eval import evaluate_viclip
from vidsearch.video import Preprocess, get_preprocess_preset
from vidsearch.video.manifest import Manifest

log = logging.getLogger(__name__)

# Parameters a CLIP checkpoint cannot provide; they keep their initial values.
_NOT_IN_CLIP = {"temp", "vision_encoder.temporal_positional_embedding"}


@dataclass(frozen=True)
class ViCLIPObjectiveConfig:
    mask_ratio: float = 0.9  # share of video patch tokens dropped in training (the paper's 0.9)
    init_temperature: float | None = None  # None: keep the model's (0.01, or the checkpoint's)
    freeze_text: bool = False
    # Fresh models only: draw the vision tower's spatial and temporal position embeddings from
    # N(0, std²). CLIP's initialisation (std width^-0.5, temporal zero) suits inflating a trained
    # CLIP; a small model trained from scratch tells where and when apart much sooner with larger ones.
    position_init_std: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"objective.mask_ratio must lie in [0, 1), got {self.mask_ratio}")
        if self.position_init_std is not None and self.position_init_std <= 0:
            raise ConfigError(f"objective.position_init_std must be positive, got {self.position_init_std}")
        if self.init_temperature is not None and self.init_temperature < MIN_TEMPERATURE:
            raise ConfigError(
                f"objective.init_temperature must be ≥ {MIN_TEMPERATURE}, got {self.init_temperature}"
            )


class ViCLIPObjective(nn.Module):
    """Batch {video, text, group} → symmetric InfoNCE at the learned (clamped) temperature."""

    def __init__(self, model: ViCLIP, mask_ratio: float) -> None:
        super().__init__()
        self.model, self.mask_ratio = model, mask_ratio

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        clamp_temperature(self.model.temp)
        video = self.model.encode_video(batch["video"], mask_ratio=self.mask_ratio if self.training else 0.0)
        text = self.model.encode_text(batch["text"])
        loss = video_text_contrastive_loss(video, text, self.model.temp, batch.get("group"))
        return {"loss": loss, "temperature": self.model.temp.detach()}


def is_clip_checkpoint(state_dict: Mapping[str, Tensor]) -> bool:
    return "visual.conv1.weight" in state_dict and "token_embedding.weight" in state_dict


def clip_to_viclip(state_dict: Mapping[str, Tensor], context_length: int) -> dict[str, Tensor]:
    """Rename and inflate a CLIP state dict onto ViCLIP (see the module docstring)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == "logit_scale" or key.endswith("attn_mask"):
            continue
        if key.startswith("visual."):
            name = "vision_encoder." + key.removeprefix("visual.")
            out[name] = value.unsqueeze(2) if name == "vision_encoder.conv1.weight" else value
        else:
            out["text_encoder." + key] = value[:context_length] if key == "positional_embedding" else value
    return out


def initialise(model: ViCLIP, path: str) -> None:
    """Load a ViCLIP or CLIP checkpoint into `model`; every shape must match the model's config."""
    raw = read_state_dict(path)
    from_clip = is_clip_checkpoint(raw)
    state = clip_to_viclip(raw, model.config.context_length) if from_clip else checkpoint_filter_fn(raw)
    expected = model.state_dict()
    allowed_missing = _NOT_IN_CLIP if from_clip else set()
    missing = sorted(set(expected) - set(state) - allowed_missing)
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path} does not fit the recipe's model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, other shapes {shapes[:5]}"
        )
    model.load_state_dict(state, strict=False)
    log.info("initialised from %s (%s checkpoint)", path, "CLIP" if from_clip else "ViCLIP")


def build_model(recipe: Recipe) -> ViCLIP:
    model = create_model(recipe.model, **dict(recipe.model_overrides))
    if not isinstance(model, ViCLIP):
        raise ConfigError(f"recipe {recipe.task!r} needs a ViCLIP model preset, {recipe.model!r} is not one")
    config = recipe.objective_as(ViCLIPObjectiveConfig)
    if recipe.init:
        initialise(model, recipe.init)
    elif config.position_init_std is not None:
        vision = model.vision_encoder
        nn.init.normal_(vision.positional_embedding, std=config.position_init_std)
        nn.init.normal_(vision.temporal_positional_embedding, std=config.position_init_std)
    if config.init_temperature is not None:
        with torch.no_grad():
            model.temp.fill_(config.init_temperature)
    if config.freeze_text:
        model.text_encoder.requires_grad_(False)
    model.set_grad_checkpointing(recipe.grad_checkpointing)
    return model


def preprocess_of(recipe: Recipe) -> Preprocess:
    if isinstance(recipe.preprocess, str):
        return get_preprocess_preset(recipe.preprocess)
    return Preprocess.from_dict(dict(recipe.preprocess))


def _export_and_evaluate(
    recipe: Recipe,
    model: ViCLIP,
    out_dir: Path,
    test: Manifest | None,
    training: dict[str, Any],
    progress: Progress | None,
) -> tuple[Path, dict[str, Any]]:
    """Save `out_dir/model`, then evaluate the weights as saved (e.g. float16) on the test manifest
    and record the metrics in the folder's config. Runs on process 0 alone (the others are done)."""
    preprocess = preprocess_of(recipe)
    dtype = getattr(torch, recipe.export_dtype)
    model_dir = save_model_folder(
        out_dir / "model", model.cpu(), "viclip", recipe.model, preprocess, dtype, training
    )
    if test is None:
        return model_dir, {}
    started = time.perf_counter()
    alone = ProcessPlacement(torch.device("cpu"), Shard())
    test_set = clip_dataset(
        test, preprocess, ItemSpec(), recipe.data, out_dir / "cache", alone, progress, "cache test"
    )
    shipped = load_model_folder(model_dir)
    assert isinstance(shipped.model, ViCLIP)
    metrics = evaluate_viclip(shipped.model, test, test_set, get_tokenizer())
    seconds = {**training["seconds"], "evaluate": round(time.perf_counter() - started, 1)}
    update_training(model_dir, {**training, "seconds": seconds, "metrics": metrics})
    return model_dir, metrics


def train_viclip(
    recipe: Recipe,
    out_dir: Path,
    *,
    resume: bool = False,
    command: str = "",
    on_step: StepCallback | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ViCLIP as the recipe says, export `out_dir/model`, and evaluate it on the test manifest."""
    if recipe.task != "viclip":
        raise ConfigError(f"train_viclip runs 'viclip' recipes, this one is {recipe.task!r}")
    preprocess = preprocess_of(recipe)
    started = time.perf_counter()
    with process_placement(recipe.device) as run:
        torch.manual_seed(recipe.loop.seed + run.shard.rank)
        manifests = resolve_manifests(recipe.data, out_dir, run, progress)
        spec = ItemSpec(get_tokenizer(), group_ids(manifests.train, recipe.data.positives))
        dataset = clip_dataset(
            manifests.train, preprocess, spec, recipe.data, out_dir / "cache", run, progress
        )
        data_seconds = time.perf_counter() - started
        torch.manual_seed(recipe.loop.seed)  # the same initial weights on every process
        model = build_model(recipe)
        torch.manual_seed(recipe.loop.seed + run.shard.rank)
        objective = ViCLIPObjective(model, recipe.objective_as(ViCLIPObjectiveConfig).mask_ratio)
        loader_workers = 0 if recipe.data.cache else recipe.data.workers
        trainer = Trainer(
            objective,
            dataset,
            recipe.loop,
            recipe.optim,
            run,
            out_dir,
            recipe.to_dict(),
            workers=loader_workers,
        )
        if resume:
            trainer.resume()
        trainer.fit(on_step)
        if not run.is_main:
            return TrainResult(out_dir, None, trainer.step, time.perf_counter() - started, {})
        training = {
            "recipe": recipe.to_dict(),
            "command": command,
            "steps": trainer.step,
            "processes": run.shard.world,
            "torch_threads": torch.get_num_threads(),
            "seconds": {
                "data": round(data_seconds, 1),
                "train": round(time.perf_counter() - started - data_seconds, 1),
            },
            "torch": torch.__version__,
        }
        model_dir, metrics = _export_and_evaluate(recipe, model, out_dir, manifests.test, training, progress)
        return TrainResult(out_dir, model_dir, trainer.step, time.perf_counter() - started, metrics)
