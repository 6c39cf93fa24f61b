"""The inference runtimes behind one interface: `embed_text`, `embed_video`, `classify`.

`open_runtime(RuntimeConfig(...))` reads an exported model repository (`vidsearch export`) and runs
it with ONNX Runtime in this process (`kind="embedded"`, the default) or on a Triton server
(`kind="triton"`). The serving layer and batch jobs reach models only through here. Names are imported
on first use, so importing the package loads neither ONNX Runtime nor tritonclient.
"""

from typing import TYPE_CHECKING

from vidsearch.lazy import lazy_exports

_EXPORTS = {
    "Runtime": "base",
    "Backend": "base",
    "ModelFacts": "facts",
    "RuntimeFacts": "facts",
    "RuntimeConfig": "config",
    "ModelRuntime": "model_runtime",
    "open_runtime": "factory",
    "ModelSpec": "repository",
    "RepositoryModels": "repository",
    "read_repository": "repository",
}

__all__ = ["Backend", "ModelFacts", "ModelRuntime", "ModelSpec", "RepositoryModels", "Runtime",
           "RuntimeConfig", "RuntimeFacts", "open_runtime", "read_repository"]

if TYPE_CHECKING:
    from vidsearch.runtime.base import Backend, Runtime
    from vidsearch.runtime.config import RuntimeConfig
    from vidsearch.runtime.factory import open_runtime
    from vidsearch.runtime.facts import ModelFacts, RuntimeFacts
    from vidsearch.runtime.model_runtime import ModelRuntime
    from vidsearch.runtime.repository import ModelSpec, RepositoryModels, read_repository


__getattr__ = lazy_exports(__name__, _EXPORTS)
