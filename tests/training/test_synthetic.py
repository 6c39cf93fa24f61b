import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from vidsearch.errors import ConfigError
from vidsearch.training.synthetic import (
    COLOURS,
    MOTIONS,
    OPPOSITE,
    SHAPES,
    Combo,
    SynthSpec,
    combos,
    generate,
    plan,
    scene_frames,
)
from vidsearch.video import Clip, SamplingRule, read_frames

SMALL = SynthSpec(n=12, seed=3, test_fraction=0.25, size=48)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_generator_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    generate(tmp_path / "a", SMALL)
    generate(tmp_path / "b", SMALL)
    generate(tmp_path / "c", SynthSpec(n=12, seed=4, test_fraction=0.25, size=48))
    first = _digest(tmp_path / "a")
    assert len([k for k in first if k.endswith(".mp4")]) == 12
    assert first == _digest(tmp_path / "b")
    other = _digest(tmp_path / "c")
    assert first.keys() == other.keys()
    assert first != other


def test_held_out_combinations_never_appear_in_training_but_all_parts_do() -> None:
    train, test = set(combos("train")), set(combos("test"))
    assert train.isdisjoint(test)
    assert len(train) + len(test) == len(COLOURS) * len(SHAPES) * len(MOTIONS)
    assert 0.2 < len(test) / (len(train) + len(test)) < 0.3
    for a, b in itertools.combinations(("colour", "shape", "motion"), 2):
        seen = {(getattr(c, a), getattr(c, b)) for c in train}
        values = {"colour": list(COLOURS), "shape": SHAPES, "motion": MOTIONS}
        assert seen == set(itertools.product(values[a], values[b])), (a, b)
    # twins (opposite motions) stay in one split
    assert all(Combo(c.colour, c.shape, OPPOSITE[c.motion]) in test for c in test)


def test_plan_respects_counts_and_splits() -> None:
    spec = SynthSpec(n=400, seed=0, test_fraction=0.1)
    planned = plan(spec)
    assert len(planned) == 400
    test = [p for p in planned if p.split == "test"]
    assert len(test) == 40
    assert {p.combo for p in test} <= set(combos("test"))
    assert {p.combo for p in planned if p.split == "train"} <= set(combos("train"))
    motions = [p.combo.motion for p in planned if p.split == "train"]
    counts = [motions.count(m) for m in MOTIONS]
    assert max(counts) - min(counts) <= 0.25 * max(counts)


def test_opposite_motions_share_exactly_the_same_frames() -> None:
    spec = SynthSpec(n=40, seed=1, size=48)
    planned = plan(spec)
    forward = next(p for p in planned if p.combo.motion == "left" and not p.reversed)
    twin = next(p for p in planned if p.scene == forward.scene and p.split == forward.split and p.reversed)
    assert twin.combo.motion == "right"
    a, b = scene_frames(spec, forward), scene_frames(spec, twin)
    assert np.array_equal(a, b[::-1])
    assert not np.array_equal(a, b)


def test_decoded_twins_sample_the_same_frames_in_reverse(tmp_path: Path) -> None:
    spec = SynthSpec(n=8, seed=2, test_fraction=0.25, size=64)
    generate(tmp_path, spec)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    pairs = {}
    for row in rows:
        pairs.setdefault(row["scene"], []).append(row)
    first, second = next(group for group in pairs.values() if len(group) == 2)
    assert OPPOSITE[first["motion"]] == second["motion"]
    clip = [Clip(0, 0.0, spec.duration_s)]
    rule = SamplingRule(8)
    a = next(iter(read_frames(tmp_path / first["video"], clip, rule))).frames
    b = next(iter(read_frames(tmp_path / second["video"], clip, rule))).frames
    diff = [np.abs(x.astype(int) - y.astype(int)).mean() for x, y in zip(a, b[::-1], strict=True)]
    moved = np.abs(a[0].astype(int) - a[-1].astype(int)).mean()
    assert max(diff) < 2.0 < moved  # same pictures up to H.264 noise; the clip itself changes


def test_captions_name_the_attributes_and_test_captions_are_canonical(tmp_path: Path) -> None:
    generate(tmp_path, SMALL)
    for split in ("train", "test"):
        for line in (tmp_path / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert row["colour"] in row["caption"]
            assert row["shape"] in row["caption"]
            assert row["label"] == Combo(row["colour"], row["shape"], row["motion"]).caption()
            if split == "test":
                assert row["caption"] == row["label"]
    assert Combo("orange", "circle", "left").caption() == "an orange circle moves to the left"


def test_render_draws_the_subject_in_its_colour() -> None:
    spec = SynthSpec(n=2, size=64)
    frames = scene_frames(spec, plan(spec)[0])
    assert frames.shape == (spec.frames, 64, 64, 3)
    assert frames.dtype == np.uint8
    colour = np.asarray(COLOURS[plan(spec)[0].combo.colour])
    closest = np.abs(frames[0].reshape(-1, 3).astype(int) - colour).sum(axis=1).min()
    assert closest < 40


def test_bad_specs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="n must be"):
        SynthSpec(n=1)
    with pytest.raises(ConfigError, match="test_fraction"):
        SynthSpec(n=10, test_fraction=1.0)
    with pytest.raises(ConfigError, match="size"):
        SynthSpec(n=10, size=33)


def test_worker_processes_write_the_same_files(tmp_path: Path) -> None:
    generate(tmp_path / "one", SMALL)
    generate(tmp_path / "two", SMALL, workers=2)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
