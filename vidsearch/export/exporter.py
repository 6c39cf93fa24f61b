"""`vidsearch export`: checkpoint → ONNX (→ TensorRT) → a Triton model repository, checked at each step.

The order matters for the guarantee that a failed export leaves nothing behind: inputs are checked,
the checkpoint is loaded and matched against the preset, every model's place in the repository is
reserved (conflicts fail here, before minutes of work), then each model is exported into a staging
directory with its parity checked, and only then moved into the repository.
"""

import hashlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from vidsearch import __version__
from vidsearch.errors import CheckpointError, ConfigError, ExportError
from vidsearch.export import tensorrt, triton_config, video_models
from vidsearch.export.config import ExportConfig, Precision
from vidsearch.export.graphs import Graph, architecture, graphs_for
from vidsearch.export.inputs import decoded_clips, random_batch, real_inputs
from vidsearch.export.onnx_export import OnnxArtifact, export_onnx
from vidsearch.export.parity import ParityFigure, Runner, compare, ort_runner, require, torch_runner
from vidsearch.export.repository import StagedRepository
from vidsearch.formats.model_repository import VISION_MODEL, WEIGHTS, WeightsInfo
from vidsearch.models import get_preset, load_checkpoint
from vidsearch.models.internvideo2 import InternVideo2
from vidsearch.models.towers import TOWER_PREFIXES
from vidsearch.models.viclip import ViCLIP
from vidsearch.models.videomae import VideoMAEv2

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

log = logging.getLogger(__name__)

EXPORTABLE_FAMILIES = ("viclip", "internvideo2", "videomae_v2")
# A fine-tuned classifier's class count is a property of its data set, not of the architecture.
_FREE_FIELDS = frozenset({"num_classes"})
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExportedModel:
    """One model written into the repository."""

    name: str
    version: int
    path: Path
    serving: str  # how Triton runs it: python+onnxruntime, onnxruntime_onnx(+tensorrt), tensorrt_plan, …
    parity: tuple[ParityFigure, ...] = ()


@dataclass(frozen=True)
class ExportResult:
    out: Path
    models: tuple[ExportedModel, ...]
    tensorrt: bool  # whether TensorRT engines were built (False: not asked for, or it does not import)
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class _Context:
    """What every model of one export shares."""

    config: ExportConfig
    family: str
    preset: str
    architecture: dict[str, Any]
    checkpoint: dict[str, Any]
    trt: ModuleType | None
    serving: triton_config.Serving
    stage: StagedRepository


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(config: ExportConfig) -> tuple[ViCLIP | InternVideo2 | VideoMAEv2, str]:
    """The checkpoint's model, refused unless it is the architecture the preset names."""
    preset = get_preset(config.model)
    if preset.family.name not in EXPORTABLE_FAMILIES:
        raise ConfigError(f"export: {config.model} is a {preset.family.name} model; vidsearch exports "
                          "ViCLIP, InternVideo2 and VideoMAE V2 classifiers")
    try:
        model = load_checkpoint(config.checkpoint, config.model)
    except CheckpointError as err:
        message = str(err) if str(config.checkpoint) in str(err) else f"{config.checkpoint}: {err}"
        raise CheckpointError(f"{message} (--model {preset.name} is a {preset.family.name} model)") from err
    if not isinstance(model, ViCLIP | InternVideo2 | VideoMAEv2):
        raise CheckpointError(f"{config.checkpoint}: not a ViCLIP, InternVideo2 or VideoMAE V2 classifier")
    expected, found = asdict(preset.config), asdict(model.config)
    wrong = [f"{k} {found[k]} (preset: {expected[k]})" for k in expected
             if k not in _FREE_FIELDS and expected[k] != found[k]]
    if wrong:
        raise CheckpointError(f"{config.checkpoint} is not a {preset.name} checkpoint: its tensors give "
                              f"{', '.join(wrong)}; pass the --model preset it was trained as")
    return model, preset.family.name


def _serving(config: ExportConfig) -> triton_config.Serving:
    preferred = tuple(sorted({config.opt_batch, config.max_batch}))
    return triton_config.Serving(config.max_batch, preferred, config.queue_delay_us, config.instances,
                                 gpu=config.target == "gpu", cpu_threads=config.cpu_threads)


def _model_config(graph: Graph, ctx: _Context) -> tuple["mc.ModelConfig", str]:
    """The Triton configuration of a graph, and how it is served in words."""
    config, serving = ctx.config, ctx.serving
    if config.target == "cpu":
        return triton_config.python_config(graph, serving), "python backend + onnxruntime (CPU)"
    if ctx.trt is not None:
        precision = engine_precision(graph, config)
        return triton_config.tensorrt_config(graph, serving), f"tensorrt_plan ({precision})"
    model_config = triton_config.onnxruntime_config(graph, serving, config.precision, config.workspace_bytes)
    return model_config, f"onnxruntime_onnx + TensorRT accelerator ({config.precision})"


