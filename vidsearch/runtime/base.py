"""The runtime interface the server and jobs use, and the backend interface runtimes are built on.

`Runtime` is what callers see: `embed_text`, `embed_video`, `classify`, and the facts of the models it
serves (`RuntimeFacts`: names, versions, checksum, widths, batch limits, preprocessing), never the
repository's layout or tensor names. There is one implementation, `ModelRuntime`, which does
everything that does not depend on where the models run (tokenizing, the text cache, dynamic
batching, splitting into the models' batch limit, checks); it runs the models through a `Backend`:
`EmbeddedBackend` (ONNX Runtime in this process), `TorchBackend` (PyTorch in this process, CUDA graphs
on a GPU) or `TritonBackend` (a Triton server over gRPC).
Adding a backend means writing `infer`, never another copy of the serving logic.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from vidsearch.runtime.cache import CacheStats
from vidsearch.runtime.facts import RuntimeChoice, RuntimeFacts
from vidsearch.runtime.repository import ModelSpec

Clips = NDArray[np.float32] | Iterable[NDArray[np.float32]]
"""Preprocessed clips: one array [n, ...], or clip tensors one by one (decoded as they are consumed)."""


class Backend(Protocol):
    """Runs one exported model on a batch of inputs."""

    kind: str  # "embedded", "torch" or "triton"
    decodes_video: bool  # whether it can run a model that takes encoded video (a server-side ensemble)

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
    def facts(self) -> RuntimeFacts: ...

    @property
    def choice(self) -> RuntimeChoice:
        """Which runtime, device and dtype serve the models, and why (`--runtime auto` decides at start)."""

    def embed_text(self, texts: Sequence[str], timeout_s: float | None = None) -> NDArray[np.float32]:
        """L2-normalised embeddings [len(texts), dim] of the texts (ViCLIP text tower); the texts of
        concurrent callers share model runs (the runtime's dynamic batcher)."""

    def embed_text_batch(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The same for a batch its caller has formed (at most `facts.text_batch` texts make one model
        run): run at once, in the calling thread, past the runtime's batcher — for a caller that is
        itself the batching layer (Search), so that a query is batched in one place only."""

    def embed_video(self, clips: Clips, timeout_s: float | None = None) -> NDArray[np.float32]:
        """L2-normalised embeddings [n, dim] of preprocessed clips (`facts.vision.preprocess`), run in
        batches of the model's limit as the clips arrive."""

    @property
    def decodes_on_server(self) -> bool:
        """Whether `embed_encoded` sends video to the server to decode (the Triton runtime with the
        `viclip_video_embed` ensemble); otherwise callers decode and call `embed_video`."""

    def embed_encoded(self, video: bytes, frames: Sequence[NDArray[np.int32]], timeout_s: float | None = None,
                      name: str = "<bytes>") -> NDArray[np.float32]:
        """L2-normalised embeddings [len(frames), dim] of clips of one encoded file, each given by its
        frame numbers (`vidsearch.video.dali.clip_frame_numbers`), decoded and preprocessed on the
        server; a video it cannot decode raises VideoDecodeError naming `name`."""

    def classify(self, clips: Clips, timeout_s: float | None = None) -> NDArray[np.float32]:
        """Class scores before softmax [n, classes] of clips preprocessed for the classifier."""

    def ready(self) -> bool: ...

    def cache_stats(self) -> CacheStats: ...

    def close(self) -> None: ...
