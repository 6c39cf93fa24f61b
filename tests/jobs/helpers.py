"""Running jobs in the tests and reading their output back."""

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from vidsearch.jobs import EmbedJob
from vidsearch.runtime import RuntimeConfig
from vidsearch.video import ClipSpec

from .conftest import CLIP_LEN


def job(input: Path | str, out: Path, repository: Path, **changes: Any) -> EmbedJob:
    """A job over the tiny models: 2-scene clips, one ONNX Runtime thread, small shards, no bar."""
    values: dict[str, Any] = {
        "input": str(input), "out": out, "runtime": RuntimeConfig(model_repository=repository, threads=1),
        "clips": ClipSpec(CLIP_LEN), "shard_clips": 4, "progress": False,
    }  # fmt: skip
    return EmbedJob(**{**values, **changes})


def has_open(pid: int, name: str) -> bool:
    """Whether process `pid` holds a file whose path ends with `name` open (it is at work on it)."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def read_output(out: Path) -> dict[str, np.ndarray]:
    """clip id → embedding (float32) over every shard; a clip id twice fails the test."""
    found: dict[str, np.ndarray] = {}
    for path in sorted(out.glob("part-*.parquet")):
        table = pq.read_table(path)
        vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
        for clip_id, vector in zip(table.column("clip_id").to_pylist(), vectors, strict=True):
            assert clip_id not in found, f"{clip_id} twice"
            found[clip_id] = vector
    return found
