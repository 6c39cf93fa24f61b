"""The index manifest (`manifest.json` of each index snapshot): one typed, versioned definition.

It says what the snapshot holds (model, dimension, clip count, index type) so that an index built for
another model is refused before its files are read, and the size and SHA-256 of each of its files so
that damaged bytes are found before they are served. `log_applied` is the last change-log segment
folded into the snapshot (see `vidsearch.index.changelog`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidsearch.errors import IndexFormatError, IndexMismatchError

FORMAT = "vidsearch-index"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class FileEntry:
    """A persisted file of a snapshot: its size and content digest."""

    bytes: int
    sha256: str


@dataclass(frozen=True)
class IndexManifest:
    """What a snapshot holds; enough to refuse an index built for another model before reading it."""

    dim: int
    count: int
    factory: str
    model: str
    model_checksum: str
    faiss_version: str
    params: Mapping[str, str | int | float] = field(default_factory=dict)
    metric: str = "inner_product"
    files: Mapping[str, FileEntry] = field(default_factory=dict)
    log_applied: int = 0
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def total_bytes(self) -> int:
        return sum(entry.bytes for entry in self.files.values())

    def to_json(self) -> str:
        payload = asdict(self)
        payload["params"] = dict(self.params)
        payload["files"] = {name: asdict(entry) for name, entry in self.files.items()}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, data: bytes, source: Path) -> IndexManifest:
        """Parse and check a manifest; anything malformed is an IndexFormatError naming `source`."""
        try:
            payload: dict[str, Any] = json.loads(data.decode())
            if not isinstance(payload, dict):
                raise TypeError(f"a JSON object is expected, got {type(payload).__name__}")
            kind, version = payload.get("format"), payload.get("format_version")
            if kind != FORMAT or version != FORMAT_VERSION:
                raise IndexFormatError(
                    f"{source}: index format {kind!r} version {version!r}, this vidsearch reads "
                    f"{FORMAT!r} version {FORMAT_VERSION}; rebuild the index with `vidsearch index build`"
                )
            files = {str(name): FileEntry(**entry) for name, entry in payload.pop("files", {}).items()}
            manifest = cls(**payload, files=files)
        except (ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, IndexFormatError):
                raise
            raise IndexFormatError(f"{source}: unreadable manifest ({exc})") from exc
        if manifest.count < 0 or manifest.dim < 1 or manifest.log_applied < 0:
            raise IndexFormatError(
                f"{source}: impossible values (count {manifest.count}, dim {manifest.dim}, "
                f"log_applied {manifest.log_applied})"
            )
        return manifest

    def check_compatible(
        self, *, dim: int | None, model: str | None, model_checksum: str | None, source: Path
    ) -> None:
        """Refuse an index built for another embedding model or dimension, naming both sides."""
        if dim is not None and dim != self.dim:
            raise IndexMismatchError(f"{source}: index holds {self.dim}-d vectors, expected {dim}-d")
        if model is not None and model != self.model:
            raise IndexMismatchError(
                f"{source}: index was built with embedding model {self.model!r}, expected {model!r}"
            )
        if model_checksum is not None and model_checksum != self.model_checksum:
            raise IndexMismatchError(
                f"{source}: index was built with model checksum {self.model_checksum!r}, "
                f"expected {model_checksum!r}"
            )
