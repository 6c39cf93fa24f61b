"""Clip data sets for training and evaluation, read through `vidsearch.video`.

`ClipDataset` decodes a manifest row's clip on every access with `read_clips` (the same sampling
and preprocessing as serving), so it runs in DataLoader worker processes. `ClipCache` decodes every
clip once and stores it as uint8: a normalised clip is an affine function of uint8 pixels, so the
stored pixels are recovered from `read_clips`' output and the recovery is checked bit for bit against
it while building. `CachedClipDataset` then serves exactly the tensors `ClipDataset` would.

Items are dicts of tensors: `video` (float32, laid out as the spec says), `index`, and where asked
`text` (token ids), `group` (contrastive positives) and `label` (class index).
"""

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vidsearch.errors import ConfigError, VideoError
from vidsearch.formats.atomic import atomic_path
from vidsearch.models.tokenizer import Tokenizer
from vidsearch.video import Clip, Preprocess, probe, read_clips
from vidsearch.video.manifest import Manifest, ManifestRow

log = logging.getLogger(__name__)

Item = dict[str, Tensor]
Progress = Callable[[int, int], None]


def group_ids(manifest: Manifest, positives: str) -> list[int]:
    """Contrastive group of each row: its own index ("pair"), or the rank of its caption / label
    among the distinct ones ("caption", "label"; a row without a label falls back to its caption)."""
    if positives == "pair":
        return list(range(len(manifest)))
    keys = [
        row.caption if positives == "caption" or row.label is None else f"\0{row.label}"
        for row in manifest.rows
    ]
    index = {key: number for number, key in enumerate(sorted(set(keys)))}
    return [index[key] for key in keys]


@dataclass(frozen=True)
class ItemSpec:
    """What an item carries besides the video."""

    tokenizer: Tokenizer | None = None
    groups: Sequence[int] | None = None
    labels: Sequence[str] | None = None  # class names; a row's label is looked up here


def _clip_of(manifest: Manifest, row: ManifestRow) -> Clip:
    if row.start_s is not None and row.end_s is not None:
        return Clip(0, row.start_s, row.end_s)
    return Clip(0, 0.0, probe(manifest.path_of(row)).duration_s)


def read_clip(manifest: Manifest, row: ManifestRow, preprocess: Preprocess) -> np.ndarray[Any, Any]:
    """The model input of one manifest row, as serving would compute it."""
    clip = _clip_of(manifest, row)
    for _, tensor in read_clips(manifest.path_of(row), [clip], preprocess):
        return tensor
    raise VideoError(f"{manifest.path_of(row)}: clip {clip.start_s:.2f}–{clip.end_s:.2f} s gave no frames")


def _extras(manifest: Manifest, index: int, spec: ItemSpec) -> Item:
    row = manifest.rows[index]
    item: Item = {"index": torch.tensor(index)}
    if spec.tokenizer is not None:
        item["text"] = torch.from_numpy(spec.tokenizer(row.caption)[0])
    if spec.groups is not None:
        item["group"] = torch.tensor(spec.groups[index])
    if spec.labels is not None:
        if row.label not in spec.labels:
            raise ConfigError(
                f"{manifest.path_of(row)}: label {row.label!r} is not among the {len(spec.labels)} classes"
            )
        item["label"] = torch.tensor(spec.labels.index(row.label))
    return item


class ClipDataset(Dataset[Item]):
    """Decodes a row's clip on every access (use DataLoader workers for throughput)."""

    def __init__(self, manifest: Manifest, preprocess: Preprocess, spec: ItemSpec | None = None) -> None:
        self.manifest, self.preprocess, self.spec = manifest, preprocess, spec or ItemSpec()

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> Item:
        video = read_clip(self.manifest, self.manifest.rows[index], self.preprocess)
        return {"video": torch.from_numpy(video), **_extras(self.manifest, index, self.spec)}


# --- the uint8 cache -----------------------------------------------------------------------------


def _channel_view(preprocess: Preprocess, values: Sequence[float]) -> Tensor:
    """Per-channel constants shaped to broadcast over one clip of the spec's layout and order."""
    ordered = list(values)[::-1] if preprocess.channels == "BGR" else list(values)
    shape = (1, 3, 1, 1) if preprocess.layout == "TCHW" else (3, 1, 1, 1)
    return torch.tensor(ordered, dtype=torch.float32).view(shape)