def _identity(ctx: _Context, name: str, task: str, model_config: "mc.ModelConfig") -> dict[str, Any]:
    """What makes two exports the same model (a later version may only differ in weights)."""
    return {
        "model_name": name,
        "task": task,
        "family": ctx.family,
        "architecture": ctx.architecture,
        "target": ctx.config.target,
        "precision": ctx.config.precision,
        "platform": model_config.platform or model_config.backend,
    }


def _cases(graph: Graph, config: ExportConfig, model_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    real = real_inputs(graph, config.max_batch, config.sample_videos, model_dir)
    return {
        "random/1": random_batch(graph, 1, rng),
        f"random/{config.max_batch}": random_batch(graph, config.max_batch, rng),
        "real/1": {k: v[:1] for k, v in real.items()},
        f"real/{config.max_batch}": real,
    }


def engine_precision(graph: Graph, config: ExportConfig) -> Precision:
    """The precision a graph's engine is built in: int8 is calibrated on video clips, so a model that
    takes no video (the text tower, 1.2 GMAC a query) is built in fp16 instead."""
    if config.precision == "int8" and graph.preprocess is None:
        return "fp16"
    return config.precision


def _tensorrt_engine(graph: Graph, onnx: OnnxArtifact, ctx: _Context, version_dir: Path,
                     cases: dict[str, dict[str, np.ndarray]], reference: Runner) -> list[ParityFigure]:
    """Build, check against ONNX Runtime and write `model.plan` (+ the int8 calibration cache)."""
    assert ctx.trt is not None
    config = ctx.config
    precision = engine_precision(graph, config)
    spec = tensorrt.EngineSpec(precision, config.opt_batch, config.max_batch, config.workspace_bytes)
    calibrator = None
    if precision == "int8" and graph.preprocess is not None:
        clips = decoded_clips(config.calibration_videos, graph.preprocess, config.calibration_clips)
        calibrator = tensorrt.make_calibrator(ctx.trt, clips, graph.inputs[0].name, config.opt_batch,
                                              version_dir / "calibration.cache")
    plan = tensorrt.build_engine(ctx.trt, onnx.path, spec, calibrator)
    figures = compare(tensorrt.engine_runner(ctx.trt, plan), reference, cases, precision,
                      ("tensorrt", "onnxruntime"))
    require(graph.name, figures)
    (version_dir / "model.plan").write_bytes(plan)
    return figures


def _write_weights(graph: Graph, ctx: _Context, version_dir: Path) -> WeightsInfo:
    """The tower's own tensors as safetensors (never pickle), and what rebuilds the module around them."""
    from safetensors.torch import save_file

    prefixes = TOWER_PREFIXES[graph.tower]
    model = graph.module.get_submodule("model")
    # cloned: safetensors refuses tensors that share storage, and a view's storage may be larger
    tensors = {key: value.detach().contiguous().clone() for key, value in model.state_dict().items()
               if key.startswith(prefixes)}
    path = version_dir / WEIGHTS
    save_file(tensors, str(path))
    return WeightsInfo(WEIGHTS, file_sha256(path), ctx.family, ctx.architecture, graph.tower, prefixes)


def _export_graph(graph: Graph, ctx: _Context) -> ExportedModel:
    started = time.monotonic()
    config = ctx.config
    model_config, serving = _model_config(graph, ctx)
    version_dir = ctx.stage.version_dir(graph.name)
    for name, origin in graph.files.items():
        shutil.copyfile(origin, version_dir / name)
    onnx = export_onnx(graph, version_dir / "model.onnx", opset=config.opset, max_batch=config.max_batch,
                       simplify=config.simplify, external_data_threshold=config.external_data_threshold)
    cases = _cases(graph, config, version_dir)
    onnxruntime = ort_runner(onnx.path)
    figures = compare(onnxruntime, torch_runner(graph.module, [o.name for o in graph.outputs]), cases, "fp32",
                      ("onnxruntime", "pytorch"))
    require(graph.name, figures)
    if ctx.trt is not None:
        figures += _tensorrt_engine(graph, onnx, ctx, version_dir, cases, onnxruntime)
    weights = _write_weights(graph, ctx, version_dir)
    if config.target == "cpu":
        source = resources.files("vidsearch.export.python_backend").joinpath("model.py")
        (version_dir / "model.py").write_bytes(source.read_bytes())
    manifest = {
        "identity": _identity(ctx, graph.name, graph.task, model_config),
        **_graph_manifest(graph),
        "source": {"preset": ctx.preset, **ctx.checkpoint},
        "weights": weights.to_dict(),
        "engine": {"serving": serving, "onnx": "model.onnx", "opset": onnx.opset,
                   "external_data": onnx.external_data, "weight_bytes": onnx.weight_bytes,
                   "tensorrt_plan": "model.plan" if ctx.trt is not None else None,
                   "tensorrt_precision": engine_precision(graph, config) if ctx.trt is not None else None,
                   "max_batch": config.max_batch, "opt_batch": config.opt_batch},
        "parity": {"metric": "max |candidate - reference| / max |reference| per output",
                   "figures": [f.to_dict() for f in figures]},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "export_seconds": round(time.monotonic() - started, 2),
        "vidsearch_version": __version__,
    }
    ctx.stage.finish(graph.name, model_config, manifest, graph.preprocess)
    return ExportedModel(graph.name, int(version_dir.name), version_dir, serving, tuple(figures))


def _graph_manifest(graph: Graph) -> dict[str, Any]:
    """What a client needs to know to call the model: tensors, their meaning, the tokenizer (the
    preprocessing spec is added by `write_description`)."""
    return {
        "model_name": graph.name,
        "task": graph.task,
        "embedding_dim": graph.embedding_dim,
        "inputs": [s.to_dict() for s in graph.inputs],
        "outputs": [{**s.to_dict(), "meaning": graph.output_meaning[s.name]} for s in graph.outputs],
        "normalized_output": graph.normalized_output,
        "tokenizer": graph.tokenizer,
    }


def _reserve(ctx: _Context, graphs: list[Graph], extra: list[video_models.ExtraModel]) -> None:
    for graph in graphs:
        model_config, _ = _model_config(graph, ctx)
        ctx.stage.reserve(graph.name, _identity(ctx, graph.name, graph.task, model_config), model_config)
    for model in extra:
        ctx.stage.reserve(model.name, _identity(ctx, model.name, model.task, model.config), model.config)


def _write_extra(ctx: _Context, model: video_models.ExtraModel) -> ExportedModel:
    version_dir = ctx.stage.version_dir(model.name)
    for name, payload in model.files.items():
        (version_dir / name).write_bytes(payload)
    manifest = {
        "identity": _identity(ctx, model.name, model.task, model.config),
        "model_name": model.name,
        "task": model.task,
        **model.manifest,
        "source": {"preset": ctx.preset, **ctx.checkpoint},
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "vidsearch_version": __version__,
    }
    ctx.stage.finish(model.name, model.config, manifest, model.preprocess)
    return ExportedModel(model.name, int(version_dir.name), version_dir, model.serving)


def export_model(config: ExportConfig) -> ExportResult:
    """Run one export (see the module docstring); returns what was written and the parity figures."""
    started = time.monotonic()
    triton_config.schema()
    config.check_inputs_exist()
    model, family = load_model(config)
    graphs = graphs_for(model, config.vocabulary_path)
    notes: list[str] = []
    trt = tensorrt.import_tensorrt() if config.target == "gpu" else None
    if config.target == "gpu" and trt is None:
        if config.precision == "int8":
            raise ExportError("int8 needs TensorRT to calibrate, and the tensorrt module does not import "
                              "here; export int8 on a GPU machine, or fp16/fp32 here")
        notes.append("tensorrt does not import here: no engine was built; the GPU models are ONNX served by "
                     "Triton's ONNX Runtime backend with TensorRT as its execution accelerator (engines are "
                     "built on the GPU when Triton loads them)")
        log.info(notes[-1])
    checkpoint = {"checkpoint": config.checkpoint.name, "checkpoint_sha256": file_sha256(config.checkpoint)}
    with StagedRepository(config.out, config.version) as stage:
        ctx = _Context(config, family, config.model, architecture(model), checkpoint, trt, _serving(config),
                       stage)
        vision = next((g for g in graphs if g.name == VISION_MODEL), None)
        extra = video_models.video_models(vision, ctx.serving, config.target) if vision else []
        _reserve(ctx, graphs, extra)
        exported = [_export_graph(graph, ctx) for graph in graphs]
        exported += [_write_extra(ctx, model_) for model_ in extra]
        stage.commit([m.name for m in exported])
    final = tuple(
        ExportedModel(m.name, m.version, config.out / m.name / str(m.version), m.serving, m.parity)
        for m in exported
    )
    return ExportResult(config.out, final, trt is not None, time.monotonic() - started, tuple(notes))
