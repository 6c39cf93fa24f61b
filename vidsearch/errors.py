"""The one exception hierarchy of vidsearch.

Every error a user can cause derives from `VidsearchError`, so callers (the CLI, the gRPC servicer,
batch jobs) can tell a bad input from a bug and report it with the message it carries.

The `vidsearch` command turns them into its exit status, the same for every subcommand: `EXIT_OK`
when all went well, `EXIT_ERROR` when a `VidsearchError` stopped it (message on stderr), `EXIT_USAGE`
for arguments it cannot parse (Click's own status), and `EXIT_WITH_FAILURES` when a batch job finished
but some inputs are in its failures file, and `EXIT_NO_GPU` when a GPU was required
(`gpu = "required"`) and no GPU runtime could start.
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_WITH_FAILURES = 3
EXIT_NO_GPU = 4  # `gpu = "required"` and no GPU runtime could start (the message says why)


class VidsearchError(Exception):
    """Base class of every error vidsearch raises on purpose."""


class ConfigError(VidsearchError, ValueError):
    """A configuration or preset is unknown or inconsistent."""


class IndexDeviceError(ConfigError):
    """The index must run on a GPU (index device `gpu`) and cannot: no GPU FAISS, no GPU, or a type
    without a GPU version. The message says which."""


class ModelFormatError(ConfigError):
    """A model repository's `vidsearch.json` is unreadable, of another format, or lacks a field."""


class CheckpointError(VidsearchError, ValueError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class VideoError(VidsearchError, ValueError):
    """A video cannot be probed or decoded."""


class VideoDecodeError(VideoError):
    """One video input cannot be opened, probed or decoded into the frames asked for.

    Carries the input's name (a path, or `<bytes>` for in-memory input) and the reason apart, so a
    batch job can record both per file.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type["VideoDecodeError"], tuple[str, str]]:
        # Worker processes (multiprocessing, Ray) pickle exceptions; the default would call
        # __init__ with the formatted message alone.
        return (type(self), (self.path, self.reason))


class MissingDependencyError(VidsearchError, ImportError):
    """An optional dependency that a feature needs is not installed; the message says what to install."""


class ExportError(VidsearchError):
    """An export cannot be done or was refused: a repository conflict, an ONNX or TensorRT build failure."""


class ParityError(ExportError):
    """An exported model's outputs differ from the reference beyond the bound of its precision."""


class ClipIndexError(VidsearchError):
    """Base class of the errors of the clip index (`vidsearch.index`)."""


class IndexFormatError(ClipIndexError, ValueError):
    """An index directory, its manifest or an embedding shard is missing, damaged or of another format."""


class IndexMismatchError(ClipIndexError, ValueError):
    """Vectors or an index come from another embedding model or dimension than expected."""


class IndexLockedError(ClipIndexError):
    """Another process is changing this index directory: one writer per directory (readers may share)."""


class IndexReadOnlyError(ClipIndexError):
    """A change was asked of an index opened read-only (memory-mapped)."""


class IndexUnavailableError(ClipIndexError):
    """The server holding the index (a Milvus cluster) cannot be reached or is not ready; retry later."""


class InvalidClipError(ClipIndexError, ValueError):
    """A clip record or its vector is malformed."""


class DuplicateClipError(InvalidClipError):
    """A clip id is added twice (use upsert to replace a clip)."""


class InvalidQueryError(ClipIndexError, ValueError):
    """A search request is malformed: vector shape, top_k, filter or tuning values."""


class InvalidPageTokenError(InvalidQueryError):
    """A page token is malformed, tampered with, or was issued for another query."""


class RequestError(VidsearchError, ValueError):
    """A request to the search service is malformed: an empty query, a bad option, an unknown field."""


class NotFoundError(VidsearchError, LookupError):
    """Something a request names does not exist: a file under an allowed root, a video in the index."""


class PathNotAllowedError(VidsearchError, PermissionError):
    """A path input lies outside the configured allowed roots (or path inputs are switched off)."""


class LimitExceededError(VidsearchError):
    """A request exceeds a configured limit (upload size, concurrent requests); retrying later may work."""


class RuntimeUnavailableError(VidsearchError):
    """The inference runtime cannot answer now (a Triton server is down or not ready)."""


class GpuUnavailableError(RuntimeUnavailableError):
    """A GPU runtime cannot start here (no CUDA, a driver mismatch, not enough memory); says why."""


class DeviceMemoryError(VidsearchError):
    """The accelerator ran out of memory on one request; the runtime stays up for the next."""


class DeadlineExceededError(VidsearchError, TimeoutError):
    """A request's deadline passed before its work was done; the work was abandoned."""


class JobError(VidsearchError):
    """A batch job cannot run: no inputs, an output directory in use or unreadable, a worker lost."""


class JobMismatchError(JobError, ValueError):
    """An output directory holds a job of other arguments or another model: resuming would mix the two."""
