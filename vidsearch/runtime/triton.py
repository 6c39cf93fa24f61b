"""The Triton backend: the same repository served by a Triton Inference Server, called over gRPC.

The server runs the models (Python backend + ONNX Runtime on a CPU machine, TensorRT or ONNX Runtime
on GPUs) and batches requests itself; this backend asks for exactly the version it read from the
repository, so the server cannot answer with another model than the one the index was built with.
One `tritonclient` client per calling thread (the clients are cheap; sharing one is not documented
as safe).
"""

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vidsearch.errors import (
    DeadlineExceededError,
    MissingDependencyError,
    RuntimeUnavailableError,
    VideoDecodeError,
)
from vidsearch.formats.model_repository import DECODE_ERROR_PREFIX
from vidsearch.runtime.repository import ModelSpec, RepositoryModels

log = logging.getLogger(__name__)

_POLL_S = 0.2


def _client_module() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as err:
        raise MissingDependencyError("the triton runtime needs tritonclient[grpc]") from err
    return grpcclient


class TritonBackend:
    """Calls the models of a repository on the Triton server at `url`."""

    kind = "triton"
    decodes_video = True  # it can run the viclip_video_embed ensemble, where the server has it

    def __init__(self, models: RepositoryModels, url: str, timeout_s: float = 60.0) -> None:
        self._grpc = _client_module()
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        self._error = InferenceServerException
        self._dtype = np_to_triton_dtype
        self._url = url
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._wait_ready([m for m in (models.text, models.vision, models.classifier) if m], timeout_s)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._grpc.InferenceServerClient(self._url)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _wait_ready(self, models: list[ModelSpec], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = models
        while True:
            waiting = [m for m in waiting if not self.ready(m)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{m.name} v{m.version}" for m in waiting)
                raise RuntimeUnavailableError(f"Triton at {self._url} did not have {names} ready within "
                                              f"{timeout_s:.0f} s (is it serving the same model repository?)")
            time.sleep(_POLL_S)

    def infer(self, model: ModelSpec, inputs: Mapping[str, np.ndarray], outputs: Sequence[str],
              timeout_s: float | None) -> dict[str, np.ndarray]:
        tensors = []
        for name, array in inputs.items():
            tensor = self._grpc.InferInput(name, list(array.shape), self._dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [self._grpc.InferRequestedOutput(name) for name in outputs]
        timeout = self._timeout_s if timeout_s is None else max(timeout_s, 1e-3)
        try:
            result = self._client().infer(model.name, tensors, model_version=str(model.version),
                                          outputs=requested, client_timeout=timeout)
        except self._error as err:
            message = str(err.message())
            if "DEADLINE_EXCEEDED" in str(err.status()) or "Deadline Exceeded" in message:
                raise DeadlineExceededError(f"Triton {model.name}: the deadline passed") from None
            if DECODE_ERROR_PREFIX in message:  # the server's video_preprocess could not decode the input
                reason = message.split(DECODE_ERROR_PREFIX, 1)[1]
                raise VideoDecodeError("<bytes>", reason) from None
            raise RuntimeUnavailableError(f"Triton {model.name} v{model.version} at {self._url}: "
                                          f"{err.message()}") from None
        return {name: result.as_numpy(name) for name in outputs}

    def ready(self, model: ModelSpec) -> bool:
        try:
            return bool(self._client().is_model_ready(model.name, str(model.version)))
        except self._error:
            return False

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
