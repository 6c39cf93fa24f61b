"""VideoMAE V2 pre-training data side: dual masking (encoder tube mask, decoder running-cell mask),
normalised-pixel targets and the loss, as the official release defines them (docs/models.md,
Model contracts, VideoMAE V2 pre-training). The model itself is `videomae.VideoMAEv2Pretrain`.

Mask convention (the official one): True means hidden from the encoder (`encoder_mask`), and
NOT reconstructed by the decoder (`decoder_mask`, the official `decode_mask`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from vidsearch.errors import ConfigError
from vidsearch.formats.imagenet import IMAGENET_MEAN, IMAGENET_STD
from vidsearch.models.videomae import VideoMAEv2Config, reconstructed_tokens

# ----------------------------------------------------------------------------------------------- masks


def tube_mask(
    config: VideoMAEv2Config, ratio: float = 0.9, generator: torch.Generator | None = None
) -> Tensor:
    """Encoder mask bool [N]: one random spatial mask of `int(ratio · rows · cols)` hidden tokens,
    repeated in every temporal slot (the official `TubeMaskingGenerator`)."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"tube mask ratio must be in [0, 1), got {ratio}")
    slots, rows, cols = config.grid
    per_slot = rows * cols
    spatial = torch.zeros(per_slot, dtype=torch.bool)
    spatial[torch.randperm(per_slot, generator=generator)[: int(ratio * per_slot)]] = True
    return spatial.repeat(slots)


def running_cell_mask(
    config: VideoMAEv2Config, ratio: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """Decoder mask bool [N] (True = not reconstructed), the official `RunningCellMaskingGenerator`.

    A 2×2 cell is the queue `int(4·ratio)` × True then False, read from a pointer that starts at a
    random phase and advances one position per temporal slot; the cell is tiled over the grid.
    """
    hidden = int(4 * ratio)
    if not 0 < hidden < 4:
        raise ConfigError(f"running-cell mask ratio must give 1 to 3 of 4 cell positions, got {ratio}")
    slots, rows, cols = config.grid
    if rows % 2 or cols % 2:
        raise ConfigError(f"running-cell masking needs an even token grid, got {rows}×{cols}")
    queue = torch.arange(4) < hidden
    phase = int(torch.randint(4, (1,), generator=generator))
    index = (torch.arange(4)[None, :] + torch.arange(slots)[:, None] + phase + 1) % 4
    cells = queue[index].reshape(slots, 2, 2)
    rows_in_cell = (torch.arange(rows) % 2)[:, None]
    cols_in_cell = (torch.arange(cols) % 2)[None, :]
    return cells[:, rows_in_cell, cols_in_cell].reshape(-1)


# ------------------------------------------------------------------------------------- targets, loss


def pretrain_targets(video: Tensor, config: VideoMAEv2Config) -> Tensor:
    """Normalised-pixel targets [B, N, 3·tubelet·p²] of an ImageNet-normalised clip [B, 3, T, H, W].

    Pixels are un-normalised to [0, 1], cut into tubelets, normalised per tubelet and channel with
    the unbiased std (+1e-6), and flattened (tubelet, row, column, channel) with channel fastest.
    """
    expected = (3, config.num_frames, config.image_size, config.image_size)
    if video.dim() != 5 or tuple(video.shape[1:]) != expected or config.in_chans != 3:
        raise ConfigError(
            f"pre-training targets need RGB video [B, C, T, H, W] with (C, T, H, W) = {expected}, "
            f"got {tuple(video.shape)} for in_chans={config.in_chans}"
        )
    video = video.detach()
    mean = torch.tensor(IMAGENET_MEAN, dtype=video.dtype, device=video.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=video.dtype, device=video.device).view(1, 3, 1, 1, 1)
    pixels = video * std + mean
    B, C, T, H, W = pixels.shape
    t, p = config.tubelet_size, config.patch_size
    tubes = pixels.reshape(B, C, T // t, t, H // p, p, W // p, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
    tubes = tubes.reshape(B, config.num_patches, t * p * p, C)
    tubes = (tubes - tubes.mean(dim=-2, keepdim=True)) / (tubes.var(dim=-2, keepdim=True).sqrt() + 1e-6)
    return tubes.reshape(B, config.num_patches, t * p * p * C)


def pretrain_loss(pred: Tensor, targets: Tensor, encoder_mask: Tensor, decoder_mask: Tensor | None) -> Tensor:
    """Mean squared error over features, averaged over tokens reconstructed AND hidden from the encoder.

    `pred` is the model output [B, N_rec, P]; `targets` covers every token [B, N, P].
    """
    B, _, P = targets.shape
    rec = reconstructed_tokens(encoder_mask, decoder_mask)
    labels = targets[rec].reshape(B, -1, P)
    if pred.shape != labels.shape:
        raise ConfigError(
            f"predictions {tuple(pred.shape)} do not match the reconstructed targets {tuple(labels.shape)}"
        )
    per_token = (pred - labels).pow(2).mean(dim=-1)
    counted = encoder_mask[rec].reshape(B, -1).to(per_token.dtype)
    return (per_token * counted).sum() / counted.sum()
