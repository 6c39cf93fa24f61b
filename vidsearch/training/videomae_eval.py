"""Multi-view evaluation of a video classifier, as VideoMAE V2 reports it: several clips spread over
each video (temporal views) × up to three crops across its long side (spatial views), the mean of
the views' softmax, then top-1 / top-5.

Temporal view i of n covers the span the sampling rule needs (frames × stride at the video's frame
rate), placed at i/(n-1) of the way from the video's start to its end (centred when n = 1). Spatial
views reuse the preprocessing's resize (short side to `short_side`) and take the left, centre and
right (or top, centre, bottom) squares of the crop size.
"""

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vidsearch.errors import ConfigError
from vidsearch.models import VideoMAEv2
from vidsearch.training.evaluate import multiview_probabilities, topk_accuracy
from vidsearch.video import Clip, Preprocess, probe, read_clips
from vidsearch.video.manifest import Manifest


def temporal_views(clip: Clip, span_s: float, views: int) -> list[Clip]:
    """`views` windows of `span_s` spread evenly over `clip` (the whole clip where it is shorter)."""
    if clip.duration_s <= span_s:
        return [Clip(i, clip.start_s, clip.end_s) for i in range(views)]
    room = clip.duration_s - span_s
    starts = (
        [clip.start_s + room / 2]
        if views == 1
        else [clip.start_s + room * i / (views - 1) for i in range(views)]
    )
    return [Clip(i, start, start + span_s) for i, start in enumerate(starts)]


def _uncropped(preprocess: Preprocess, width: int, height: int) -> Preprocess:
    """The spec with its crop widened to the whole resized frame, so the crops can be cut after."""
    short = preprocess.short_side or max(preprocess.size)
    long_side = int(max(width, height) * short / min(width, height) + 0.5)
    size = (short, long_side) if width >= height else (long_side, short)
    return replace(preprocess, size=size)


def spatial_crops(video: Tensor, size: tuple[int, int], crops: int) -> list[Tensor]:
    """Crops of `size` from a CTHW clip along its longer side: centre only, or start, centre, end."""
    height, width = video.shape[-2:]
    crop_h, crop_w = size
    if crops == 1 or (height == crop_h and width == crop_w):
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return [video[..., top : top + crop_h, left : left + crop_w]] * crops
    if width >= height:
        lefts = (0, (width - crop_w) // 2, width - crop_w)
        top = (height - crop_h) // 2
        return [video[..., top : top + crop_h, x : x + crop_w] for x in lefts]
    tops = (0, (height - crop_h) // 2, height - crop_h)
    left = (width - crop_w) // 2
    return [video[..., y : y + crop_h, left : left + crop_w] for y in tops]


class MultiViewDataset(Dataset[dict[str, Tensor]]):
    """Per row: {video [views, C, T, H, W], label}."""

    def __init__(
        self, manifest: Manifest, preprocess: Preprocess, labels: list[str], temporal: int, crops: int
    ) -> None:
        if preprocess.sampling.mode != "centre_stride" or preprocess.resize != "short_side_crop":
            raise ConfigError(
                "multi-view evaluation needs centre_stride sampling and a short_side_crop resize"
            )
        self.manifest, self.preprocess, self.labels = manifest, preprocess, labels
        self.temporal, self.crops = temporal, crops

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        row = self.manifest.rows[index]
        path = self.manifest.path_of(row)
        info = probe(path)
        clip = Clip(0, row.start_s or 0.0, row.end_s if row.end_s is not None else info.duration_s)
        span = self.preprocess.frames * (self.preprocess.sampling.stride_frames or 1) / info.fps
        width, height = info.display_size
        spec = _uncropped(self.preprocess, width, height) if self.crops == 3 else self.preprocess
        views: list[Tensor] = []
        for _, video in read_clips(path, temporal_views(clip, span, self.temporal), spec):
            views.extend(spatial_crops(torch.from_numpy(video), self.preprocess.size, self.crops))
        if row.label not in self.labels:
            raise ConfigError(
                f"{path}: label {row.label!r} is not among the {len(self.labels)} trained classes"
            )
        return {"video": torch.stack(views), "label": torch.tensor(self.labels.index(row.label))}


@torch.no_grad()
def evaluate_classifier(
    model: VideoMAEv2,
    manifest: Manifest,
    preprocess: Preprocess,
    labels: list[str],
    temporal: int = 5,
    crops: int = 3,
    workers: int = 0,
    batch_size: int = 4,
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy from the mean softmax over temporal × spatial views."""
    model.eval()
    device = next(model.parameters()).device
    dataset = MultiViewDataset(manifest, preprocess, labels, temporal, crops)
    probabilities, truth = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        video = batch["video"].to(device)
        logits = model(video.flatten(0, 1)).view(video.shape[0], video.shape[1], -1)
        probabilities.append(multiview_probabilities(logits).cpu())
        truth.append(batch["label"])
    scores = topk_accuracy(torch.cat(probabilities), torch.cat(truth), ks=(1, 5))
    return {**scores, "videos": len(dataset), "views": temporal * crops}
