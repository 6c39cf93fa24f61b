"""The embedded backend: ONNX Runtime in this process, over the exported repository's `model.onnx` files.

The default: no server to run, and the same ONNX files Triton serves (the export checked them against
PyTorch). One session per model, created when the backend opens; `InferenceSession.run` is
thread-safe, so concurrent video requests run side by side while text queries are batched upstream.
"""

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from vidsearch.errors import ConfigError, MissingDependencyError
from vidsearch.runtime.repository import ModelSpec, RepositoryModels

log = logging.getLogger(__name__)


class EmbeddedBackend:
    """ONNX Runtime sessions (CPU) for the models of a repository."""

    kind = "embedded"
    decodes_video = False  # ONNX Runtime runs the graphs only; video is decoded by the caller

    def __init__(self, models: RepositoryModels, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise MissingDependencyError("the embedded runtime needs onnxruntime: pip install onnxruntime") \
                from err
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        # No busy-waiting between runs: in a server the spinning threads would take the cores that
        # gRPC, decoding and the index need (measured: batch-1 text latency halves on a busy 2-core box).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = {}
        for model in (models.text, models.vision, models.classifier):
            if model is None:
                continue
            if not model.onnx_path.is_file():
                raise ConfigError(f"{model.directory} has no model.onnx for the embedded runtime")
            self._sessions[model.name] = ort.InferenceSession(str(model.onnx_path), options,
                                                              providers=["CPUExecutionProvider"])
            log.info("loaded %s v%d into ONNX Runtime", model.name, model.version)

    def infer(self, model: ModelSpec, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
              timeout_s: float | None) -> dict[str, np.ndarray]:
        """Run a batch; the deadline is checked by the caller between batches (a run is not interruptible)."""
        results = self._sessions[model.name].run(list(outputs), dict(inputs))
        return dict(zip(outputs, results, strict=True))

    def ready(self, model: ModelSpec) -> bool:
        return model.name in self._sessions

    def close(self) -> None:
        self._sessions.clear()
