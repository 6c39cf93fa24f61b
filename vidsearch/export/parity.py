"""Parity: does an exported model compute what its reference computes, within its precision's bound?

The error of one output is measured relative to the reference's scale:
`max |candidate − reference| / max |reference|` over the whole output tensor. (Element-wise relative
error explodes where the reference crosses zero and says nothing about a model.) The bounds are the
contract of each precision; the cosine floor guards embeddings against a wrong direction that a
scale-relative error could miss. An export over its bound fails with every figure listed.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from vidsearch.errors import ParityError
from vidsearch.export.config import Precision

log = logging.getLogger(__name__)

Batch = Mapping[str, NDArray[Any]]
Runner = Callable[[Batch], dict[str, NDArray[Any]]]

# (max relative error, minimum cosine similarity of any row) per precision of the candidate.
BOUNDS: dict[str, tuple[float, float]] = {
    "fp32": (1e-4, 0.999999),
    "fp16": (1e-2, 0.999),
    "int8": (1e-1, 0.98),
}


@dataclass(frozen=True)
class ParityFigure:
    """The agreement of one output on one batch of inputs."""

    candidate: str
    reference: str
    inputs: str  # "random" or "real"
    batch: int
    output: str
    max_abs_error: float
    max_rel_error: float
    min_cosine: float
    bound: float
    min_cosine_bound: float

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.bound and self.min_cosine >= self.min_cosine_bound

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (f"{self.candidate} vs {self.reference} | {self.inputs:6s} batch {self.batch:3d} | "
                f"{self.output:22s} max rel {self.max_rel_error:.2e} (≤ {self.bound:.0e}) "
                f"max abs {self.max_abs_error:.2e} min cos {self.min_cosine:.7f} {verdict}")


def measure(candidate: NDArray[Any], reference: NDArray[Any]) -> tuple[float, float, float]:
    """(max abs error, max error relative to the reference's largest magnitude, min row cosine)."""
    a = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    b = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if a.shape != b.shape:
        raise ParityError(f"output shapes differ: {a.shape} vs reference {b.shape}")
    if not np.isfinite(a).all():
        return float("inf"), float("inf"), -1.0
    abs_err = float(np.abs(a - b).max(initial=0.0))
    scale = float(np.abs(b).max(initial=0.0))
    rel_err = abs_err / scale if scale > 0 else abs_err
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.maximum(norms, 1e-300), 1.0)
    return abs_err, rel_err, float(cosine.min(initial=1.0))


def compare(candidate: Runner, reference: Runner, cases: Mapping[str, Batch], precision: Precision,
            names: tuple[str, str]) -> list[ParityFigure]:
    """Run both on every case ("random/1", "real/16", …) and measure every output."""
    bound, cos_bound = BOUNDS[precision]
    figures: list[ParityFigure] = []
    for label, batch in cases.items():
        kind = label.split("/")[0]
        size = len(next(iter(batch.values())))
        got, want = candidate(batch), reference(batch)
        for output, expected in want.items():
            abs_err, rel_err, cosine = measure(got[output], expected)
            figures.append(ParityFigure(names[0], names[1], kind, size, output, abs_err, rel_err, cosine,
                                        bound, cos_bound))
    return figures


def require(model: str, figures: list[ParityFigure]) -> None:
    """Log every figure; raise if any is over its bound."""
    for figure in figures:
        log.info("%s parity: %s", model, figure.line())
    failed = [f for f in figures if not f.passed]
    if failed:
        lines = "\n  ".join(f.line() for f in failed)
        raise ParityError(f"{model}: the exported model does not match its reference:\n  {lines}")


def torch_runner(module: torch.nn.Module, output_names: list[str]) -> Runner:
    """The PyTorch reference: the same module that was exported, in float32 on the CPU."""
    def run(batch: Batch) -> dict[str, NDArray[Any]]:
        with torch.inference_mode():
            outputs = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in batch.values()))
        return {name: out.numpy() for name, out in zip(output_names, outputs, strict=True)}

    return run


def ort_runner(path: Path, threads: int = 0) -> Runner:
    """ONNX Runtime on the CPU, with full graph optimisation (what the served model runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(batch: Batch) -> dict[str, NDArray[Any]]:
        return dict(zip(names, session.run(names, dict(batch)), strict=True))

    return run
