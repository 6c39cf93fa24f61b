"""The server's settings: defaults < a config file (TOML or JSON) < environment (`VIDSEARCH_…`) < flags.

Parsed once, at the edge (`vidsearch serve`), into this typed object; nothing below reads the
environment. Nested sections use `__` in variable names: `VIDSEARCH_RUNTIME__KIND=triton`,
`VIDSEARCH_LIMITS__MAX_CONCURRENT_RPCS=64`; lists are JSON: `VIDSEARCH_ALLOWED_ROOTS='["/data"]'`.

    # server.toml
    port = 50051
    index = "my-index"                 # or, with the device FAISS runs on:
    allowed_roots = ["/data/videos"]   #   [index]  location = "my-index"  device = "auto"
    [runtime]
    model_repository = "model_repository"
    [auth]
    token_file = "/etc/vidsearch/tokens"
    [milvus]                           # only for index = "milvus://HOST:PORT/COLLECTION"
    concurrent_searches = 4
    index_type = "IVF_SQ8"             # of a collection the server creates
    index_params = {nlist = 4096}
"""

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vidsearch.errors import ConfigError
from vidsearch.index.milvus.config import (
    CONSISTENCY_LEVELS,
    INDEX_TYPES,
    MilvusIndexSpec,
    MilvusTarget,
    is_milvus_address,
)
from vidsearch.runtime.config import RuntimeConfig

_MIB = 1 << 20


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsSettings(_Section):
    """Server certificate chain and private key (PEM); both or neither. Neither: plaintext."""

    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> "TlsSettings":
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: give both cert and key, or neither")
        for path in (self.cert, self.key):
            if path is not None and not path.is_file():
                raise ValueError(f"tls: {path} is not a file")
        return self

    def key_pair(self) -> tuple[bytes, bytes] | None:
        """(private key, certificate chain) as PEM bytes, or None without TLS."""
        if self.cert is None or self.key is None:
            return None
        return self.key.read_bytes(), self.cert.read_bytes()


class AuthSettings(_Section):
    """Bearer tokens accepted on every RPC except health checks; none configured: no authentication."""

    tokens: tuple[SecretStr, ...] = ()
    token_file: Path | None = None  # one token per line; blank lines and `#` comments ignored
    # failed authentications are all counted (metric); the log gets at most one line per interval
    failure_log_interval_s: float = Field(default=10.0, ge=0)

    def all_tokens(self) -> tuple[str, ...]:
        tokens = [t.get_secret_value() for t in self.tokens]
        if self.token_file is not None:
            try:
                lines = self.token_file.read_text().splitlines()
            except OSError as err:
                raise ConfigError(f"auth: cannot read token file {self.token_file}: {err.strerror}") from None
            tokens += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        return tuple(tokens)


class LimitSettings(_Section):
    """What one request may ask for, and how many run at once (docs/reliability.md states each one)."""

    max_message_bytes: int = Field(default=32 * _MIB, ge=1024)  # one gRPC message, either direction
    max_upload_bytes: int = Field(default=512 * _MIB, ge=1024)  # a streamed EmbedVideo upload in all
    # video bytes held by all requests at once (uploads and SearchByVideo / Classify bytes); beyond it:
    # RESOURCE_EXHAUSTED, retry later
    max_upload_bytes_in_flight: int = Field(default=1024 * _MIB, ge=1024)
    max_concurrent_rpcs: int = Field(default=16, ge=1)  # beyond it: RESOURCE_EXHAUSTED at once
    max_query_chars: int = Field(default=1000, ge=1)  # a query, text, label or template
    max_name_chars: int = Field(default=1024, ge=1)  # a video id or tag
    max_texts: int = Field(default=256, ge=1)  # per EmbedText / labels × templates per Classify
    max_ingest_items: int = Field(default=256, ge=1)
    min_clip_s: float = Field(default=0.1, gt=0, allow_inf_nan=False)  # shortest clip length and stride
    max_clips_per_request: int = Field(default=10_000, ge=1)  # counted from duration / stride before cutting
    # model input, outputs and bookkeeping one video request may need at once (estimated before decoding)
    max_request_bytes: int = Field(default=1024 * _MIB, ge=1 << 16)
    default_deadline_s: float = Field(default=300.0, gt=0)  # for requests that come without a deadline


class VideoSettings(_Section):
    """How videos are cut into clips (requests may override; a request's deadline bounds its reading)."""

    clip_length_s: float = Field(default=10.0, gt=0)
    clip_stride_s: float | None = Field(default=None, gt=0)


class HttpSettings(_Section):
    """The HTTP/JSON API and the web page (`vidsearch.serving.http`), on `host` beside gRPC."""

    enabled: bool = True  # `vidsearch serve --http-port 0` turns it off
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (read back from the server)
    cors_origins: tuple[str, ...] = ()  # origins other pages may call the API from; none: no CORS


