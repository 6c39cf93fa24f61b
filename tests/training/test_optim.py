import math

import pytest
import torch

from vidsearch.errors import ConfigError
from vidsearch.models import create_model
from vidsearch.training.optim import (
    OptimConfig,
    block_layer_id,
    build_optimizer,
    build_scheduler,
    lr_factor,
    param_groups,
)


def _tiny_viclip() -> torch.nn.Module:
    return create_model(
        "viclip-b16",
        image_size=32,
        vision_width=32,
        vision_layers=1,
        vision_heads=1,
        text_width=32,
        text_layers=1,
        text_heads=1,
        embed_dim=16,
        vocab_size=64,
    )


def test_weight_decay_skips_biases_norms_embeddings_and_temperature() -> None:
    groups = param_groups(_tiny_viclip(), OptimConfig(weight_decay=0.1))
    decayed = {n for g in groups if g["weight_decay"] for n in g["names"]}  # type: ignore[attr-defined]
    plain = {n for g in groups if not g["weight_decay"] for n in g["names"]}  # type: ignore[attr-defined]
    assert "vision_encoder.transformer.resblocks.0.attn.in_proj_weight" in decayed
    assert "vision_encoder.proj" in decayed
    for name in (
        "temp",
        "vision_encoder.class_embedding",
        "vision_encoder.positional_embedding",
        "vision_encoder.temporal_positional_embedding",
        "text_encoder.token_embedding.weight",
        "vision_encoder.ln_pre.weight",
        "vision_encoder.transformer.resblocks.0.attn.in_proj_bias",
    ):
        assert name in plain, name


def test_layer_decay_follows_the_official_layer_ids() -> None:
    model = create_model("videomae-v2-s", image_size=32, num_frames=4, depth=3, num_classes=5)
    assert block_layer_id("patch_embed.proj.weight", 3) == 0
    assert block_layer_id("blocks.0.attn.qkv.weight", 3) == 1
    assert block_layer_id("blocks.2.mlp.fc2.bias", 3) == 3
    assert block_layer_id("head.weight", 3) == 4
    config = OptimConfig(lr=1.0, layer_decay=0.5)
    scale = {n: g["lr"] for g in param_groups(model, config, depth=3) for n in g["names"]}  # type: ignore[attr-defined]
    assert scale["head.weight"] == 1.0
    assert scale["fc_norm.weight"] == 1.0
    assert scale["blocks.2.attn.qkv.weight"] == 0.5
    assert scale["blocks.0.attn.qkv.weight"] == 0.125
    assert scale["patch_embed.proj.weight"] == 0.0625


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor() -> None:
    config = OptimConfig(lr=2.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_factor(s, 14, config) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 14, config) == 1.0
    assert lr_factor(9, 14, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(14, 14, config) == pytest.approx(0.1)
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, 14, config)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:5] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="layer_decay"):
        OptimConfig(layer_decay=1.5)
    with pytest.raises(ConfigError, match="betas"):
        OptimConfig(betas=(0.9, 1.0))
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable"):
        build_optimizer(model, OptimConfig())
