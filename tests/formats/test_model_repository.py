"""The model repository's `vidsearch.json`: one writer, one reader that checks the format."""

import json
from pathlib import Path

import pytest

from vidsearch.errors import ConfigError, ModelFormatError
from vidsearch.formats.model_repository import (
    DESCRIPTION,
    FORMAT,
    TensorInfo,
    read_description,
    write_description,
)
from vidsearch.video.preprocess import Preprocess, get_preprocess_preset

BODY = {
    "identity": {"model_name": "viclip_vision", "target": "cpu"},
    "model_name": "viclip_vision",
    "task": "video_embedding",
    "embedding_dim": 32,
    "inputs": [{"name": "FRAMES", "dtype": "float32", "shape": [-1, 8, 3, 32, 32]}],
    "outputs": [{"name": "EMBEDDING_NORMALIZED", "dtype": "float32", "shape": [-1, 32]}],
    "normalized_output": "EMBEDDING_NORMALIZED",
    "source": {"preset": "tiny-viclip.json", "checkpoint_sha256": "ab" * 32},
    "engine": {"max_batch": 4},
}


def written(tmp_path: Path, spec: Preprocess | None = None) -> Path:
    write_description(tmp_path, 3, BODY, spec)
    return tmp_path / DESCRIPTION


def test_what_is_written_reads_back_with_the_digest_apart(tmp_path: Path) -> None:
    spec = get_preprocess_preset("viclip")
    data = json.loads(written(tmp_path, spec).read_text())
    assert (data["format"], data["version"]) == (FORMAT, 3)
    assert data["preprocess"]["digest"] == spec.digest()
    description = read_description(tmp_path)
    assert description is not None
    assert description.preprocess is not None
    assert "digest" not in description.preprocess
    assert Preprocess.from_dict(dict(description.preprocess)) == spec
    assert description.preprocess_digest == spec.digest()
    assert description.inputs == (TensorInfo("FRAMES", "float32", (-1, 8, 3, 32, 32)),)
    assert (description.embedding_dim, description.max_batch) == (32, 4)
    assert description.preset == "tiny-viclip.json"
    assert description.identity == BODY["identity"]
    assert description.output("EMBEDDING_NORMALIZED").shape == (-1, 32)


def test_a_directory_without_a_description_is_not_ours(tmp_path: Path) -> None:
    assert read_description(tmp_path) is None


@pytest.mark.parametrize(("change", "message"), [
    ({"format": 2}, "format 2; this vidsearch reads format 1"),
    ({"format": None}, "format None"),
    ({"inputs": None}, "not a vidsearch model description"),
])
def test_another_format_or_a_missing_field_is_a_typed_error_naming_the_file(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = written(tmp_path)
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ModelFormatError, match=message) as raised:
        read_description(tmp_path)
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, ConfigError)


def test_a_file_that_is_not_json_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / DESCRIPTION).write_text("{not json")
    with pytest.raises(ModelFormatError, match="unreadable"):
        read_description(tmp_path)
