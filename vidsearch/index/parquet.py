"""Writing and reading Parquet embedding shards (their schema: `vidsearch.formats.shard`).

Batch jobs write them, `index build` reads them. Readers go row group by row group, so memory stays
bounded however large the shards are.

Damage is caught twice: each shard has a `<name>.parquet.sha256` sidecar (the `sha256sum` format),
checked by `scan_shards` before anything is built, and every data page carries a CRC that the reader
checks (shards from other tools may lack the sidecar; they are read with the page CRCs only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vidsearch.errors import IndexFormatError
from vidsearch.formats.atomic import atomic_path, write_atomic
from vidsearch.formats.checksum import sha256_file
from vidsearch.formats.shard import EMBEDDING, PREPROCESS, check_schema, shard_schema
from vidsearch.index.base import ClipRecord

_ROW_GROUP_ROWS = 16_384
DIGEST_SUFFIX = ".sha256"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardRows:
    """A batch of shard rows, columnar; vectors are float32 whatever the shard stores."""

    clip_ids: Sequence[str]
    video_ids: Sequence[str]
    uris: Sequence[str]
    start_s: np.ndarray
    end_s: np.ndarray
    models: Sequence[str]
    vectors: np.ndarray
    preprocess: Sequence[str | None] | None = None

    def __len__(self) -> int:
        return len(self.clip_ids)

    def records(self, model_version: str = "") -> list[ClipRecord]:
        """Clip records; the preprocessing hash, where present, goes into the attributes."""
        hashes = self.preprocess if self.preprocess is not None else [None] * len(self)
        return [
            ClipRecord(
                clip_id=clip_id,
                video_id=video_id,
                uri=uri,
                start_s=float(start),
                end_s=float(end),
                model=model,
                model_version=model_version,
                attributes={"preprocess": digest} if digest else {},
            )
            for clip_id, video_id, uri, start, end, model, digest in zip(
                self.clip_ids,
                self.video_ids,
                self.uris,
                self.start_s,
                self.end_s,
                self.models,
                hashes,
                strict=True,
            )
        ]


def shard_table(rows: ShardRows, *, float16: bool = False, model_checksum: str = "") -> pa.Table:
    """An Arrow table in the shard schema, for writers (the batch job)."""
    dim = rows.vectors.shape[1]
    schema = shard_schema(dim, float16=float16, model_checksum=model_checksum)
    values = np.ascontiguousarray(rows.vectors, dtype=np.float16 if float16 else np.float32).reshape(-1)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(values), dim)
    preprocess = rows.preprocess if rows.preprocess is not None else [None] * len(rows)
    columns = [
        pa.array(rows.clip_ids, pa.string()),
        pa.array(rows.video_ids, pa.string()),
        pa.array(rows.uris, pa.string()),
        pa.array(rows.start_s, pa.float64()),
        pa.array(rows.end_s, pa.float64()),
        embedding.cast(schema.field(EMBEDDING).type),
        pa.array(rows.models, pa.string()),
        pa.array(preprocess, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_shard(path: Path, table: pa.Table) -> None:
    """Write a shard atomically (temporary file, fsync, rename), in bounded row groups, with page CRCs,
    then its digest sidecar."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=_ROW_GROUP_ROWS, write_page_checksum=True)
    write_atomic(_digest_path(path), f"{sha256_file(path)}  {path.name}\n")


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def verify_shard(path: Path) -> bool:
    """Check a shard against its digest sidecar (IndexFormatError if it differs); False if it has none."""
    sidecar = _digest_path(path)
    if not sidecar.exists():
        return False
    recorded = sidecar.read_text(errors="replace").split(maxsplit=1)[0] if sidecar.stat().st_size else ""
    if sha256_file(path) != recorded:
        raise IndexFormatError(f"{path}: damaged (its SHA-256 differs from {sidecar.name})")
    return True


@dataclass(frozen=True)
class ShardSet:
    """The shards of a directory, checked from their footers only."""

    files: tuple[Path, ...]
    rows: int
    dim: int
    model_checksum: str


