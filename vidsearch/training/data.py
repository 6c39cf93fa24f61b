"""Turning a recipe's data section into data sets: the synthetic set generated when asked, manifests
read, clips decoded through `vidsearch.video` (once into a cache, or on every access).

Under `torchrun` only process 0 writes (generates, caches); the others wait at a barrier and read.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch.utils.data import Dataset

from vidsearch.errors import ConfigError
from vidsearch.training.config import DataConfig
from vidsearch.training.datasets import CachedClipDataset, ClipDataset, Item, ItemSpec, build_cache
from vidsearch.training.distributed import ProcessPlacement, barrier
from vidsearch.training.synthetic import SynthSpec, generate
from vidsearch.video import Preprocess
from vidsearch.video.manifest import Manifest, read_manifest

log = logging.getLogger(__name__)

# (stage, done, total): generation and caching report through this.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Manifests:
    train: Manifest
    test: Manifest | None


def _synthetic(
    spec: SynthSpec, folder: Path, workers: int, run: ProcessPlacement, progress: Progress | None
) -> None:
    """Generate the synthetic set into `folder` unless the same spec is already there."""
    meta = folder / "synth.json"
    if run.is_main:
        existing = json.loads(meta.read_text()).get("spec") if meta.is_file() else None
        if existing != asdict(spec):
            report = (lambda done, total: progress("generate", done, total)) if progress else None
            generate(folder, spec, report, workers)
    barrier(run)


def resolve_manifests(
    data: DataConfig, out_dir: Path, run: ProcessPlacement, progress: Progress | None = None
) -> Manifests:
    """The train (and test) manifests of a data section, generating the synthetic set if needed."""
    if data.train is not None:
        return Manifests(read_manifest(data.train), read_manifest(data.test) if data.test else None)
    if data.synthetic is None:
        raise ConfigError(
            "data: give a training manifest (--train, data.train) or a synthetic set (data.synthetic)"
        )
    try:
        spec = SynthSpec(**dict(data.synthetic or {}))
    except TypeError as err:
        raise ConfigError(f"data.synthetic: {err}") from None
    folder = out_dir / "data"
    _synthetic(spec, folder, data.workers, run, progress)
    test = data.test or folder / "test.jsonl"
    return Manifests(read_manifest(folder / "train.jsonl"), read_manifest(test))


def clip_dataset(
    manifest: Manifest,
    preprocess: Preprocess,
    spec: ItemSpec,
    data: DataConfig,
    cache_dir: Path,
    run: ProcessPlacement,
    progress: Progress | None = None,
    stage: str = "cache",
) -> Dataset[Item]:
    """A data set over `manifest`: from a uint8 cache (built by process 0 with `data.workers`
    decoding processes) if `data.cache`, else decoding on every access."""
    if not data.cache:
        return ClipDataset(manifest, preprocess, spec)
    report = (lambda done, total: progress(stage, done, total)) if progress else None
    path: Path | None = None
    if run.is_main:
        path = build_cache(manifest, preprocess, cache_dir, data.workers, report)
    barrier(run)
    if path is None:
        path = build_cache(manifest, preprocess, cache_dir)  # built by process 0: just its path
    return CachedClipDataset(manifest, preprocess, path, spec)
