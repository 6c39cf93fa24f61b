"""Losses: ViCLIP's video–text contrastive loss, and the gathering it needs across processes.

The contrastive loss follows the official ViCLIP training (InternVid's `vtc_loss`): both embeddings
are L2-normalised, similarities divided by the learned temperature, and the targets of a row are
uniform over every item sharing its `groups` id (each pair alone when no ids are given), so clips of
the same video or the same caption are not pushed apart. Under DDP the embeddings of every process
are gathered with gradients first, so each process computes the loss of the global batch and the
averaged gradients equal those of one process on that batch.
"""

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vidsearch.errors import ConfigError

MIN_TEMPERATURE = 0.01


@torch.no_grad()
def clamp_temperature(temp: nn.Parameter, minimum: float = MIN_TEMPERATURE) -> None:
    """Keep the learned temperature at or above `minimum`, in place, as the official loop does
    before every forward pass (logits never sharper than 1 / minimum)."""
    temp.clamp_(min=minimum)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradient over processes and returns each its
    own rows (a reduce-scatter written as all-reduce + slice, which every backend, gloo included, has)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate `tensor` (equal shapes) from every process along dim 0, gradients flowing back to
    each process's own rows. The identity outside a process group."""
    if not _distributed():
        return tensor
    gathered: Tensor = _GatherWithGrad.apply(tensor)
    return gathered


def gather_all(tensor: Tensor) -> Tensor:
    """Concatenate `tensor` from every process along dim 0, without gradients."""
    if not _distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def contrastive_targets(groups: Tensor | None, size: int, device: torch.device) -> Tensor:
    """Row-normalised target matrix: 1/k over the k items of a row's group (the diagonal if None)."""
    if groups is None:
        return torch.eye(size, device=device)
    if groups.shape != (size,):
        raise ConfigError(f"contrastive loss: groups must have shape ({size},), got {tuple(groups.shape)}")
    same = (groups[:, None] == groups[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def video_text_contrastive_loss(
    video: Tensor, text: Tensor, temp: Tensor, groups: Tensor | None = None, gather: bool = True
) -> Tensor:
    """Symmetric InfoNCE between video and text embeddings [B, D] at temperature `temp`.

    `groups` (int [B]) marks items that are positives of each other. With `gather`, embeddings and
    groups of all processes are gathered first (see the module docstring).
    """
    if video.shape != text.shape or video.dim() != 2:
        raise ConfigError(
            f"contrastive loss: need video and text [B, D] of one shape, got "
            f"{tuple(video.shape)} and {tuple(text.shape)}"
        )
    if gather:
        video, text = gather_with_grad(video), gather_with_grad(text)
        if groups is not None:
            groups = gather_all(groups)
    video = F.normalize(video.float(), dim=-1)
    text = F.normalize(text.float(), dim=-1)
    logits = video @ text.T / temp
    targets = contrastive_targets(groups, logits.shape[0], logits.device)
    video_to_text = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
    text_to_video = -(F.log_softmax(logits.T, dim=1) * targets).sum(dim=1).mean()
    return (video_to_text + text_to_video) / 2
