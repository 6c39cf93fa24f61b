"""The preprocessing spec as data: presets, serialisation, digest, validation."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vidsearch.errors import ConfigError
from vidsearch.formats.imagenet import IMAGENET_MEAN, IMAGENET_STD
from vidsearch.video import Preprocess, SamplingRule, get_preprocess_preset, list_preprocess_presets


def test_presets_follow_the_official_preprocessing() -> None:
    assert list_preprocess_presets() == ["internvideo2", "viclip", "videomae_v2"]
    viclip = get_preprocess_preset("viclip")
    assert viclip.sampling == SamplingRule(8, "segment_middle")
    assert (viclip.size, viclip.resize, viclip.interpolation, viclip.antialias) == ((224, 224), "direct",
                                                                                   "bilinear", False)
    assert (viclip.mean, viclip.std, viclip.channels) == (IMAGENET_MEAN, IMAGENET_STD, "RGB")
    assert viclip.output_shape == (8, 3, 224, 224)
    videomae = get_preprocess_preset("videomae_v2")
    assert videomae.sampling == SamplingRule(16, "centre_stride", stride_frames=4)
    assert (videomae.resize, videomae.short_side, videomae.layout) == ("short_side_crop", 224, "CTHW")
    assert videomae.output_shape == (3, 16, 224, 224)
    internvideo2 = get_preprocess_preset("internvideo2")  # the official test transform and sampling
    assert internvideo2.sampling == SamplingRule(4, "segment_middle_frame")
    assert (internvideo2.size, internvideo2.resize, internvideo2.interpolation) == ((224, 224), "direct",
                                                                                   "bicubic")
    assert (internvideo2.mean, internvideo2.std) == (IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("name", ["internvideo2", "viclip", "videomae_v2"])
def test_dict_and_json_round_trip(name: str) -> None:
    spec = get_preprocess_preset(name)
    data = spec.to_dict()
    assert Preprocess.from_dict(json.loads(json.dumps(data))) == spec
    assert data["version"] == 1


def test_digest_is_short_stable_and_sensitive() -> None:
    viclip, videomae = get_preprocess_preset("viclip"), get_preprocess_preset("videomae_v2")
    # Golden values: a change here changes the hash stored with every embedding. Bump the spec
    # version instead of editing these lines.
    assert viclip.digest() == "3e27075ed815e108"
    assert videomae.digest() == "f0f26bcfbcd43fc9"
    changed = [
        dataclasses.replace(viclip, interpolation="bicubic"),
        dataclasses.replace(viclip, size=(224, 256)),
        dataclasses.replace(viclip, sampling=SamplingRule(16)),
        dataclasses.replace(viclip, layout="CTHW"),
        dataclasses.replace(viclip, mean=(0.5, 0.5, 0.5)),
    ]
    digests = {viclip.digest(), *(c.digest() for c in changed)}
    assert len(digests) == len(changed) + 1


def test_equal_specs_give_equal_digests_whatever_the_number_types() -> None:
    with_ints = Preprocess(SamplingRule(8), size=(224.0, 224.0), mean=(0, 0, 0), std=(1, 1, 1))  # type: ignore[arg-type]
    with_floats = Preprocess(SamplingRule(8), size=(224, 224), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert with_ints == with_floats
    assert with_ints.digest() == with_floats.digest()


def test_digest_is_the_same_in_another_process() -> None:
    code = ("from vidsearch.video import get_preprocess_preset; "
            "print(get_preprocess_preset('videomae_v2').digest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == get_preprocess_preset("videomae_v2").digest()


def test_reading_a_spec_loads_neither_pyav_nor_torch() -> None:
    code = ("import sys; from vidsearch.video import get_preprocess_preset; get_preprocess_preset('viclip'); "
            "print('av' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_users_preset_file(tmp_path: Path) -> None:
    spec = dataclasses.replace(get_preprocess_preset("viclip"), channels="BGR", size=(256, 256))
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(spec.to_dict()))
    assert get_preprocess_preset(path) == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resize": "stretch"}, "resize must be one of"),
        ({"layout": "THWC"}, "layout must be one of"),
        ({"size": [0, 224]}, "size must be"),
        ({"short_side": 256}, "takes no short_side"),
        ({"std": [0.2, 0.0, 0.2]}, "std > 0"),
        ({"colour": "RGB"}, "unknown keys ['colour']"),
        ({"version": 2}, "version 2 is not supported"),
        ({"sampling": {"frames": 0, "mode": "segment_middle", "stride_frames": None}}, "at least 1"),
        ({"sampling": {"frames": 16, "mode": "centre_stride", "stride_frames": None}}, "stride_frames ≥ 1"),
        ({"sampling": {"frames": 8, "mode": "random"}}, "unknown mode"),
    ],
)
def test_malformed_specs_say_what_is_wrong(change: dict[str, object], message: str) -> None:
    data = {**get_preprocess_preset("viclip").to_dict(), **change}
    with pytest.raises(ConfigError) as excinfo:
        Preprocess.from_dict(data)
    assert message in str(excinfo.value)


def test_short_side_crop_needs_a_short_side_at_least_the_crop() -> None:
    with pytest.raises(ConfigError, match="short_side"):
        Preprocess(SamplingRule(16, "centre_stride", 4), resize="short_side_crop", short_side=200)


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'clip'.*viclip"):
        get_preprocess_preset("clip")
