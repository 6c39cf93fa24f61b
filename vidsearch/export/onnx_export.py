"""PyTorch → ONNX for one graph: the dynamo exporter, opset ≥ 18, a dynamic batch axis.

Weights stay inside `model.onnx` below the protobuf limit and go to one side file,
`model.onnx.data`, above it (ViT-g); Triton's ONNX Runtime backend and TensorRT's parser read both
forms from the version directory. The written file is checked with `onnx.checker` and its inputs,
outputs and batch axis are read back, so a model that would not serve fails here.
"""

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from vidsearch.errors import ExportError
from vidsearch.export.graphs import Graph
from vidsearch.export.inputs import random_batch

log = logging.getLogger(__name__)

BATCH_AXIS = "batch"
# The exporter logs a line per torchvision operator it cannot register (nothing here uses them) and
# onnx_ir a line per pass; neither says anything about the model.
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "onnxscript", "onnx_ir")


@dataclass(frozen=True)
class OnnxArtifact:
    """A written ONNX model: its file, the files beside it that belong to it, and facts about it."""

    path: Path
    files: tuple[Path, ...]
    opset: int
    external_data: bool
    weight_bytes: int


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch's own deprecation notices about its internals, raised while tracing
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def initializer_bytes(program: torch.onnx.ONNXProgram) -> int:
    """Bytes of the weights the exported graph holds (those of the towers it does not use are gone)."""
    values = program.model.graph.initializers.values()
    return sum(v.const_value.nbytes for v in values if v.const_value is not None)


def export_onnx(graph: Graph, path: Path, *, opset: int, max_batch: int, simplify: bool,
                external_data_threshold: int) -> OnnxArtifact:
    """Export `graph` to `path`, with weights in a side file when they reach the threshold."""
    rng = np.random.default_rng(0)
    example = {name: torch.from_numpy(value) for name, value in random_batch(graph, 2, rng).items()}
    # torch.export specialises an axis whose example size is 1, so the example batch is 2 and the
    # declared maximum at least 2; Triton's max_batch_size still caps what is served.
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=max(max_batch, 2))
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                graph.module, tuple(example.values()), dynamo=True, opset_version=opset,
                input_names=[s.name for s in graph.inputs], output_names=[s.name for s in graph.outputs],
                dynamic_shapes=tuple({0: batch} for _ in graph.inputs), optimize=simplify, verbose=False,
            )
    except Exception as err:  # the exporter raises many types; each means "this graph did not export"
        raise ExportError(f"{graph.name}: ONNX export failed: {type(err).__name__}: {err}") from err
    if program is None:
        raise ExportError(f"{graph.name}: the ONNX exporter returned no program")
    size = initializer_bytes(program)
    external = size >= external_data_threshold
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(path, external_data=external)
    files = tuple(sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name)))
    _check_written(graph, path, opset)
    log.info("%s: exported to ONNX opset %d (%.1f MB of weights%s)", graph.name, opset, size / 1e6,
             ", in a side file" if external else "")
    return OnnxArtifact(path, files, opset, external, size)


def _check_written(graph: Graph, path: Path, opset: int) -> None:
    """The file is a valid model with the declared names, opset and a symbolic batch axis."""
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{graph.name}: the exported ONNX model is invalid: {err}") from err
    model = onnx.load(str(path), load_external_data=False)
    found = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if found < opset:
        raise ExportError(f"{graph.name}: exported opset {found}, asked for {opset}")
    for kind, values, specs in (("input", model.graph.input, graph.inputs),
                                ("output", model.graph.output, graph.outputs)):
        names = [v.name for v in values]
        if names != [s.name for s in specs]:
            raise ExportError(f"{graph.name}: exported {kind}s {names}, expected {[s.name for s in specs]}")
        for value in values:
            first = value.type.tensor_type.shape.dim[0]
            if not first.dim_param:
                raise ExportError(f"{graph.name}: {kind} {value.name} has a fixed batch axis "
                                  f"({first.dim_value}); the export needs a dynamic one")
