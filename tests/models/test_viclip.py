import dataclasses

import pytest
import torch

from vidsearch.errors import ConfigError
from vidsearch.models import ViCLIP, ViCLIPConfig, create_model
from vidsearch.models.viclip import infer_fields

from .reference_viclip import ReferenceViCLIP

TINY = ViCLIPConfig(
    embed_dim=24, image_size=32, patch_size=8, num_frames=8, vision_width=32, vision_layers=2,
    vision_heads=4, context_length=32, vocab_size=49408, text_width=16, text_layers=2, text_heads=2,
)  # fmt: skip


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |a − b| / max |b|: the error relative to the output's scale."""
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.fixture(scope="module")
def pair() -> tuple[ViCLIP, ReferenceViCLIP]:
    torch.manual_seed(0)
    reference = ReferenceViCLIP(**dataclasses.asdict(TINY)).eval()
    with torch.no_grad():
        for p in reference.parameters():  # LayerNorms and biases away from 1 / 0, so they are checked
            p.add_(torch.randn_like(p) * 0.1)
    ours = ViCLIP(TINY).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours, reference


@pytest.mark.parametrize(
    ("preset", "total", "vision", "text"),
    [
        ("viclip-b16", 149_603_841, 86_198_784, 63_405_056),
        ("viclip-l14", 427_590_145, 303_974_400, 123_615_744),
    ],
)
def test_presets_have_the_official_parameter_counts(preset: str, total: int, vision: int, text: int) -> None:
    with torch.device("meta"):
        model = create_model(preset)
    assert isinstance(model, ViCLIP)
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.vision_encoder.parameters()) == vision
    assert sum(p.numel() for p in model.text_encoder.parameters()) == text


def test_video_matches_the_official_computation(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    ours, reference = pair
    frames = torch.randn(3, 8, 3, 32, 32)
    with torch.no_grad():
        err = max_rel_err(ours.encode_video(frames), reference.encode_vision(frames))
    assert err < 1e-5


def test_image_matches_the_official_computation(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    ours, reference = pair
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        err = max_rel_err(ours.encode_image(images), reference.encode_vision(images))
    assert err < 1e-5


def test_text_matches_the_official_computation(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    ours, reference = pair
    tokens = torch.zeros(3, 32, dtype=torch.long)
    for row, length in enumerate((2, 7, 32)):
        tokens[row, :length] = torch.randint(1, 49406, (length,))
        tokens[row, 0], tokens[row, length - 1] = 49406, 49407
    with torch.no_grad():
        err = max_rel_err(ours.encode_text(tokens), reference.text_encoder(tokens))
    assert err < 1e-5


def test_frame_order_matters(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    ours, _ = pair
    frames = torch.randn(1, 8, 3, 32, 32)
    with torch.no_grad():
        forward = ours.encode_video(frames)
        reversed_ = ours.encode_video(frames.flip(1))
    assert max_rel_err(reversed_, forward) > 1e-3


def test_image_is_a_one_frame_clip_with_the_mean_temporal_embedding(
    pair: tuple[ViCLIP, ReferenceViCLIP],
) -> None:
    ours, _ = pair
    one_frame = ViCLIP(dataclasses.replace(TINY, num_frames=1)).eval()
    weights = ours.state_dict()
    temporal = weights["vision_encoder.temporal_positional_embedding"]
    images = torch.randn(2, 3, 32, 32)
    for row, should_match in ((temporal.mean(dim=1, keepdim=True), True), (temporal[:, :1], False)):
        one_frame.load_state_dict({**weights, "vision_encoder.temporal_positional_embedding": row})
        with torch.no_grad():
            image, clip = ours.encode_image(images), one_frame.encode_video(images[:, None])
        same = torch.allclose(image, clip, atol=1e-6)
        assert same == should_match


def test_text_ignores_tokens_after_the_end_token(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    ours, _ = pair
    tokens = torch.zeros(1, 32, dtype=torch.long)
    tokens[0, :4] = torch.tensor([49406, 320, 1929, 49407])
    padded_differently = tokens.clone()
    padded_differently[0, 10] = 555
    changed_word = tokens.clone()
    changed_word[0, 2] = 1930
    with torch.no_grad():
        base = ours.encode_text(tokens)
        assert torch.equal(base, ours.encode_text(padded_differently))
        assert not torch.allclose(base, ours.encode_text(changed_word))


def test_wrong_frame_count_is_a_config_error(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    ours, _ = pair
    with pytest.raises(ConfigError, match="takes 8 frames"):
        ours.encode_video(torch.randn(1, 4, 3, 32, 32))


def test_token_dropping_keeps_the_stated_share_and_trains(pair: tuple[ViCLIP, ReferenceViCLIP]) -> None:
    model = ViCLIP(TINY).train()
    frames = torch.randn(2, 8, 3, 32, 32)
    seen: list[int] = []
    ln_pre = model.vision_encoder.ln_pre
    hook = ln_pre.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape[1]))
    model.encode_video(frames, mask_ratio=0.9).sum().backward()
    hook.remove()
    patches = 8 * (32 // 8) ** 2
    assert seen == [1 + patches - int(0.9 * patches)]
    assert model.vision_encoder.conv1.weight.grad is not None


def test_config_rejects_inconsistent_sizes() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        ViCLIPConfig(vision_width=100, vision_heads=16)
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        ViCLIPConfig(image_size=225)


def test_infer_fields_reads_every_shape_determined_field() -> None:
    odd = dataclasses.replace(
        TINY, embed_dim=20, image_size=48, patch_size=16, num_frames=4, vision_width=128, vision_layers=3,
        context_length=16, vocab_size=1000, text_width=64, text_layers=1,
    )  # fmt: skip
    inferred = infer_fields(ViCLIP(odd).state_dict())
    heads = {"vision_heads", "text_heads"}
    assert inferred == {k: v for k, v in dataclasses.asdict(odd).items() if k not in heads}
