"""The embedded backend: ONNX Runtime in this process, over the exported repository's `model.onnx` files.

The default: no server to run, and the same ONNX files Triton serves (the export checked them against
PyTorch). One session per model, created when the backend opens; `InferenceSession.run` is
thread-safe, so concurrent video requests run side by side while text queries are batched upstream.
"""

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vidsearch.errors import ConfigError, DeadlineExceededError, MissingDependencyError
from vidsearch.runtime.repository import ModelSpec, RepositoryModels

log = logging.getLogger(__name__)

CPU_PROVIDERS = ("CPUExecutionProvider",)


def _terminate(options: Any) -> None:
    options.terminate = True


class EmbeddedBackend:
    """ONNX Runtime sessions for the models of a repository: on the CPU, or on a GPU through the
    CUDA or TensorRT execution provider where that build of ONNX Runtime is installed."""

    kind = "embedded"
    decodes_video = False  # ONNX Runtime runs the graphs only; video is decoded by the caller

    def __init__(self, models: RepositoryModels, threads: int = 0,
                 providers: Sequence[str] = CPU_PROVIDERS) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise MissingDependencyError("the embedded runtime needs onnxruntime: pip install onnxruntime") \
                from err
        self._ort = ort
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
                                                              providers=list(providers))
            log.info("loaded %s v%d into ONNX Runtime (%s)", model.name, model.version, providers[0])

    def infer(self, model: ModelSpec, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
              timeout_s: float | None) -> dict[str, np.ndarray]:
        """Run a batch, stopped where it is once `timeout_s` has passed (DeadlineExceededError): ONNX
        Runtime checks its `terminate` flag between operators, so a request whose deadline passes in
        the middle of a batch does not hold the cores to the batch's end."""
        session = self._sessions[model.name]
        if timeout_s is None:
            return dict(zip(outputs, session.run(list(outputs), dict(inputs)), strict=True))
        options = self._ort.RunOptions()
        timer = threading.Timer(max(timeout_s, 0.0), _terminate, args=(options,))
        timer.daemon = True
        timer.start()
        try:
            results = session.run(list(outputs), dict(inputs), options)
        except Exception as exc:  # ONNX Runtime's own exception types are not importable by name
            if options.terminate:
                raise DeadlineExceededError(f"{model.name}: the deadline passed during a batch") from exc
            raise
        finally:
            timer.cancel()
        return dict(zip(outputs, results, strict=True))

    def ready(self, model: ModelSpec) -> bool:
        return model.name in self._sessions

    def close(self) -> None:
        self._sessions.clear()
