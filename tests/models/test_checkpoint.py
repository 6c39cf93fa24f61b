import argparse
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.models import (
    ViCLIP,
    ViCLIPConfig,
    VideoMAEv2,
    VideoMAEv2Config,
    VideoMAEv2Pretrain,
    create_model,
    detect_family,
    load_checkpoint,
    read_state_dict,
)

TINY_VICLIP = ViCLIPConfig(
    embed_dim=24, image_size=32, patch_size=8, num_frames=8, vision_width=64, vision_layers=2,
    vision_heads=1, context_length=32, vocab_size=49408, text_width=64, text_layers=2, text_heads=1,
)  # fmt: skip
TINY_MAE = VideoMAEv2Config(
    image_size=32, patch_size=8, num_frames=4, width=64, depth=2, heads=1, mlp_hidden=128, num_classes=5,
    decoder_width=64, decoder_depth=1, decoder_heads=1,
)  # fmt: skip

# What no VideoMAE V2 tensor shape records (the position table is fixed, not stored).
MAE_UNSTORED = {"image_size": 32, "num_frames": 4}

Saver = Callable[[dict[str, torch.Tensor], Path], Path]


def _torch_saver(wrap: Callable[[dict[str, torch.Tensor]], object]) -> Saver:
    def save(state_dict: dict[str, torch.Tensor], folder: Path) -> Path:
        path = folder / "checkpoint.pth"
        torch.save(wrap(state_dict), path)
        return path

    return save


def _save_safetensors(state_dict: dict[str, torch.Tensor], folder: Path) -> Path:
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, path)
    return path


FORMATS: dict[str, Saver] = {
    "model-wrapper": _torch_saver(lambda sd: {"model": sd}),
    "module-wrapper": _torch_saver(lambda sd: {"module": sd, "epoch": torch.tensor(3)}),
    "bare": _torch_saver(lambda sd: sd),
    "compiled": _torch_saver(lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}}),
    "safetensors": _save_safetensors,
}


@pytest.fixture(scope="module")
def viclip() -> ViCLIP:
    torch.manual_seed(0)
    return ViCLIP(TINY_VICLIP).eval()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_viclip_round_trips_through_every_format(fmt: str, viclip: ViCLIP, tmp_path: Path) -> None:
    path = FORMATS[fmt](viclip.state_dict(), tmp_path)
    loaded = load_checkpoint(path)
    assert isinstance(loaded, ViCLIP)
    assert loaded.config == TINY_VICLIP
    assert not loaded.training
    frames, tokens = torch.randn(1, 8, 3, 32, 32), torch.tensor([[49406, 320, 49407] + [0] * 29])
    with torch.no_grad():
        assert torch.equal(loaded.encode_video(frames), viclip.encode_video(frames))
        assert torch.equal(loaded.encode_text(tokens), viclip.encode_text(tokens))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("cls", [VideoMAEv2, VideoMAEv2Pretrain])
