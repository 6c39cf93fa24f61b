"""The collection a `MilvusClipIndex` lives in: its fields, its description, and rows ↔ clip records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidsearch.errors import IndexFormatError, IndexMismatchError, InvalidClipError
from vidsearch.index.base import ClipRecord
from vidsearch.index.milvus.calls import pymilvus_module
from vidsearch.index.milvus.config import MilvusIndexSpec

FORMAT = "vidsearch-clips/1"
VECTOR = "vector"
MAX_ID_LENGTH = 512
MAX_URI_LENGTH = 4096
MAX_NAME_LENGTH = 256
MAX_TAGS = 64
FIELDS = ("clip_id", "video_id", "uri", "start_s", "end_s", "model", "model_version", "tags", "attributes")
"""Every field but the vector: what searches and lookups return."""


@dataclass(frozen=True)
class Described:
    """What the collection's description records (written once, at creation)."""

    dim: int
    model: str
    model_checksum: str
    page_token_key: bytes
    index: MilvusIndexSpec

    def text(self) -> str:
        return json.dumps({
            "format": FORMAT, "dim": self.dim, "model": self.model, "model_checksum": self.model_checksum,
            "page_token_key": self.page_token_key.hex(), "index_type": self.index.index_type,
            "build_params": dict(self.index.build), "search_params": dict(self.index.search),
        }, sort_keys=True)  # fmt: skip

    @classmethod
    def parse(cls, text: str, where: str) -> Described:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            spec = MilvusIndexSpec(data["index_type"], data["build_params"], data["search_params"])
            return cls(int(data["dim"]), str(data["model"]), str(data["model_checksum"]),
                       bytes.fromhex(data["page_token_key"]), spec)  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise IndexFormatError(f"{where} is not a vidsearch clip collection ({exc})") from exc


def collection_schema(client: Any, dim: int, description: str) -> Any:
    types = pymilvus_module().DataType
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description=description)
    schema.add_field("clip_id", types.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
    schema.add_field("video_id", types.VARCHAR, is_partition_key=True, max_length=MAX_ID_LENGTH)
    schema.add_field("uri", types.VARCHAR, max_length=MAX_URI_LENGTH)
    schema.add_field("start_s", types.DOUBLE)
    schema.add_field("end_s", types.DOUBLE)
    schema.add_field("model", types.VARCHAR, max_length=MAX_NAME_LENGTH)
    schema.add_field("model_version", types.VARCHAR, max_length=MAX_NAME_LENGTH)
    schema.add_field("tags", types.ARRAY, element_type=types.VARCHAR, max_capacity=MAX_TAGS,
                     max_length=MAX_NAME_LENGTH)  # fmt: skip
    schema.add_field("attributes", types.JSON)
    schema.add_field(VECTOR, types.FLOAT_VECTOR, dim=dim)
    return schema


def check_record(record: ClipRecord, model: str) -> None:
    """What Milvus would refuse with a server error, refused here with a message that names the clip."""
    if record.model != model:
        raise IndexMismatchError(
            f"clip {record.clip_id!r} is a {record.model!r} embedding; this index holds {model!r}"
        )
    limits = (
        ("clip_id", record.clip_id, MAX_ID_LENGTH),
        ("video_id", record.video_id, MAX_ID_LENGTH),
        ("uri", record.uri, MAX_URI_LENGTH),
        ("model_version", record.model_version, MAX_NAME_LENGTH),
    )
    for name, value, limit in limits:
        if len(value.encode()) > limit:
            raise InvalidClipError(f"clip {record.clip_id[:80]!r}: {name} is longer than {limit} bytes")
    if len(record.tags) > MAX_TAGS or any(len(t.encode()) > MAX_NAME_LENGTH for t in record.tags):
        raise InvalidClipError(
            f"clip {record.clip_id!r}: at most {MAX_TAGS} tags of at most {MAX_NAME_LENGTH} bytes each"
        )


def to_row(record: ClipRecord, vector: np.ndarray) -> dict[str, Any]:
    return {
        "clip_id": record.clip_id, "video_id": record.video_id, "uri": record.uri,
        "start_s": record.start_s, "end_s": record.end_s, "model": record.model,
        "model_version": record.model_version, "tags": sorted(record.tags),
        "attributes": dict(record.attributes), VECTOR: vector,
    }  # fmt: skip


def to_record(row: dict[str, Any]) -> ClipRecord:
    return ClipRecord(
        clip_id=row["clip_id"], video_id=row["video_id"], uri=row["uri"], start_s=float(row["start_s"]),
        end_s=float(row["end_s"]), model=row["model"], model_version=row["model_version"],
        tags=frozenset(row["tags"] or ()), attributes=row["attributes"] or {},
    )  # fmt: skip
