"""The VideoMAE V2 pre-training loss on a worked example small enough to check by hand."""

import itertools

import pytest
import torch

from vidsearch.formats.imagenet import IMAGENET_MEAN, IMAGENET_STD
from vidsearch.models import VideoMAEv2Config
from vidsearch.models.videomae_pretrain import pretrain_loss, pretrain_targets
from vidsearch.training.videomae import MAEObjective, MAEObjectiveConfig

# 2 frames of 4×4 pixels, tubelets 2×2×2: a 1×2×2 grid of 4 tokens, each 3·2·2·2 = 24 values.
CONFIG = VideoMAEv2Config(
    image_size=4,
    patch_size=2,
    num_frames=2,
    tubelet_size=2,
    width=8,
    depth=1,
    heads=1,
    mlp_hidden=8,
    num_classes=0,
    decoder_width=8,
    decoder_depth=1,
    decoder_heads=1,
)


def _normalised(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (pixels - mean) / std


def test_two_level_tubelets_against_zero_predictions_cost_seven_eighths() -> None:
    """Every tubelet and channel holds four pixels at a and four at b. Normalised per tubelet and
    channel with the unbiased std, each value is ±sqrt(7/8): the mean squared error of predicting 0
    is 7/8 for every token, whichever tokens the masks select."""
    pixels = torch.zeros(1, 3, 2, 4, 4)
    for c, t, y, x in itertools.product(range(3), range(2), range(4), range(4)):
        level = (x + y) % 2  # a checkerboard: half of every 2×2×2 tubelet high, half low
        pixels[0, c, t, y, x] = 0.2 + 0.1 * c + 0.5 * level
    targets = pretrain_targets(_normalised(pixels), CONFIG)
    assert targets.shape == (1, 4, 24)
    assert torch.allclose(targets.abs(), torch.full_like(targets, (7 / 8) ** 0.5), atol=1e-4)
    encoder_mask = torch.tensor([[True, False, True, True]])  # token 1 visible
    decoder_mask = torch.tensor([[False, True, False, True]])  # tokens 0 and 2 reconstructed
    loss = pretrain_loss(torch.zeros(1, 2, 24), targets, encoder_mask, decoder_mask)
    assert float(loss) == pytest.approx(7 / 8, abs=1e-4)


def test_loss_averages_only_tokens_reconstructed_and_hidden() -> None:
    """Token 0: hidden and reconstructed, error 1 per value; token 1: visible but reconstructed
    (error 9, excluded); token 2: hidden, reconstructed, error 4; token 3 not reconstructed."""
    targets = torch.zeros(1, 4, 24)
    encoder_mask = torch.tensor([[True, False, True, True]])
    decoder_mask = torch.tensor([[False, False, False, True]])
    pred = torch.stack([torch.full((24,), 1.0), torch.full((24,), 3.0), torch.full((24,), 2.0)])[None]
    assert float(pretrain_loss(pred, targets, encoder_mask, decoder_mask)) == pytest.approx((1 + 4) / 2)


def test_flattening_is_channel_fastest_within_time_row_column() -> None:
    pixels = torch.rand(1, 3, 2, 4, 4)
    targets = pretrain_targets(_normalised(pixels), CONFIG)
    # token 3 is the bottom-right tubelet; hand-normalise its red channel and compare positions 0, 3, 6, …
    tube = pixels[0, 0, :, 2:4, 2:4].reshape(-1)
    expected = (tube - tube.mean()) / (tube.var(unbiased=True).sqrt() + 1e-6)
    assert torch.allclose(targets[0, 3, 0::3], expected, atol=1e-4)


def test_objective_draws_the_official_mask_ratios() -> None:
    from vidsearch.models import VideoMAEv2Pretrain

    config = VideoMAEv2Config(
        image_size=8,
        patch_size=2,
        num_frames=4,
        tubelet_size=2,
        width=8,
        depth=1,
        heads=1,
        mlp_hidden=8,
        num_classes=0,
        decoder_width=8,
        decoder_depth=1,
        decoder_heads=1,
    )
    objective = MAEObjective(VideoMAEv2Pretrain(config), MAEObjectiveConfig(0.75, 0.5))
    encoder, decoder = objective.masks(3, torch.device("cpu"))
    assert encoder.shape == decoder.shape == (3, 32)
    assert encoder.sum(dim=1).tolist() == [24, 24, 24]  # 0.75 of 16 positions, in both slots
    assert torch.equal(encoder[:, :16], encoder[:, 16:])  # a tube: the same in every temporal slot
    assert decoder.sum(dim=1).tolist() == [16, 16, 16]
    loss = objective({"video": torch.randn(3, 3, 4, 8, 8)})["loss"]
    assert torch.isfinite(loss)
