"""Selecting the runtime by configuration: the one place that knows both backends."""

from vidsearch.runtime.base import Backend
from vidsearch.runtime.config import RuntimeConfig
from vidsearch.runtime.model_runtime import BatchObserver, ModelRuntime
from vidsearch.runtime.repository import RepositoryModels, read_repository


def open_runtime(config: RuntimeConfig, observer: BatchObserver | None = None,
                 models: RepositoryModels | None = None) -> ModelRuntime:
    """Start the configured backend over the repository (ready to answer on return); `models` is the
    repository read already (`read_repository(config)`), for a caller that needed its facts first."""
    models = models if models is not None else read_repository(config)
    backend: Backend
    if config.kind == "triton":
        from vidsearch.runtime.triton import TritonBackend

        backend = TritonBackend(models, config.triton_url, config.triton_timeout_s)
    else:
        from vidsearch.runtime.embedded import EmbeddedBackend

        backend = EmbeddedBackend(models, config.threads)
    return ModelRuntime(models, backend, config, observer)