def scan_shards(directory: Path) -> ShardSet:
    """Every `*.parquet` file under `directory`, in name order, with consistent dimension and checksum."""
    if not directory.is_dir():
        raise IndexFormatError(f"{directory}: no such directory of embedding shards")
    files = tuple(sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith(".")))
    if not files:
        raise IndexFormatError(f"{directory}: no .parquet embedding shards in it")
    rows, dims, checksums = 0, set(), set()
    unverified = [path.name for path in files if not verify_shard(path)]
    if unverified:
        log.warning("%d shards have no %s sidecar (only their page CRCs are checked): %s",
                    len(unverified), DIGEST_SUFFIX, ", ".join(unverified[:5]))
    for path in files:
        try:
            meta = pq.read_metadata(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise IndexFormatError(f"{path}: unreadable Parquet file ({exc})") from exc
        dim, checksum = check_schema(path, meta.schema.to_arrow_schema())
        rows += meta.num_rows
        dims.add(dim)
        checksums.add(checksum)
    if len(dims) > 1 or len(checksums) > 1:
        raise IndexFormatError(
            f"{directory}: shards disagree on dimension {sorted(dims)} or model checksum {sorted(checksums)}"
        )
    return ShardSet(files=files, rows=rows, dim=dims.pop(), model_checksum=checksums.pop())


def _vectors(column: pa.ChunkedArray | pa.Array, dim: int, path: Path) -> np.ndarray:
    if column.null_count:
        raise IndexFormatError(f"{path}: {column.null_count} rows have no embedding")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) for chunk in chunks]
    merged = np.concatenate(parts) if parts else np.empty((0, dim))
    return merged.astype(np.float32, copy=False)


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IndexFormatError(f"{path}: unreadable Parquet file ({exc})") from exc


def _batches(path: Path, batch_rows: int) -> Iterator[tuple[pa.RecordBatch, bool]]:
    """A shard's record batches (and whether it has the preprocess column); damage is IndexFormatError."""
    parquet = _open(path)
    has_preprocess = PREPROCESS in parquet.schema_arrow.names
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield batch, has_preprocess
    except (pa.ArrowInvalid, OSError) as exc:
        raise IndexFormatError(f"{path}: damaged Parquet data ({exc})") from exc


def iter_rows(shards: ShardSet, batch_rows: int) -> Iterator[tuple[Path, ShardRows]]:
    """Batches of at most `batch_rows` rows, file by file, row group by row group."""
    for path in shards.files:
        for batch, has_preprocess in _batches(path, batch_rows):
            yield (
                path,
                ShardRows(
                    clip_ids=batch.column("clip_id").to_pylist(),
                    video_ids=batch.column("video_id").to_pylist(),
                    uris=batch.column("uri").to_pylist(),
                    start_s=batch.column("start_s").to_numpy(zero_copy_only=False),
                    end_s=batch.column("end_s").to_numpy(zero_copy_only=False),
                    models=batch.column("model").to_pylist(),
                    vectors=_vectors(batch.column(EMBEDDING), shards.dim, path),
                    preprocess=batch.column(PREPROCESS).to_pylist() if has_preprocess else None,
                ),
            )


def read_sample(shards: ShardSet, size: int, seed: int) -> np.ndarray:
    """`size` embeddings drawn uniformly without replacement, reading only the row groups they lie in."""
    size = min(size, shards.rows)
    chosen = np.sort(np.random.default_rng(seed).choice(shards.rows, size=size, replace=False))
    out = np.empty((size, shards.dim), dtype=np.float32)
    filled, file_start = 0, 0
    for path in shards.files:
        parquet = _open(path)
        group_start = file_start
        for group in range(parquet.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            lo, hi = np.searchsorted(chosen, [group_start, group_start + group_rows])
            if hi > lo:
                table = parquet.read_row_group(group, columns=[EMBEDDING])
                vectors = _vectors(table.column(EMBEDDING), shards.dim, path)
                out[filled : filled + hi - lo] = vectors[chosen[lo:hi] - group_start]
                filled += int(hi - lo)
            group_start += group_rows
        file_start = group_start
    return out
