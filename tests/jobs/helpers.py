"""Running jobs in the tests and reading their output back."""

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow.parquet as pq

from vidsearch.jobs import EmbedJob
from vidsearch.runtime import RuntimeConfig
from vidsearch.video import ClipSpec

from .conftest import CLIP_LEN

T = TypeVar("T")


def job(input: Path | str, out: Path, repository: Path, **changes: Any) -> EmbedJob:
    """A job over the tiny models: 2-scene clips, one ONNX Runtime thread, small shards, no bar."""
    values: dict[str, Any] = {
        "input": str(input), "out": out, "runtime": RuntimeConfig(model_repository=repository, threads=1),
        "clips": ClipSpec(CLIP_LEN), "shard_clips": 4, "progress": False,
    }  # fmt: skip
    return EmbedJob(**{**values, **changes})


@contextlib.contextmanager
def local_ray() -> Iterator[None]:
    """A Ray cluster on this machine (2 CPUs) while the block runs.

    Its GCS server gets 60 s to report its port, and a start that fails gets one more try: in CI runs on
    a busy 2-core machine, where a start normally takes 2 s, one start left no GCS port within Ray's
    default 30 s (RuntimeError) and another's raylet did not register within Ray's fixed 30 s (a bare
    `Exception`, "The current node timed out during startup").
    """
    import ray

    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "60")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception:  # Ray's startup timeouts come as RuntimeError or as a bare Exception
        ray.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


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


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits to be reaped


def wait_for(condition: Callable[[], T], seconds: float, what: str) -> T:
    """The first true value of `condition` (kept: asking again may already give another answer)."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return value


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