def normalise(pixels: Tensor, preprocess: Preprocess) -> Tensor:
    """uint8 clip (or batch of clips) → float32 model input: x / 255, minus mean, over std."""
    mean, std = _channel_view(preprocess, preprocess.mean), _channel_view(preprocess, preprocess.std)
    return (pixels.float() / 255.0 - mean) / std


def quantise(video: Tensor, preprocess: Preprocess) -> Tensor:
    """The uint8 pixels a float32 clip was normalised from; raises if they do not reproduce it exactly."""
    mean, std = _channel_view(preprocess, preprocess.mean), _channel_view(preprocess, preprocess.std)
    pixels = ((video * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    if not torch.equal(normalise(pixels, preprocess), video):
        raise ConfigError(
            "cache: this preprocessing does not map uint8 pixels to the model input exactly; "
            "train without the cache (data.cache=false)"
        )
    return pixels


class _QuantisedClips(Dataset[Tensor]):
    def __init__(self, manifest: Manifest, preprocess: Preprocess) -> None:
        self.manifest, self.preprocess = manifest, preprocess

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> Tensor:
        video = read_clip(self.manifest, self.manifest.rows[index], self.preprocess)
        return quantise(torch.from_numpy(video), self.preprocess)


def _identity(path: Path) -> tuple[int, int]:
    """Size and modification time: a regenerated video gets a new cache."""
    try:
        stat = path.stat()
    except OSError as err:
        raise VideoError(f"{path}: cannot read the video ({err.strerror})") from None
    return stat.st_size, stat.st_mtime_ns


def cache_key(manifest: Manifest, preprocess: Preprocess) -> str:
    """What a cache was built from: each row's video (path, size, modification time) and times,
    and the preprocessing digest."""
    rows = [(str(p), *_identity(p), r.start_s, r.end_s) for r in manifest.rows for p in [manifest.path_of(r)]]
    text = json.dumps({"rows": rows, "preprocess": preprocess.digest()})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_cache(
    manifest: Manifest,
    preprocess: Preprocess,
    folder: Path,
    workers: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Decode every clip once into `folder/clips-<key>.pt` (kept if already there) and return its path."""
    path = folder / f"clips-{cache_key(manifest, preprocess)}.pt"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    out = torch.empty((len(manifest), *preprocess.output_shape), dtype=torch.uint8)
    loader = DataLoader(
        _QuantisedClips(manifest, preprocess),
        batch_size=16,
        num_workers=workers,
        worker_init_fn=_one_thread if workers else None,
    )
    done = 0
    with one_thread():
        for batch in loader:
            out[done : done + len(batch)] = batch
            done += len(batch)
            if progress is not None:
                progress(done, len(manifest))
    with atomic_path(path) as tmp:
        torch.save({"pixels": out, "preprocess": preprocess.to_dict()}, tmp)
    log.info("cached %d clips (%s) in %s", len(manifest), "×".join(map(str, out.shape[1:])), path)
    return path


def _one_thread(worker_id: int) -> None:
    torch.set_num_threads(1)


@contextmanager
def one_thread() -> Iterator[None]:
    """Decode with one torch thread: resizing tiny frames gains nothing from more, and on a busy
    machine extra threads spin against each other (measured: 200 ms vs 13 ms per clip)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class CachedClipDataset(Dataset[Item]):
    """Serves clips from a cache built by `build_cache`: the tensors `ClipDataset` would give."""

    def __init__(
        self, manifest: Manifest, preprocess: Preprocess, cache: Path, spec: ItemSpec | None = None
    ) -> None:
        stored = torch.load(cache, map_location="cpu", weights_only=True)
        if Preprocess.from_dict(stored["preprocess"]) != preprocess or len(stored["pixels"]) != len(manifest):
            raise ConfigError(
                f"{cache}: built for other clips or another preprocessing; delete it to rebuild"
            )
        self.pixels: Tensor = stored["pixels"]
        self.manifest, self.preprocess, self.spec = manifest, preprocess, spec or ItemSpec()

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> Item:
        return {
            "video": normalise(self.pixels[index], self.preprocess),
            **_extras(self.manifest, index, self.spec),
        }
