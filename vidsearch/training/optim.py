"""Optimiser and learning-rate schedule: AdamW over parameter groups, linear warm-up then cosine.

Groups are split two ways. Weight decay skips what the official recipes exempt: 1-D parameters
(biases, norms, the temperature, class tokens) and embeddings (token, positional, mask tokens).
Layer-wise learning-rate decay (VideoMAE V2 fine-tuning) scales a parameter's rate by
`decay ** (layers + 1 - layer_id)`: the head keeps the full rate, each block below gets `decay`
times the rate of the one above, the patch embedding the least.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vidsearch.errors import ConfigError

_NO_DECAY_NAMES = ("positional_embedding", "class_embedding", "token_embedding", "pos_embed", "mask_token")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.02
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # the cosine ends at lr · min_lr_ratio
    layer_decay: float = 1.0  # 1.0: no layer-wise decay
    grad_clip: float = 0.0  # max global grad norm; 0: no clipping

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0 or self.eps <= 0:
            raise ConfigError(f"optimiser: need lr > 0, weight_decay ≥ 0, eps > 0; got {self}")
        if not (0 <= self.betas[0] < 1 and 0 <= self.betas[1] < 1):
            raise ConfigError(f"optimiser: betas must lie in [0, 1), got {self.betas}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"schedule: need warmup_steps ≥ 0 and min_lr_ratio in [0, 1]; got {self}")
        if not 0 < self.layer_decay <= 1 or self.grad_clip < 0:
            raise ConfigError(f"optimiser: need layer_decay in (0, 1] and grad_clip ≥ 0; got {self}")


def decays(name: str, param: nn.Parameter) -> bool:
    """Whether weight decay applies to a parameter (see the module docstring)."""
    if param.ndim <= 1 or name.endswith(".bias"):
        return False
    return not any(key in name for key in _NO_DECAY_NAMES)


def block_layer_id(name: str, depth: int) -> int:
    """Layer id of a VideoMAE V2 parameter, as the official fine-tuning assigns it: 0 for the patch
    embedding, positions and special tokens, i + 1 for `blocks.i`, depth + 1 for the rest."""
    head = name.split(".")[0]
    if head in ("patch_embed", "pos_embed", "cls_token", "mask_token"):
        return 0
    if head == "blocks":
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(
    model: nn.Module,
    config: OptimConfig,
    depth: int = 0,
    layer_of: Callable[[str, int], int] = block_layer_id,
) -> list[dict[str, object]]:
    """Parameter groups by (weight decay, learning-rate scale); frozen parameters are left out."""
    groups: dict[tuple[bool, int], dict[str, object]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_of(name, depth) if config.layer_decay < 1.0 else 0
        scale = config.layer_decay ** (depth + 1 - layer) if config.layer_decay < 1.0 else 1.0
        decay = decays(name, param)
        group = groups.setdefault(
            (decay, layer),
            {
                "params": [],
                "names": [],
                "weight_decay": config.weight_decay if decay else 0.0,
                "lr": config.lr * scale,
                "lr_scale": scale,
            },
        )
        group["params"].append(param)  # type: ignore[attr-defined]
        group["names"].append(name)  # type: ignore[attr-defined]
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model: nn.Module, config: OptimConfig, depth: int = 0) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, config, depth)`."""
    groups = param_groups(model, config, depth)
    if not groups:
        raise ConfigError("optimiser: the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of the base rate at `step`: linear warm-up from 1/warmup to 1, then a half cosine
    down to `min_lr_ratio` at `total_steps`."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(total_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, config: OptimConfig) -> LambdaLR:
    """A per-step scheduler (call `step()` after each optimiser step); its state dict resumes it."""
    if total_steps <= 0:
        raise ConfigError(f"schedule: total_steps must be positive, got {total_steps}")
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, config))
