"""Opening the runtime by configuration: the repository read, the backend chosen (`choice`) and started."""

import logging

from vidsearch.runtime.choice import open_backend
from vidsearch.runtime.config import RuntimeConfig
from vidsearch.runtime.model_runtime import BatchObserver, ModelRuntime
from vidsearch.runtime.repository import RepositoryModels, read_repository

log = logging.getLogger(__name__)


def open_runtime(config: RuntimeConfig, observer: BatchObserver | None = None,
                 models: RepositoryModels | None = None) -> ModelRuntime:
    """Start the configured backend over the repository (ready to answer on return); `models` is the
    repository read already (`read_repository(config)`), for a caller that needed its facts first."""
    models = models if models is not None else read_repository(config)
    backend, choice = open_backend(models, config)
    log.info("runtime: %s", choice.describe())
    return ModelRuntime(models, backend, config, observer, choice)