def test_videomae_round_trips_through_every_format(fmt: str, cls: type, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cls(TINY_MAE).eval()
    loaded = load_checkpoint(FORMATS[fmt](model.state_dict(), tmp_path), **MAE_UNSTORED)
    assert type(loaded) is cls
    # A classifier has no decoder, a pre-training model no classification head.
    ignored = (
        {"num_classes"} if cls is VideoMAEv2Pretrain else {"decoder_width", "decoder_depth", "decoder_heads"}
    )
    loaded_fields, saved_fields = dataclasses.asdict(loaded.config), dataclasses.asdict(TINY_MAE)
    assert {k: v for k, v in loaded_fields.items() if k not in ignored} == {
        k: v for k, v in saved_fields.items() if k not in ignored
    }
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_official_videomae_prefixes_are_stripped(tmp_path: Path) -> None:
    model = VideoMAEv2(TINY_MAE)
    for prefix in ("backbone.", "encoder.", "module.backbone."):
        torch.save({"module": {prefix + k: v for k, v in model.state_dict().items()}}, tmp_path / "c.pth")
        loaded = load_checkpoint(tmp_path / "c.pth", **MAE_UNSTORED)
        assert isinstance(loaded, VideoMAEv2), prefix


def test_families_are_detected_by_their_keys() -> None:
    assert detect_family(ViCLIP(TINY_VICLIP).state_dict()).name == "viclip"
    assert detect_family(VideoMAEv2(TINY_MAE).state_dict()).name == "videomae_v2"
    assert detect_family(VideoMAEv2Pretrain(TINY_MAE).state_dict()).name == "videomae_v2_pretrain"


def test_architecture_is_inferred_and_heads_come_from_the_matching_preset(tmp_path: Path) -> None:
    # ViT-H's 16 heads of 80 cannot be read off any shape; the closest preset supplies them.
    with torch.device("meta"):
        huge = create_model("videomae-v2-h", num_classes=7, depth=2)
    state_dict = {k: torch.zeros(v.shape) for k, v in huge.state_dict().items()}
    torch.save(state_dict, tmp_path / "h.pth")
    loaded = load_checkpoint(tmp_path / "h.pth")
    assert isinstance(loaded, VideoMAEv2)
    assert (loaded.config.width, loaded.config.heads, loaded.config.depth) == (1280, 16, 2)
    assert loaded.config.num_classes == 7


def test_features_drop_a_head_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.save({"model": VideoMAEv2(TINY_MAE).state_dict()}, tmp_path / "c.pth")
    with caplog.at_level(logging.WARNING):
        features = load_checkpoint(tmp_path / "c.pth", num_classes=0, **MAE_UNSTORED)
    assert isinstance(features, VideoMAEv2)
    assert features.config.num_classes == 0
    assert "dropping its 5-class head" in caplog.text
    assert features(torch.randn(1, 3, 4, 32, 32)).shape == (1, 64)


def test_overrides_set_fields_and_unknown_fields_fail(viclip: ViCLIP, tmp_path: Path) -> None:
    torch.save(viclip.state_dict(), tmp_path / "c.pth")
    loaded = load_checkpoint(tmp_path / "c.pth", vision_heads=4)
    assert loaded.config == dataclasses.replace(TINY_VICLIP, vision_heads=4)
    with pytest.raises(ConfigError, match="unknown viclip config fields \\['bogus'\\]"):
        load_checkpoint(tmp_path / "c.pth", bogus=1)


def _corrupt(state_dict: dict[str, torch.Tensor], how: str) -> dict[str, torch.Tensor]:
    broken = dict(state_dict)
    if how == "missing":
        del broken["text_encoder.ln_final.weight"]
    elif how == "extra":
        broken["vision_encoder.surprise"] = torch.zeros(1)
    else:
        broken["vision_encoder.ln_post.bias"] = torch.zeros(3)
    return broken


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", r"missing keys \[text_encoder\.ln_final\.weight\]"),
        ("extra", r"unexpected keys \[vision_encoder\.surprise\]"),
        ("shape", r"wrong shapes \[vision_encoder\.ln_post\.bias: checkpoint \(3,\) vs model \(64,\)\]"),
    ],
)
def test_a_checkpoint_that_does_not_fit_names_the_keys(
    how: str, message: str, viclip: ViCLIP, tmp_path: Path
) -> None:
    torch.save({"model": _corrupt(viclip.state_dict(), how)}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(tmp_path / "c.pth", preset="viclip-b16", vision_heads=1, text_heads=1)
    assert "inferred ViCLIPConfig(embed_dim=24" in str(err.value)


def test_pickled_objects_are_refused(viclip: ViCLIP, tmp_path: Path) -> None:
    torch.save({"model": viclip.state_dict(), "args": argparse.Namespace(lr=1.0)}, tmp_path / "c.pth")
    with pytest.raises(
        CheckpointError, match=r"pickles a argparse\.Namespace; vidsearch loads nothing but tensors"
    ):
        read_state_dict(tmp_path / "c.pth")


def test_non_tensor_entries_are_refused(tmp_path: Path) -> None:
    torch.save({"layer.weight": torch.zeros(2), "step": 7}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=r"not tensors: \[step\]"):
        read_state_dict(tmp_path / "c.pth")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_files_are_refused(suffix: str, viclip: ViCLIP, tmp_path: Path) -> None:
    save = FORMATS["safetensors"] if suffix == ".safetensors" else FORMATS["bare"]
    path = save(viclip.state_dict(), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated|not a readable safetensors"):
        read_state_dict(path)


def test_random_bytes_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "noise.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        read_state_dict(tmp_path / "noise.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_state_dict(tmp_path / "absent.pt")


def test_an_unknown_preset_lists_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'viclip-xxl'.*viclip-b16"):
        create_model("viclip-xxl")
