"""The Parquet embedding shard: what batch jobs write and `vidsearch index build` reads.

Columns (one row per clip):

    clip_id string, video_id string, uri string, start_s float64, end_s float64,
    embedding fixed_size_list<float32 or float16>[dim], model string, preprocess string (optional)

File key/value metadata: `vidsearch.format` = "clip-embeddings/1" and `vidsearch.model_checksum`
(the checksum of the embedding model's weights; may be empty). `vidsearch.index.parquet` writes and
reads shards by this definition.
"""

from pathlib import Path

import pyarrow as pa

from vidsearch.errors import IndexFormatError

FORMAT = "clip-embeddings/1"
META_FORMAT = b"vidsearch.format"
META_MODEL_CHECKSUM = b"vidsearch.model_checksum"
EMBEDDING = "embedding"
PREPROCESS = "preprocess"
STRING_COLUMNS = ("clip_id", "video_id", "uri", "model")
FLOAT_COLUMNS = ("start_s", "end_s")


def shard_schema(dim: int, *, float16: bool = False, model_checksum: str = "") -> pa.Schema:
    """The schema of a shard of `dim`-d embeddings (the optional preprocess column included)."""
    value = pa.float16() if float16 else pa.float32()
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field(EMBEDDING, pa.list_(pa.field("item", value, nullable=False), dim), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field(PREPROCESS, pa.string()),
    ]
    metadata = {META_FORMAT: FORMAT.encode(), META_MODEL_CHECKSUM: model_checksum.encode()}
    return pa.schema(fields, metadata=metadata)


def check_schema(path: Path, schema: pa.Schema) -> tuple[int, str]:
    """The embedding dimension and model checksum of a shard whose schema is right; IndexFormatError if not.

    Large strings and missing metadata are accepted, so a shard written by another tool with the same
    columns reads too.
    """
    names = set(schema.names)
    missing = [c for c in (*STRING_COLUMNS, *FLOAT_COLUMNS, EMBEDDING) if c not in names]
    if missing:
        raise IndexFormatError(f"{path}: not an embedding shard, columns missing: {missing}")
    for column in STRING_COLUMNS:
        if not (
            pa.types.is_string(schema.field(column).type)
            or pa.types.is_large_string(schema.field(column).type)
        ):
            raise IndexFormatError(f"{path}: column {column} is {schema.field(column).type}, expected string")
    for column in FLOAT_COLUMNS:
        if not pa.types.is_float64(schema.field(column).type):
            raise IndexFormatError(
                f"{path}: column {column} is {schema.field(column).type}, expected float64"
            )
    kind = schema.field(EMBEDDING).type
    if not pa.types.is_fixed_size_list(kind) or kind.value_type not in (pa.float32(), pa.float16()):
        raise IndexFormatError(
            f"{path}: column embedding is {kind}, expected fixed_size_list<float32|float16>"
        )
    metadata = schema.metadata or {}
    return int(kind.list_size), metadata.get(META_MODEL_CHECKSUM, b"").decode()
