"""Export: checkpoint → ONNX (→ TensorRT) → a Triton model repository that a real Triton server loads.

`export_model(ExportConfig(...))` is the whole job (`vidsearch export` on the command line); the
modules are its seams: `graphs` (what is exported), `onnx_export`, `parity`, `tensorrt`,
`triton_config`, `repository`, `video_models` (the models that decode on the server: DALI on the GPU
target, PyAV on the CPU target), `python_backend` (the models that run ONNX Runtime and PyAV inside
Triton on the CPU). The local Triton server the tests start
lives outside the package, in `tools/triton_server.py`.
Names are imported on first use, so importing the package loads neither torch nor ONNX.
"""

from typing import TYPE_CHECKING

from vidsearch.lazy import lazy_exports

_EXPORTS = {
    "ExportConfig": "config",
    "ExportResult": "exporter",
    "ExportedModel": "exporter",
    "export_model": "exporter",
}

__all__ = ["ExportConfig", "ExportResult", "ExportedModel", "export_model"]

if TYPE_CHECKING:
    from vidsearch.export.config import ExportConfig
    from vidsearch.export.exporter import ExportedModel, ExportResult, export_model


__getattr__ = lazy_exports(__name__, _EXPORTS)
