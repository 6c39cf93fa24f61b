"""How to reach a Milvus collection and how its vector index is built: parsed once, at the edge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from vidsearch.errors import ConfigError

SCHEME = "milvus://"
INDEX_TYPES = ("FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "DISKANN", "GPU_CAGRA")
"""Index types vidsearch knows how to tune; FLAT is exact (brute force)."""

DEFAULT_BUILD_PARAMS: Mapping[str, Mapping[str, int | str]] = {
    "FLAT": {},
    "HNSW": {"M": 32, "efConstruction": 200},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "DISKANN": {},
    "GPU_CAGRA": {"intermediate_graph_degree": 64, "graph_degree": 32},
}
DEFAULT_SEARCH_PARAMS: Mapping[str, Mapping[str, int | str]] = {
    "FLAT": {},
    "HNSW": {"ef": 128},
    "IVF_FLAT": {"nprobe": 32},
    "IVF_SQ8": {"nprobe": 32},
    "DISKANN": {"search_list": 100},
    "GPU_CAGRA": {"itopk_size": 128},
}
BUILD_KEYS: Mapping[str, frozenset[str]] = {
    "FLAT": frozenset(),
    "HNSW": frozenset({"M", "efConstruction"}),
    "IVF_FLAT": frozenset({"nlist"}),
    "IVF_SQ8": frozenset({"nlist"}),
    "DISKANN": frozenset(),  # its build budget is the cluster's configuration, not the index's
    "GPU_CAGRA": frozenset(
        {"intermediate_graph_degree", "graph_degree", "build_algo", "cache_dataset_on_device"}
    ),
}
SEARCH_KEYS: Mapping[str, frozenset[str]] = {
    "FLAT": frozenset(),
    "HNSW": frozenset({"ef"}),
    "IVF_FLAT": frozenset({"nprobe"}),
    "IVF_SQ8": frozenset({"nprobe"}),
    "DISKANN": frozenset({"search_list"}),
    "GPU_CAGRA": frozenset({"itopk_size", "search_width", "min_iterations", "max_iterations", "team_size"}),
}
"""The parameters each index type takes. Milvus stores a key it does not know and ignores it (2.3.5 kept
`nlists` beside the default `nlist`), so a misspelt one is refused here instead."""
TEXT_VALUED_KEYS = frozenset({"build_algo", "cache_dataset_on_device"})
"""Every other parameter is a whole number; Milvus checks its range."""
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")  # of a collection or a database
ADDRESS_FORM = "milvus://HOST:PORT/[DATABASE/]COLLECTION"


@dataclass(frozen=True)
class MilvusIndexSpec:
    """The vector index of a collection: its type, build parameters, default search parameters.

    Metric is always inner product (IP), on the L2-normalised vectors the index stores.
    """

    index_type: str = "HNSW"
    build_params: Mapping[str, int | str] = field(default_factory=dict)
    search_params: Mapping[str, int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ConfigError(f"Milvus index type {self.index_type!r}: use one of {', '.join(INDEX_TYPES)}")
        _check_params(self.index_type, "build", self.build_params, BUILD_KEYS[self.index_type])
        _check_params(self.index_type, "search", self.search_params, SEARCH_KEYS[self.index_type])

    @property
    def build(self) -> dict[str, int | str]:
        return {**DEFAULT_BUILD_PARAMS[self.index_type], **self.build_params}

    @property
    def search(self) -> dict[str, int | str]:
        return {**DEFAULT_SEARCH_PARAMS[self.index_type], **self.search_params}

    def resolved(self) -> MilvusIndexSpec:
        """The same index with every default written out, as a collection records it."""
        return MilvusIndexSpec(self.index_type, self.build, self.search)


def _check_params(index_type: str, kind: str, params: Mapping[str, int | str], known: frozenset[str]) -> None:
    for key, value in params.items():
        if key not in known:
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            raise ConfigError(f"{index_type} has no {kind} parameter {key!r}: {takes}")
        if key in TEXT_VALUED_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{index_type} {kind} parameter {key} is text, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{index_type} {kind} parameter {key} is a whole number, got {value!r}")


@dataclass(frozen=True)
class MilvusTarget:
    """A Milvus server and one collection on it, in its database `db_name` (empty: Milvus's "default").

    `uri` is what pymilvus connects to (http://host:port, or https:// for TLS); `token` is
    "user:password" or an API key (empty: no authentication). `timeout_s` bounds every call, so an
    unreachable server is reported (IndexUnavailableError) instead of waited for.
    `consistency` "Session" gives read-your-writes to this process: a search sees every write this
    client made before it, without paying "Strong"'s wait for every other writer.
    `concurrent_searches` is how many search calls a server keeps in flight to Milvus (see
    `ClipIndex.concurrent_searches`); one at a time leaves the query nodes idle during every round trip.
    """

    uri: str
    collection: str
    token: str = ""
    db_name: str = ""
    timeout_s: float = 10.0
    consistency: str = "Session"
    concurrent_searches: int = 4

    def __post_init__(self) -> None:
        for what, name in (("collection", self.collection), ("database", self.db_name or "default")):
            if not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{what} name {name!r}: letters, digits and underscores, not starting with a digit"
                )
        if self.consistency not in CONSISTENCY_LEVELS:
            raise ConfigError(f"consistency {self.consistency!r}: use one of {', '.join(CONSISTENCY_LEVELS)}")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.concurrent_searches < 1:
            raise ConfigError(f"concurrent_searches must be at least 1, got {self.concurrent_searches}")

    @classmethod
    def parse(cls, text: str, **options: object) -> MilvusTarget:
        """`milvus://HOST:PORT/[DATABASE/]COLLECTION` (or `milvus+https://…` for TLS) → a target."""
        secure = text.startswith("milvus+https://")
        if not (text.startswith(SCHEME) or secure):
            raise ConfigError(f"{text!r} is not a Milvus index address: use {ADDRESS_FORM}")
        parts = urlsplit(text)
        names = parts.path.strip("/").split("/")
        if not parts.hostname or not names[-1] or len(names) > 2 or parts.query or parts.fragment:
            raise ConfigError(f"{text!r}: expected {ADDRESS_FORM}")
        db_name, collection = names if len(names) == 2 else ("", names[0])
        try:
            port = parts.port or 19530
        except ValueError:
            raise ConfigError(f"{text!r}: the port is not a number in [0, 65535]") from None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        uri = f"{'https' if secure else 'http'}://{host}:{port}"
        return cls(uri=uri, collection=collection, db_name=db_name, **options)  # type: ignore[arg-type]

    @property
    def address(self) -> str:
        """The target as `milvus://` text (no credentials), for logs and stats."""
        scheme = "milvus+https" if self.uri.startswith("https://") else "milvus"
        database = f"{self.db_name}/" if self.db_name else ""
        return f"{scheme}://{self.uri.split('://', 1)[1]}/{database}{self.collection}"


def is_milvus_address(text: str) -> bool:
    return text.startswith((SCHEME, "milvus+https://"))
