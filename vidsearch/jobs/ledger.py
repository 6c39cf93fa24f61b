"""The output directory of a job and its ledger: what is committed, exactly once.

Layout of OUT::

    job.json            the job's identity (input, clip rule, model, checksum, preprocessing, dtype)
    ledger.jsonl        one line per commit: its shard, the video ids it settles, their failures
    part-000000.parquet the embedding shards (`vidsearch.index.parquet` format)
    failures.jsonl      every failed video (uri, error type, message), rewritten from the ledger
    summary.json        written when a run finishes
    .lock               held (flock) while a job runs, so two jobs never write one directory

A commit writes its shard atomically (temporary file, fsync, rename; `write_shard`), fsyncs the
directory, then appends its ledger line and fsyncs it: the line is the commit point. A run that starts
drops what no line names (a shard renamed just before a kill, temporary files) and a torn last line,
then skips every video a line settles. A video's clips all go in one shard, so each clip is in the
output exactly once whenever the process was killed.
"""

import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vidsearch.errors import JobError, JobMismatchError
from vidsearch.formats.atomic import is_leftover, write_atomic
from vidsearch.index.parquet import DIGEST_SUFFIX, ShardRows, shard_table, write_shard
from vidsearch.jobs.decoding import Failure

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
LEDGER = "ledger.jsonl"
FAILURES = "failures.jsonl"
SUMMARY = "summary.json"
LOCK = ".lock"
_OWN = (JOB_FILE, LEDGER, FAILURES, SUMMARY, LOCK)


def shard_name(sequence: int) -> str:
    return f"part-{sequence:06d}.parquet"


def _shard_named(path: Path) -> str | None:
    """The shard a file belongs to (itself, or the shard whose digest sidecar it is), or None."""
    name = path.name.removesuffix(DIGEST_SUFFIX)
    return name if _is_shard(path.with_name(name)) else None


def _is_shard(path: Path) -> bool:
    return path.name.startswith("part-") and path.name.endswith(".parquet")


class Ledger:
    """An output directory opened for one run: locked, checked against the job, recovered."""

    def __init__(self, out: Path, identity: Mapping[str, Any], overwrite: bool = False) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self._lock = open(out / LOCK, "a+b")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise JobError(f"{out}: another job is writing into this directory") from None
        try:
            self._prepare(dict(identity), overwrite)
            self.records = self._recover()
        except BaseException:
            self.close()
            raise
        self.settled = {video for record in self.records for video in record["videos"]}

    def _prepare(self, identity: dict[str, Any], overwrite: bool) -> None:
        job_file = self.out / JOB_FILE
        if overwrite:
            self._clear()
        elif job_file.is_file():
            recorded = json.loads(job_file.read_text())
            if recorded != identity:
                changed = sorted(k for k in identity.keys() | recorded.keys()
                                 if identity.get(k) != recorded.get(k))
                raise JobMismatchError(
                    f"{self.out} holds a job with other {', '.join(changed)} "
                    f"(was {[recorded.get(k) for k in changed]}, now {[identity.get(k) for k in changed]}); "
                    "use another --out, or --overwrite to start it again")
        elif any(p.name not in _OWN for p in self.out.iterdir()):
            raise JobError(f"{self.out} is not empty and holds no vidsearch embed job: choose an empty --out")
        if not job_file.is_file():
            write_atomic(job_file, json.dumps(identity, indent=2, sort_keys=True) + "\n")

    def _clear(self) -> None:
        for path in self.out.iterdir():
            ours = path.name in _OWN[:-1] or _shard_named(path) is not None or path.name.startswith(".part-")
            if ours and path.is_file():
                path.unlink()

    def _recover(self) -> list[dict[str, Any]]:
        """The committed records; a torn last line is cut off, and files no record names are removed."""
        ledger = self.out / LEDGER
        records: list[dict[str, Any]] = []
        good = 0
        if ledger.is_file():
            data = ledger.read_bytes()
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
                good += len(line)
            if good < len(data):
                log.warning("%s: dropping a torn last record (%d bytes)", ledger, len(data) - good)
                with open(ledger, "r+b") as handle:
                    handle.truncate(good)
                    os.fsync(handle.fileno())
        committed = {record["shard"] for record in records if record["shard"]}
        for path in self.out.iterdir():
            shard = _shard_named(path)
            stray = (shard is not None and shard not in committed) or is_leftover(path)
            if stray:
                log.info("%s: removing %s, which no commit names", self.out, path.name)
                path.unlink()
        missing = sorted(name for name in committed if not (self.out / name).is_file())
        if missing:
            raise JobError(f"{self.out}: committed shards are missing: {missing[:5]}")
        return records

    def commit(self, rows: ShardRows | None, videos: list[str], failures: list[Failure], *,
               float16: bool, model_checksum: str) -> None:
        """Settle `videos` (and their failures) at once, with their clips in one new shard if any."""
        name = shard_name(len(self.records)) if rows is not None and len(rows) else None
        if name is not None and rows is not None:
            write_shard(self.out / name, shard_table(rows, float16=float16, model_checksum=model_checksum))
        record = {"shard": name, "clips": len(rows) if rows is not None else 0, "videos": videos,
                  "failures": [asdict(f) for f in failures]}
        with open(self.out / LEDGER, "ab") as handle:
            handle.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(record)
        self.settled.update(videos)

    def failures(self) -> Iterator[Failure]:
        for record in self.records:
            for failure in record["failures"]:
                yield Failure(**failure)

    @property
    def clips(self) -> int:
        return sum(int(record["clips"]) for record in self.records)

    def write_failures(self) -> int:
        """Rewrite the failures file from the ledger; the number of lines."""
        lines = [json.dumps(asdict(f), ensure_ascii=False) + "\n" for f in self.failures()]
        write_atomic(self.out / FAILURES, "".join(lines))
        return len(lines)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
