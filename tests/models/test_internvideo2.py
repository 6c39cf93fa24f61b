"""InternVideo2 stage 2 against an independent transcription of the official computation, against
transformers' BertModel, and the loader on a file shaped like the released ones."""

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from tests.tiny_configs import TINY_INTERNVIDEO2, TINY_WORDPIECE_VOCAB
from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.models import InternVideo2, InternVideo2Config, detect_family, get_preset, load_checkpoint
from vidsearch.models.wordpiece import WordPieceTokenizer

from .reference_internvideo2 import ReferenceStage2

TOTAL_TEXT_LAYERS = 3  # one fusion layer past `fusion_layer`, with cross-attention, as released files have
TOL = 1e-5


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def make_reference(**changes: object) -> ReferenceStage2:
    torch.manual_seed(0)
    reference = ReferenceStage2({**TINY_INTERNVIDEO2, **changes}, TOTAL_TEXT_LAYERS).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "LayerNorm" in name or "norm1_" in name:  # away from 1 / 0, so they are checked
                p.add_(torch.randn_like(p) * 0.1)
    return reference


def save_official(reference: ReferenceStage2, path: Path) -> Path:
    torch.save({"model": reference.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny size as a preset file: heads and context length are what no tensor shape tells."""
    path = tmp_path_factory.mktemp("preset") / "internvideo2-tiny.json"
    path.write_text(json.dumps({"family": "internvideo2", "config": TINY_INTERNVIDEO2}))
    return path


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(TINY_WORDPIECE_VOCAB) + "\n")
    return path


def tokens_and_mask(vocab_file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = WordPieceTokenizer(vocab_file, TINY_INTERNVIDEO2["context_length"])
    ids = torch.from_numpy(tokenizer(["a dog is running in the park", "red car", "the blue sky at sunset !"]))
    return ids, (ids != 0).long()


@pytest.mark.parametrize("image_table", [True, False], ids=["img_pos_embed", "averaged-video-table"])
@pytest.mark.parametrize("gelu", ["tanh", "none"])
def test_video_image_and_text_match_the_official_computation(
    image_table: bool, gelu: str, vocab_file: Path, tiny_preset: Path, tmp_path: Path
) -> None:
    reference = make_reference(image_pos_embed=image_table, mlp_gelu=gelu)
    ours = load_checkpoint(save_official(reference, tmp_path / "stage2.pth"), tiny_preset, mlp_gelu=gelu)
    assert isinstance(ours, InternVideo2)
    assert ours.config.image_pos_embed is image_table
    size = TINY_INTERNVIDEO2["image_size"]
    video = torch.randn(2, TINY_INTERNVIDEO2["num_frames"], 3, size, size)
    image = torch.randn(2, 3, size, size)
    ids, mask = tokens_and_mask(vocab_file)
    with torch.no_grad():
        assert max_rel_err(ours.encode_video(video), reference.video(video)) < TOL
        assert max_rel_err(ours.encode_image(image), reference.video(image.unsqueeze(1))) < TOL
        assert max_rel_err(ours.encode_text(ids), reference.text(ids, mask)) < TOL
        # the image path really uses its own table: a video table change leaves it alone only if separate
        before = ours.encode_image(image)
        ours.vision_encoder.pos_embed.add_(1.0)
        assert torch.equal(ours.encode_image(image), before) is image_table


def test_the_mlp_activation_is_the_releases_tanh_gelu_by_default(tiny_preset: Path, tmp_path: Path) -> None:
    reference = make_reference(mlp_gelu="none")  # the official code without flash-attn
    ours = load_checkpoint(save_official(reference, tmp_path / "stage2.pth"), tiny_preset)
    video = torch.randn(1, 4, 3, 28, 28)
    with torch.no_grad():
        error = max_rel_err(ours.encode_video(video), reference.video(video))
    assert ours.config.mlp_gelu == "tanh"
    assert TOL < error < 1e-2


def test_text_mode_equals_transformers_bert_with_fusion_layer_layers(vocab_file: Path) -> None:
    config = InternVideo2Config(**TINY_INTERNVIDEO2)
    ours = InternVideo2(config).eval()
    bert = BertModel(BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.text_width, num_hidden_layers=config.fusion_layer,
        num_attention_heads=config.text_heads, intermediate_size=config.text_mlp_dim,
        max_position_embeddings=config.max_positions, layer_norm_eps=1e-12, hidden_act="gelu",
    ), add_pooling_layer=False).eval()
    with torch.no_grad():
        for p in bert.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    state = {f"text_encoder.bert.{k}": v for k, v in bert.state_dict().items() if "position_ids" not in k}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected
    assert all(not k.startswith("text_encoder.") for k in missing)
    ids, mask = tokens_and_mask(vocab_file)
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        actual = ours.text_encoder.bert(ids)
    assert max_rel_err(actual, expected) < TOL


def test_wordpiece_ids_equal_transformers_bert_tokenizer(vocab_file: Path) -> None:
    texts = ["A Dog is RUNNING in the park!", "frisbee, bicycles", "Ünknown wörds café", "", "the " * 30]
    ours = WordPieceTokenizer(vocab_file, context_length=12)(texts)
    hf = BertTokenizer(str(vocab_file), do_lower_case=True)
    expected = hf(texts, padding="max_length", truncation=True, max_length=12, return_tensors="np")
    np.testing.assert_array_equal(ours, expected["input_ids"])
    assert ours.dtype == np.int64
    assert ours.shape == (5, 12)
    assert ours[4, -1] == TINY_WORDPIECE_VOCAB.index("[SEP]")  # cut, still closed


def test_training_only_keys_are_dropped_with_one_line_naming_them(
    tiny_preset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save_official(make_reference(), tmp_path / "stage2.pth")
    with caplog.at_level(logging.INFO, logger="vidsearch.models.internvideo2"):
        model = load_checkpoint(path, context_length=12)  # the family is detected, heads from a preset
    assert isinstance(model, InternVideo2)
    assert model.config.vision_width == 32
    lines = [r.getMessage() for r in caplog.records if r.name == "vidsearch.models.internvideo2"]
    assert len(lines) == 1
    for name in ("clip_decoder", "final_clip_decoder", "clip_pos_embed", "clip_img_pos_embed", "itm_head",
                 "temp", "text_encoder.cls", "position_ids", "layer.2+ (fusion layers)"):
        assert name in lines[0]
    assert detect_family({"module." + k: v for k, v in model.state_dict().items()}).name == "internvideo2"


def test_anything_else_unexpected_or_missing_fails(tiny_preset: Path, tmp_path: Path) -> None:
    reference = make_reference()
    state = reference.state_dict()
    torch.save({"model": {**state, "vision_encoder.extra": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys.*vision_encoder\.extra"):
        load_checkpoint(tmp_path / "extra.pth", tiny_preset)
    del state["vision_encoder.clip_projector.cross_attn.q_bias"]
    torch.save({"model": state}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing keys.*q_bias"):
        load_checkpoint(tmp_path / "missing.pth", tiny_preset)


def test_another_family_or_size_is_refused(tmp_path: Path) -> None:
    path = save_official(make_reference(), tmp_path / "stage2.pth")
    with pytest.raises(CheckpointError, match=r"another internvideo2 size.*vision_width 32 \(preset 1408\)"):
        load_checkpoint(path, preset="internvideo2-s2-1b")
    with pytest.raises(CheckpointError, match="not a ViCLIP checkpoint"):
        load_checkpoint(path, preset="viclip-b16")
    viclip_sd = {"vision_encoder.conv1.weight": torch.zeros(8, 3, 1, 4, 4)}
    torch.save(viclip_sd, tmp_path / "viclip.pth")
    with pytest.raises(CheckpointError, match="not an InternVideo2 stage-2 checkpoint"):
        load_checkpoint(tmp_path / "viclip.pth", preset="internvideo2-s2-1b")


def test_a_vocabulary_that_does_not_fit_and_too_long_text_are_refused(
    vocab_file: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="34 tokens but the text tower's embedding table has 30522 rows"):
        WordPieceTokenizer(vocab_file, 40, vocab_size=30522)
    (tmp_path / "bad.txt").write_text("hello\nworld\n")
    with pytest.raises(ConfigError, match="not a BERT WordPiece vocabulary"):
        WordPieceTokenizer(tmp_path / "bad.txt")
    with pytest.raises(ConfigError, match="context_length 20 exceeds the 16 rows"):
        InternVideo2Config(**{**TINY_INTERNVIDEO2, "context_length": 20})
    model = InternVideo2(InternVideo2Config(**TINY_INTERNVIDEO2))
    with pytest.raises(ConfigError, match="17 tokens exceed the 16 rows"):
        model.encode_text(torch.ones(1, 17, dtype=torch.long))
    with pytest.raises(ConfigError, match="takes 4 frames"):
        model.encode_video(torch.zeros(1, 3, 3, 28, 28))


@pytest.mark.parametrize(("preset", "vision", "text"), [
    ("internvideo2-s2-1b", 1_000_000_000, 300_000_000), ("internvideo2-s2-6b", 5_000_000_000, 300_000_000),
])
def test_presets_build_the_released_sizes(preset: str, vision: int, text: int) -> None:
    config = get_preset(preset).config
    with torch.device("meta"):
        model = InternVideo2(config)
    vision_params = sum(p.numel() for p in model.vision_encoder.parameters())
    text_params = sum(p.numel() for p in model.text_encoder.parameters())
    assert vision_params > vision
    assert 250_000_000 < text_params < text
    assert dataclasses.asdict(config)["fusion_layer"] == 19
    assert len(model.text_encoder.bert.encoder.layer) == 19
