"""The runtime interface the server and jobs use, and the backend interface runtimes are built on.

`Runtime` is what callers see: `embed_text`, `embed_video`, `classify`. There is one implementation,
`ModelRuntime`, which does everything that does not depend on where the models run (tokenizing, the
text cache, dynamic batching, splitting into the models' batch limit, checks); it runs the models
through a `Backend`: `EmbeddedBackend` (ONNX Runtime in this process) or `TritonBackend` (a Triton
server over gRPC). Adding a backend means writing `infer`, never another copy of the serving logic.
"""

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vidsearch.runtime.cache import CacheStats
from vidsearch.runtime.repository import ModelSpec, RepositoryModels


class Backend(Protocol):
    """Runs one exported model on a batch of inputs."""

    kind: str  # "embedded" or "triton"

    def infer(self, model: ModelSpec, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
              timeout_s: float | None) -> dict[str, np.ndarray]:
        """The named outputs for the batch; raises RuntimeUnavailableError or DeadlineExceededError."""

    def ready(self, model: ModelSpec) -> bool: ...

    def close(self) -> None: ...


class Runtime(Protocol):
    """The models behind the service. Every method is safe to call from many threads.

    `timeout_s` is the time the caller still has (its request's deadline); None waits as long as it takes.
    """

    @property
    def kind(self) -> str: ...

    @property
    def models(self) -> RepositoryModels: ...

    @property
    def text_batch(self) -> int:
        """The most text queries one model run takes (0 without a text model)."""

    def embed_text(self, texts: Sequence[str], timeout_s: float | None = None) -> NDArray[np.float32]:
        """L2-normalised embeddings [len(texts), dim] of the texts (ViCLIP text tower)."""

    def embed_video(self, clips: NDArray[np.float32], timeout_s: float | None = None) -> NDArray[np.float32]:
        """L2-normalised embeddings [n, dim] of preprocessed clips (the vision tower's preprocessing)."""

    def classify(self, clips: NDArray[np.float32], timeout_s: float | None = None) -> NDArray[np.float32]:
        """Class scores before softmax [n, classes] of clips preprocessed for the classifier."""

    def ready(self) -> bool: ...

    def cache_stats(self) -> CacheStats: ...

    def close(self) -> None: ...
