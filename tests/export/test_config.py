from pathlib import Path

import pytest

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.export import ExportConfig


def _config(**changes: object) -> ExportConfig:
    values: dict[str, object] = {"model": "viclip-b16", "checkpoint": Path("x.pth"), "out": Path("repo")}
    return ExportConfig(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_batch": 0}, "--max-batch must be at least 1, got 0"),
        ({"version": 0}, "--version must be at least 1"),
        ({"opset": 17}, "--opset must be at least 18"),
        ({"target": "tpu"}, "target must be one of"),
        ({"precision": "bf16"}, "precision must be one of"),
        ({"precision": "fp16"}, "--target cpu serves fp32 only"),
        ({"target": "gpu", "precision": "int8"}, "int8 needs a calibration set"),
        ({"queue_delay_us": -1}, "must not be negative"),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(**changes)


@pytest.mark.parametrize(("max_batch", "opt"), [(1, 1), (2, 1), (4, 2), (16, 8), (24, 8), (64, 32)])
def test_opt_batch_is_the_largest_power_of_two_up_to_half_the_maximum(max_batch: int, opt: int) -> None:
    assert _config(max_batch=max_batch).opt_batch == opt


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing\.pth: no such checkpoint file"):
        _config(checkpoint=tmp_path / "missing.pth").check_inputs_exist()
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"sample video .*clip\.mp4 does not exist"):
        _config(checkpoint=checkpoint, sample_videos=(tmp_path / "clip.mp4",)).check_inputs_exist()
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        _config(checkpoint=checkpoint, out=tmp_path / "file").check_inputs_exist()
