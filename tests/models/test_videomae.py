import dataclasses
import json
import math
from importlib import resources
from typing import Any

import pytest
import torch
import transformers

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.models.checkpoint import resolve_config
from vidsearch.models.factory import FAMILIES
from vidsearch.models.videomae import (
    VideoMAEv2,
    VideoMAEv2Config,
    VideoMAEv2Pretrain,
    checkpoint_filter_fn,
    infer_fields,
    is_pretrain_checkpoint,
    sinusoid_table,
)
from vidsearch.models.videomae_pretrain import pretrain_loss, pretrain_targets, running_cell_mask, tube_mask

# 32² pixels, patch 8, 4 frames, tubelet 2: a (2, 4, 4) grid of 32 tokens.
TINY = VideoMAEv2Config(
    image_size=32, patch_size=8, num_frames=4, tubelet_size=2, width=64, depth=2, heads=4, mlp_hidden=128,
    num_classes=7, decoder_width=32, decoder_depth=2, decoder_heads=2, decoder_mlp_hidden=96,
)  # fmt: skip


def layer_norm_eps(model: torch.nn.Module) -> set[float]:
    return {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a − b| / max |b|: the error relative to the output's scale."""
    return float((actual - expected).abs().max() / expected.abs().max())


def read_preset(name: str) -> dict:
    return json.loads((resources.files("vidsearch.models") / "presets" / f"{name}.json").read_text())


def random_masks(batch: int, tokens: int, hidden: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, tokens, dtype=torch.bool)
    for row in mask:
        row[torch.randperm(tokens, generator=gen)[:hidden]] = True
    return mask


# ------------------------------------------------------------------------------------------ presets

PRESETS = {  # name: (parameters in M with a 400-class head, patch, width, decoder width, decoder heads)
    "s": (22.03, 16, 384, 192, 3),
    "b": (86.53, 16, 768, 384, 6),
    "l": (304.27, 16, 1024, 512, 8),
    "h": (632.12, 16, 1280, 512, 8),
    "g": (1012.17, 14, 1408, 512, 8),
}


@pytest.mark.parametrize("size", sorted(PRESETS))
def test_classifier_preset_has_official_parameter_count(size: str) -> None:
    preset = read_preset(f"videomae-v2-{size}")
    assert preset["family"] == "videomae_v2"
    config = VideoMAEv2Config(**preset["config"])
    with torch.device("meta"):
        model = VideoMAEv2(config)
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 2) == PRESETS[size][0]
    assert (config.num_classes, config.num_frames, config.image_size, config.patch_size) == (
        400, 16, 224, PRESETS[size][1],
    )  # fmt: skip
    assert model.pos_embed.device.type == "cpu"  # real values even when built on meta
    assert torch.equal(model.pos_embed, sinusoid_table(config.num_patches, config.width))


@pytest.mark.parametrize("size", sorted(PRESETS))
def test_pretrain_preset_builds_on_meta(size: str) -> None:
    preset = read_preset(f"videomae-v2-{size}-pretrain")
    assert preset["family"] == "videomae_v2_pretrain"
    config = VideoMAEv2Config(**preset["config"])
    _, patch, width, decoder_width, decoder_heads = PRESETS[size]
    with torch.device("meta"):
        model = VideoMAEv2Pretrain(config)
        classifier = VideoMAEv2(VideoMAEv2Config(**read_preset(f"videomae-v2-{size}")["config"]))
    head = width * 400 + 400
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert encoder == sum(p.numel() for p in classifier.parameters()) - head  # norm replaces fc_norm
    assert (config.decoder_width, config.decoder_heads) == (decoder_width, decoder_heads)
    assert config.decoder_depth == 4
    assert model.decoder.head.out_features == 3 * 2 * patch**2
    # the official decoders keep the encoder's MLP ratio, truncated: int(512 · 48/11) = 2234 for g
    assert model.decoder.blocks[0].mlp.fc1.out_features == int(decoder_width * config.mlp_hidden / width)
    assert set(model.state_dict()) >= {"encoder.norm.weight", "encoder_to_decoder.weight", "mask_token"}
    assert "encoder.head.weight" not in model.state_dict()