class MilvusSettings(_Section):
    """How the server talks to a Milvus index (`index = "milvus://HOST:PORT/COLLECTION"`); see MilvusTarget.

    The token stays `milvus_token` (VIDSEARCH_MILVUS_TOKEN), the variable `vidsearch index` reads too.
    """

    timeout_s: float = Field(default=MilvusTarget.timeout_s, gt=0)  # every call; past it: UNAVAILABLE
    consistency: Literal[CONSISTENCY_LEVELS] = MilvusTarget.consistency  # type: ignore[valid-type]
    concurrent_searches: int = Field(default=MilvusTarget.concurrent_searches, ge=1)  # batches in flight
    # the vector index of a collection the server creates (see MilvusIndexSpec; none set: HNSW defaults);
    # an existing collection keeps the index it was built with
    index_type: Literal[INDEX_TYPES] | None = None  # type: ignore[valid-type]
    index_params: dict[str, StrictInt | StrictStr] = {}  # build, e.g. {nlist = 4096}
    search_params: dict[str, StrictInt | StrictStr] = {}  # recorded defaults, e.g. {nprobe = 64}

    @model_validator(mode="after")
    def _index_is_valid(self) -> "MilvusSettings":
        self.new_index  # noqa: B018 - MilvusIndexSpec's ConfigError (a ValueError) names a bad key or value
        return self

    @property
    def new_index(self) -> MilvusIndexSpec | None:
        """The index of a collection the server creates, or None where nothing is configured."""
        if self.index_type is None and not self.index_params and not self.search_params:
            return None
        return MilvusIndexSpec(self.index_type or MilvusIndexSpec.index_type, self.index_params,
                               self.search_params)

    def target_options(self) -> dict[str, Any]:
        """What `MilvusTarget` takes of this section: how every call is made."""
        return self.model_dump(include={"timeout_s", "consistency", "concurrent_searches"})


class ServerSettings(BaseSettings):
    """Everything `vidsearch serve` needs; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(env_prefix="VIDSEARCH_", env_nested_delimiter="__", extra="forbid",
                                      frozen=True)

    config_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)  # 0: any free port (read back from the server)
    metrics_port: int | None = Field(default=9464, ge=0, le=65535)  # None: no metrics endpoint
    # /metrics is plain HTTP without authentication: bind it apart (e.g. a private interface); None: `host`
    metrics_host: str | None = None
    index: Path | str = Path("index")  # a directory, or milvus://HOST:PORT/[DATABASE/]COLLECTION (as text)
    # where a FAISS index runs: cpu; gpu (refuses to start without GPU FAISS); auto (GPUs when FAISS sees
    # any). In a file: `[index]` with `location` and `device`. Milvus places its own indexes.
    index_device: Literal["cpu", "gpu", "auto"] = "auto"
    milvus_token: SecretStr | None = None  # Milvus "user:password" or API key (VIDSEARCH_MILVUS_TOKEN)
    milvus: MilvusSettings = MilvusSettings()
    create_index: bool = True  # start with an empty index when `index` does not exist
    persist_changes: bool = True  # every Ingest / DeleteVideo is on disk before it is answered
    # index snapshots above this are served only once their digests, checked in the background, pass
    # (health NOT_SERVING, searches and changes UNAVAILABLE meanwhile); smaller ones are checked on open
    verify_on_open_max_bytes: int = Field(default=1 << 30, ge=0)
    allowed_roots: tuple[Path, ...] = ()  # path inputs are refused unless they lie under one of these
    classifier_labels: Path | None = None  # class names of the VideoMAE V2 classifier, one per line
    workers: int = Field(default=0, ge=0)  # handler threads; 0: max_concurrent_rpcs + 4 (health, spare)
    grace_s: float = Field(default=5.0, ge=0)  # how long running RPCs may finish at shutdown
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    runtime: RuntimeConfig = RuntimeConfig()
    tls: TlsSettings = TlsSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    video: VideoSettings = VideoSettings()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="before")
    @classmethod
    def _index_section(cls, data: Any) -> Any:
        """`[index]` with `location` and `device` is the file form of `index` and `index_device`."""
        if isinstance(data, dict) and isinstance(data.get("index"), dict):
            section = dict(data["index"])
            unknown = set(section) - {"location", "device"}
            if unknown:
                raise ValueError(f"[index]: unknown keys {sorted(unknown)} (use location, device)")
            data = {**data, "index": section.get("location", "index")}
            if "device" in section and "index_device" not in data:  # flags and environment win
                data["index_device"] = section["device"]
        return data

    @field_validator("index", mode="before")
    @classmethod
    def _directory_or_milvus(cls, value: Any) -> Path | str:
        if isinstance(value, str) and is_milvus_address(value):
            MilvusTarget.parse(value)  # ConfigError (a ValueError) names what is wrong with it
            return value
        return Path(value)

    @field_validator("allowed_roots")
    @classmethod
    def _real_directories(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        resolved = []
        for root in roots:
            if not root.is_dir():
                raise ValueError(f"allowed root {root} is not a directory")
            resolved.append(root.resolve(strict=True))
        return tuple(resolved)

    @property
    def index_location(self) -> Path | MilvusTarget:
        """The index directory, or the Milvus collection with its token and `[milvus]` options."""
        if isinstance(self.index, Path):
            return self.index
        token = self.milvus_token.get_secret_value() if self.milvus_token else ""
        return MilvusTarget.parse(self.index, token=token, **self.milvus.target_options())

    @property
    def handler_threads(self) -> int:
        return self.workers or self.limits.max_concurrent_rpcs + 4

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init arguments) over environment over the file named by `config_file`."""
        sources = [init_settings, env_settings]
        config_file = init_settings.init_kwargs.get("config_file") if isinstance(
            init_settings, InitSettingsSource) else None
        if config_file is not None:
            sources.append(_file_source(settings_cls, Path(config_file)))
        return tuple(sources)


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if path.suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    raise ConfigError(f"config file {path}: use .toml or .json")


def load_settings(config_file: Path | None = None, **flags: Any) -> ServerSettings:
    """Settings from the file, the environment and the given flags (None flags are left out, so
    they do not hide the file's or the environment's values). Errors become a `ConfigError`."""
    from pydantic import ValidationError

    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return ServerSettings(config_file=config_file, **given)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                             for e in err.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
