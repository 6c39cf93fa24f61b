from pathlib import Path

import numpy as np
import pytest
import torch

from vidsearch.errors import ConfigError
from vidsearch.models import get_tokenizer
from vidsearch.training.datasets import (
    CachedClipDataset,
    ClipDataset,
    ItemSpec,
    build_cache,
    group_ids,
    normalise,
    quantise,
)
from vidsearch.training.synthetic import SynthSpec, generate
from vidsearch.video import Clip, Preprocess, read_clips
from vidsearch.video.manifest import read_manifest

from .conftest import TINY_PREPROCESS


def test_dataset_items_are_what_serving_computes_and_the_cache_is_bit_exact(
    synth_data: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(synth_data / "test.jsonl")
    preprocess = Preprocess.from_dict(TINY_PREPROCESS)
    spec = ItemSpec(get_tokenizer(), group_ids(manifest, "label"), manifest.labels())
    live = ClipDataset(manifest, preprocess, spec)
    row = manifest.rows[2]
    ((_, served),) = list(
        read_clips(manifest.path_of(row), [Clip(0, row.start_s or 0.0, row.end_s or 0.0)], preprocess)
    )
    item = live[2]
    assert torch.equal(item["video"], torch.from_numpy(served))
    assert item["video"].shape == (8, 3, 32, 32)
    assert item["text"][0] == 49406
    assert int(item["label"]) == manifest.labels().index(row.label)
    cache = build_cache(manifest, preprocess, tmp_path, workers=0)
    assert build_cache(manifest, preprocess, tmp_path) == cache  # reused, not rebuilt
    cached = CachedClipDataset(manifest, preprocess, cache, spec)
    for index in range(len(manifest)):
        assert torch.equal(cached[index]["video"], live[index]["video"])
        assert torch.equal(cached[index]["text"], live[index]["text"])


def test_quantise_inverts_normalise_and_refuses_lossy_specs() -> None:
    preprocess = Preprocess.from_dict(TINY_PREPROCESS)
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 3, 4, 4), dtype=np.uint8))
    assert torch.equal(quantise(normalise(pixels, preprocess), preprocess), pixels)
    with pytest.raises(ConfigError, match="exactly"):
        quantise(normalise(pixels, preprocess) + 1e-3, preprocess)


def test_group_ids(synth_data: Path) -> None:
    manifest = read_manifest(synth_data / "train.jsonl")
    assert group_ids(manifest, "pair") == list(range(len(manifest)))
    by_label = group_ids(manifest, "label")
    by_caption = group_ids(manifest, "caption")
    labels = [row.label for row in manifest.rows]
    for i in range(len(manifest)):
        for j in range(len(manifest)):
            assert (by_label[i] == by_label[j]) == (labels[i] == labels[j])
    assert len(set(by_caption)) >= len(set(by_label))


def test_cache_for_other_clips_is_refused(synth_data: Path, tmp_path: Path) -> None:
    test = read_manifest(synth_data / "test.jsonl")
    preprocess = Preprocess.from_dict(TINY_PREPROCESS)
    cache = build_cache(test, preprocess, tmp_path)
    with pytest.raises(ConfigError, match="other clips"):
        CachedClipDataset(read_manifest(synth_data / "train.jsonl"), preprocess, cache)


def test_a_regenerated_video_gets_a_new_cache(tmp_path: Path) -> None:
    generate(tmp_path / "data", SynthSpec(n=4, seed=1, test_fraction=0.5, size=48))
    manifest = read_manifest(tmp_path / "data" / "test.jsonl")
    preprocess = Preprocess.from_dict(TINY_PREPROCESS)
    first = build_cache(manifest, preprocess, tmp_path / "cache")
    generate(tmp_path / "data", SynthSpec(n=4, seed=2, test_fraction=0.5, size=48))
    second = build_cache(read_manifest(tmp_path / "data" / "test.jsonl"), preprocess, tmp_path / "cache")
    assert first != second