def test_config_grid_and_validation() -> None:
    assert VideoMAEv2Config().grid == (8, 14, 14)
    assert VideoMAEv2Config().num_patches == 1568
    assert VideoMAEv2Config(patch_size=14).num_patches == 2048
    assert VideoMAEv2Config(layer_scale_init=0).layer_scale_init == 0  # an int where a float is due
    bad_values = (
        {"heads": 7}, {"image_size": 200}, {"num_frames": 15}, {"depth": 0}, {"decoder_heads": 5},
        {"width": "768"}, {"use_mean_pooling": 1}, {"num_classes": True}, {"num_classes": -1},
    )  # fmt: skip
    for bad in bad_values:
        with pytest.raises(ConfigError, match=next(iter(bad))):
            VideoMAEv2Config(**bad)


# --------------------------------------------------------------------------------------- structure


def test_sinusoid_table_matches_direct_float64_computation() -> None:
    rows, dim = 50, 16
    expected = torch.tensor(
        [
            [(math.sin if j % 2 == 0 else math.cos)(pos / 10000 ** (2 * (j // 2) / dim)) for j in range(dim)]
            for pos in range(rows)
        ],
        dtype=torch.float64,
    ).to(torch.float32)
    table = sinusoid_table(rows, dim)
    assert table.shape == (1, rows, dim)
    assert table.dtype == torch.float32
    assert torch.allclose(table[0], expected, rtol=0, atol=1e-7)


def test_tokens_are_time_major() -> None:
    model = VideoMAEv2(TINY)
    torch.nn.init.zeros_(model.patch_embed.proj.bias)
    video = torch.zeros(1, 3, 4, 32, 32)
    video[:, :, 2:4, 16:24, 24:32] = 1.0  # temporal slot 1, row 2, column 3
    tokens = model.patch_embed(video)
    nonzero = tokens.abs().sum(-1)[0].nonzero().flatten().tolist()
    assert nonzero == [1 * 16 + 2 * 4 + 3]


def test_key_bias_is_zero_and_attention_matches_manual_computation() -> None:
    torch.manual_seed(0)
    model = VideoMAEv2(TINY)
    attn = model.blocks[0].attn
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    assert attn.qkv.bias is None
    bias = attn.qkv_bias()
    assert torch.equal(bias[64:128], torch.zeros(64))
    assert torch.equal(bias[:64], attn.q_bias)
    assert torch.equal(bias[128:], attn.v_bias)
    x = torch.randn(2, 5, 64)
    q = x @ attn.qkv.weight[:64].T + attn.q_bias
    k = x @ attn.qkv.weight[64:128].T
    v = x @ attn.qkv.weight[128:].T + attn.v_bias
    heads = [slice(h * 16, (h + 1) * 16) for h in range(4)]
    out = torch.cat(
        [torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) * 16**-0.5, -1) @ v[..., s] for s in heads], -1
    )
    assert torch.allclose(attn(x), attn.proj(out), atol=1e-6)


def test_forward_shapes_and_frame_order_matters() -> None:
    torch.manual_seed(0)
    model = VideoMAEv2(TINY).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(video)
        features = model.features(video)
        logits = model(video)
        permuted = model.features(video[:, :, [2, 3, 0, 1]])
    assert tokens.shape == (2, 32, 64)
    assert features.shape == (2, 64)
    assert logits.shape == (2, 7)
    assert torch.allclose(model.forward_head(tokens, pre_logits=True), features)
    assert not torch.allclose(features, permuted, atol=1e-3)
    headless = VideoMAEv2(dataclasses.replace(TINY, num_classes=0))
    assert isinstance(headless.head, torch.nn.Identity)
    with pytest.raises(ConfigError, match=r"video must be \[B, C, T, H, W\]"):
        model(torch.randn(1, 3, 8, 32, 32))


# ----------------------------------------------------------------------- parity with transformers


def hf_config(use_mean_pooling: bool) -> Any:
    return transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_channels=3, num_frames=4, tubelet_size=2, hidden_size=64,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, layer_norm_eps=1e-6,
        qkv_bias=True, use_mean_pooling=use_mean_pooling, num_labels=7, decoder_hidden_size=32,
        decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=96,
        norm_pix_loss=True, attn_implementation="eager",
    )  # fmt: skip


def randomise(model: torch.nn.Module) -> None:
    """Move every parameter (LayerNorms, biases, mask token included) away from its init."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("use_mean_pooling", [True, False])
def test_classifier_matches_transformers(use_mean_pooling: bool) -> None:
    reference = transformers.VideoMAEForVideoClassification(hf_config(use_mean_pooling)).eval()
    if use_mean_pooling:
        reference.fc_norm.eps = 1e-6  # transformers defaults to 1e-5 here; the official model uses 1e-6
    randomise(reference)
    state_dict = checkpoint_filter_fn(reference.state_dict(), pretrain=False)
    base = dataclasses.replace(VideoMAEv2Config(), image_size=32, num_frames=4, heads=4)
    config = resolve_config(FAMILIES["videomae_v2"], state_dict, base, {"heads": 4})
    assert config == dataclasses.replace(
        TINY, use_mean_pooling=use_mean_pooling, decoder_width=384, decoder_depth=4, decoder_heads=6,
        decoder_mlp_hidden=0,
    )  # fmt: skip
    ours = VideoMAEv2(config).eval()
    ours.load_state_dict(state_dict, strict=True)
    video = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(pixel_values=video.transpose(1, 2)).logits
        actual = ours(video)
    assert max_rel_err(actual, expected) < 1e-5
    assert layer_norm_eps(ours) == layer_norm_eps(reference) == {1e-6}  # too small an effect to see above


def test_pretrain_matches_transformers() -> None:
    reference = transformers.VideoMAEForPreTraining(hf_config(use_mean_pooling=False)).eval()
    reference.decoder.norm.eps = 1e-6  # transformers defaults to 1e-5 here; the official model uses 1e-6
    randomise(reference)
    raw = reference.state_dict()
    assert is_pretrain_checkpoint(raw)
    state_dict = checkpoint_filter_fn(raw, pretrain=True)
    base = dataclasses.replace(TINY, width=128, heads=2, num_classes=0, decoder_heads=2)
    config = resolve_config(FAMILIES["videomae_v2_pretrain"], state_dict, base, {"heads": 4})
    assert config == dataclasses.replace(TINY, num_classes=0)
    ours = VideoMAEv2Pretrain(config).eval()
    ours.load_state_dict(state_dict, strict=True)
    video = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    encoder_mask = random_masks(2, 32, 24, seed=4)
    with torch.no_grad():
        expected = reference(pixel_values=video.transpose(1, 2), bool_masked_pos=encoder_mask)
        actual = ours(video, encoder_mask)
        explicit = ours(video, encoder_mask, ~encoder_mask)
    assert actual.shape == (2, 24, 3 * 2 * 8 * 8)
    assert max_rel_err(actual, expected.logits) < 1e-5
    assert layer_norm_eps(ours) == layer_norm_eps(reference) == {1e-6}
    assert torch.equal(explicit, actual)
    loss = pretrain_loss(actual, pretrain_targets(video, config), encoder_mask, None)
    assert abs(float(loss) - float(expected.loss)) / float(expected.loss) < 1e-5


def test_pretrain_forward_with_decoder_mask_and_bad_masks() -> None:
    torch.manual_seed(0)
    model = VideoMAEv2Pretrain(dataclasses.replace(TINY, num_classes=0)).eval()
    video = torch.randn(2, 3, 4, 32, 32)
    encoder_mask = random_masks(2, 32, 24, seed=5)
    decoder_mask = random_masks(2, 32, 16, seed=6)
    with torch.no_grad():
        out = model(video, encoder_mask, decoder_mask)
    assert out.shape == (2, 16, 384)
    uneven = encoder_mask.clone()
    uneven[0, (~uneven[0]).nonzero()[0]] = True
    with pytest.raises(ConfigError, match="visible"):
        model(video, uneven)
    with pytest.raises(ConfigError, match="reconstructed"):
        model(video, encoder_mask, uneven)
    with pytest.raises(ConfigError, match="bool"):
        model(video, encoder_mask.float())


# ------------------------------------------------------------------------------ checkpoint filter


def tiny_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return VideoMAEv2(TINY).state_dict()


PREFIXES = ["", "_orig_mod.", "module.", "backbone.", "encoder.", "module._orig_mod.encoder."]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_filter_strips_prefixes(prefix: str) -> None:
    original = tiny_state_dict()
    filtered = checkpoint_filter_fn({prefix + k: v for k, v in original.items()}, pretrain=False)
    assert filtered.keys() == original.keys()
    assert all(filtered[k] is original[k] for k in original)


def test_filter_keeps_encoder_prefix_for_pretraining() -> None:
    original = VideoMAEv2Pretrain(dataclasses.replace(TINY, num_classes=0)).state_dict()
    filtered = checkpoint_filter_fn({"module." + k: v for k, v in original.items()}, pretrain=True)
    assert filtered.keys() == original.keys()
    assert is_pretrain_checkpoint({"module." + k: v for k, v in original.items()})
    assert not is_pretrain_checkpoint(tiny_state_dict())
    # a pre-training checkpoint read by the classifier: the encoder maps, the rest is left to report
    as_classifier = checkpoint_filter_fn(original, pretrain=False)
    assert "blocks.0.attn.qkv.weight" in as_classifier
    assert "norm.weight" in as_classifier
    assert "decoder.head.weight" in as_classifier


def test_filter_checks_and_drops_position_tables_and_passes_unknown_keys() -> None:
    state_dict = tiny_state_dict()
    table = sinusoid_table(32, 64)
    filtered = checkpoint_filter_fn({**state_dict, "pos_embed": table, "extra.thing": table}, pretrain=False)
    assert "pos_embed" not in filtered
    assert filtered["extra.thing"] is table
    hf_table = {"videomae.embeddings.position_embeddings": table.double()}
    assert checkpoint_filter_fn(hf_table, pretrain=False) == {}
    learned = table + 0.02 * torch.randn_like(table)
    with pytest.raises(CheckpointError, match="learnable"):
        checkpoint_filter_fn({**state_dict, "pos_embed": learned}, pretrain=False)
    with pytest.raises(CheckpointError, match="learnable"):  # a table with a class-token row
        checkpoint_filter_fn({"encoder.pos_embed": torch.zeros(1, 33, 64)}, pretrain=True)


def test_filter_rejects_incomplete_query_key_value() -> None:
    prefix = "videomae.encoder.layer.0.attention.attention."
    partial = {prefix + "query.weight": torch.zeros(4, 4), prefix + "value.weight": torch.zeros(4, 4)}
    with pytest.raises(CheckpointError, match="query/key/value"):
        checkpoint_filter_fn(partial, pretrain=False)


def test_filter_maps_legacy_transformers_q_v_bias() -> None:
    prefix = "videomae.encoder.layer.3.attention.attention."
    q_bias, v_bias = torch.randn(4), torch.randn(4)
    filtered = checkpoint_filter_fn({prefix + "q_bias": q_bias, prefix + "v_bias": v_bias}, pretrain=False)
    assert filtered == {"blocks.3.attn.q_bias": q_bias, "blocks.3.attn.v_bias": v_bias}


# ------------------------------------------------------------------------------- config inference


def test_infer_fields_reads_what_the_shapes_determine() -> None:
    scaled = dataclasses.replace(TINY, layer_scale_init=0.1, use_mean_pooling=False)
    fields = infer_fields(VideoMAEv2(scaled).state_dict())
    assert fields["layer_scale_init"] > 0
    assert (fields["width"], fields["depth"], fields["mlp_hidden"]) == (64, 2, 128)
    assert (fields["patch_size"], fields["tubelet_size"], fields["in_chans"]) == (8, 2, 3)
    assert (fields["num_classes"], fields["use_mean_pooling"]) == (7, False)
    assert not {"heads", "image_size", "num_frames"} & fields.keys()  # nothing stores them
    headless = {k: v for k, v in tiny_state_dict().items() if not k.startswith("head.")}
    assert infer_fields(headless)["num_classes"] == 0
    assert infer_fields(tiny_state_dict())["layer_scale_init"] == 0.0
    pretrain = VideoMAEv2Pretrain(dataclasses.replace(TINY, decoder_mlp_hidden=0)).state_dict()
    fields = infer_fields(pretrain)
    assert (fields["decoder_width"], fields["decoder_depth"], fields["decoder_mlp_hidden"]) == (32, 2, 0)
    assert "num_classes" not in fields  # a pre-training checkpoint has no head to tell


def test_config_resolution_rejects_foreign_or_unfitting_state_dicts() -> None:
    with pytest.raises(CheckpointError, match="does not look like VideoMAE V2"):
        infer_fields({"conv1.weight": torch.zeros(8, 3, 3, 3)})
    with pytest.raises(ConfigError, match="not divisible by heads=12"):
        resolve_config(FAMILIES["videomae_v2"], tiny_state_dict(), VideoMAEv2Config(), {"heads": 12})


# ------------------------------------------------------------------------------------------ masks


def test_tube_mask_repeats_one_spatial_mask() -> None:
    config = VideoMAEv2Config()
    mask = tube_mask(config, 0.9, torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool
    assert mask.shape == (1568,)
    slots = mask.reshape(8, 196)
    assert slots.sum(1).tolist() == [int(0.9 * 196)] * 8 == [176] * 8
    assert all(torch.equal(slot, slots[0]) for slot in slots)
    assert torch.equal(mask, tube_mask(config, 0.9, torch.Generator().manual_seed(0)))
    assert not torch.equal(mask, tube_mask(config, 0.9, torch.Generator().manual_seed(1)))
    with pytest.raises(ConfigError):
        tube_mask(config, 1.0)


def expected_running_cell(phase: int, hidden: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Official RunningCellMaskingGenerator, written out: queue = hidden × 1 then 0s; the pointer
    starts at `phase` and advances before each temporal slot; the 2×2 cell is tiled."""
    queue = [1] * hidden + [0] * (4 - hidden)
    slots, rows, cols = grid
    return torch.tensor(
        [
            [[queue[((r % 2) * 2 + (c % 2) + phase + t + 1) % 4] for c in range(cols)] for r in range(rows)]
            for t in range(slots)
        ],
        dtype=torch.bool,
    ).flatten()


@pytest.mark.parametrize(("ratio", "hidden"), [(0.5, 2), (0.25, 1), (0.75, 3)])
def test_running_cell_mask_pattern(ratio: float, hidden: int) -> None:
    config = VideoMAEv2Config()
    phases = set()
    for seed in range(40):
        mask = running_cell_mask(config, ratio, torch.Generator().manual_seed(seed))
        assert mask.dtype == torch.bool
        assert mask.shape == (1568,)
        assert mask.reshape(8, 196).sum(1).tolist() == [hidden * 49] * 8
        matches = [p for p in range(4) if torch.equal(mask, expected_running_cell(p, hidden, config.grid))]
        assert len(matches) == 1
        phases.update(matches)
    assert phases == {0, 1, 2, 3}


def test_running_cell_mask_rejects_bad_ratio_and_odd_grid() -> None:
    with pytest.raises(ConfigError, match="ratio"):
        running_cell_mask(VideoMAEv2Config(), 0.1)
    with pytest.raises(ConfigError, match="even"):
        running_cell_mask(VideoMAEv2Config(image_size=24, patch_size=8), 0.5)


# ------------------------------------------------------------------------------- targets and loss


def test_targets_and_loss_match_hand_computation() -> None:
    config = VideoMAEv2Config(image_size=4, patch_size=2, num_frames=4, tubelet_size=2, width=8, heads=2)
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(2, 3, 4, 4, 4, generator=gen, dtype=torch.float64)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)
    pixels = video * std[:, None, None, None] + mean[:, None, None, None]
    expected = torch.zeros(2, 8, 24, dtype=torch.float64)
    for b in range(2):
        for n in range(8):
            t, h, w = n // 4, (n // 2) % 2, n % 2
            tube = pixels[b, :, 2 * t : 2 * t + 2, 2 * h : 2 * h + 2, 2 * w : 2 * w + 2]  # [C, 2, 2, 2]
            columns = tube.reshape(3, 8).T  # (tubelet, row, column) × channel
            normed = (columns - columns.mean(0)) / (columns.std(0, unbiased=True) + 1e-6)
            expected[b, n] = normed.flatten()  # channel fastest
    targets = pretrain_targets(video, config)
    assert torch.allclose(targets, expected, atol=1e-12)

    encoder_mask = torch.tensor([[1, 1, 0, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 0, 0, 1]], dtype=torch.bool)
    decoder_mask = torch.tensor([[1, 0, 0, 1, 0, 0, 1, 1], [0, 0, 1, 0, 1, 1, 0, 1]], dtype=torch.bool)
    pred = torch.randn(2, 4, 24, generator=gen, dtype=torch.float64)
    total, count = 0.0, 0
    for b in range(2):
        reconstructed = [n for n in range(8) if not decoder_mask[b, n]]
        for i, n in enumerate(reconstructed):
            if encoder_mask[b, n]:
                total += float(((pred[b, i] - expected[b, n]) ** 2).mean())
                count += 1
    assert count == 4
    loss = pretrain_loss(pred, targets, encoder_mask, decoder_mask)
    assert math.isclose(float(loss), total / count, rel_tol=1e-12)
    with pytest.raises(ConfigError, match="do not match"):
        pretrain_loss(pred[:, :3], targets, encoder_mask, decoder_mask)
