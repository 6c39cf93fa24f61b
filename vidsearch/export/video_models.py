"""The models that decode on the server: `video_preprocess` and the ensemble `viclip_video_embed`.

`video_preprocess` takes the encoded bytes of a video (`encoded`) and one clip's frame numbers
(`frames`, which `vidsearch.video.dali.clip_frame_numbers` computes on the client by demuxing alone,
with the same sampling and frame-choice rules as the in-process path) and gives the clip tensor
`viclip_vision` takes. The ensemble `viclip_video_embed` chains the two on the server: a client sends
bytes and frame numbers (VIDEO, FRAME_INDICES) and gets embeddings. Both targets write the same two
models with the same tensors; only what runs `video_preprocess` differs:

- GPU target: `vidsearch.video.dali`'s pipeline for the vision model's `Preprocess` spec, serialized,
  on Triton's DALI backend (`fn.decoders.video` "mixed", NVDEC). DALI builds and serializes this GPU
  pipeline on a machine without a GPU when `device_id=None`; only running it needs one. Rotation
  metadata is not applied on this path (see `vidsearch.video.dali`).
- CPU target: a Python-backend model (`python_backend/video_model.py`) decoding with vidsearch's own
  PyAV path and the same spec (DALI decodes only VP8/VP9/MJPEG on a CPU). The Triton server's Python
  environment needs vidsearch (`pip install --no-deps`) and PyAV. Written only for specs that need
  no PyTorch there (bilinear resizing without antialiasing: ViCLIP's preset, not InternVideo2's).
"""

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from vidsearch.errors import ExportError
from vidsearch.export import triton_config
from vidsearch.export.config import Target
from vidsearch.export.graphs import Graph, TensorSpec
from vidsearch.formats.model_repository import VIDEO_EMBED_INPUTS, VIDEO_EMBED_MODEL
from vidsearch.video import dali
from vidsearch.video.preprocess import Preprocess

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

PREPROCESS_MODEL = "video_preprocess"
# The pipeline's external sources are named `encoded` and `frames` (vidsearch.video.dali); the DALI
# backend matches config inputs to them by name and config outputs to pipeline outputs by position.
# The CPU model takes the same names.
PIPELINE_INPUTS = ("encoded", "frames")
PIPELINE_OUTPUT = "clip"
DALI_THREADS = 4


@dataclass(frozen=True)
class ExtraModel:
    """A model that is not exported from PyTorch: its config, its files and its vidsearch.json body."""

    name: str
    task: str
    config: "mc.ModelConfig"
    files: dict[str, bytes]
    manifest: dict[str, Any]
    serving: str
    preprocess: Preprocess


def server_decodes(spec: Preprocess, target: Target) -> bool:
    """Whether the target's preprocessing model can run `spec`: DALI can on a GPU; the CPU model only
    where vidsearch's CPU path needs no PyTorch (which the Triton server's environment lacks)."""
    return target == "gpu" or (spec.interpolation == "bilinear" and not spec.antialias)


def _preprocess_model(spec: Preprocess, serving: triton_config.Serving, target: Target,
                      inputs: list[TensorSpec], clip: TensorSpec) -> ExtraModel:
    manifest: dict[str, Any] = {"inputs": [s.to_dict() for s in inputs], "outputs": [clip.to_dict()],
                                "frame_numbers": "vidsearch.video.dali.clip_frame_numbers"}
    if target == "gpu":
        pipeline = dali.build_pipeline(spec, "gpu", batch_size=serving.max_batch, num_threads=DALI_THREADS,
                                       device_id=None)
        config = triton_config.dali_config(PREPROCESS_MODEL, serving, inputs, clip)
        return ExtraModel(PREPROCESS_MODEL, "video_preprocess", config,
                          {"model.dali": bytes(pipeline.serialize())},
                          {**manifest, "decoder": "fn.decoders.video, mixed (NVDEC)"}, "dali (GPU decode)",
                          spec)
    source = resources.files("vidsearch.export.python_backend").joinpath("video_model.py")
    config = triton_config.python_video_config(PREPROCESS_MODEL, serving, inputs, clip)
    return ExtraModel(PREPROCESS_MODEL, "video_preprocess", config, {"model.py": source.read_bytes()},
                      {**manifest, "decoder": "vidsearch.video.decode.read_clips_at (PyAV, CPU)"},
                      "python backend + PyAV (CPU decode)", spec)


def video_models(vision: Graph, serving: triton_config.Serving,
                 target: Target) -> list[ExtraModel]:
    """`video_preprocess` and `viclip_video_embed` for the vision graph of an export; none where the
    target cannot decode by the graph's spec on the server (`server_decodes`)."""
    spec = vision.preprocess
    if spec is None:
        raise ExportError(f"{vision.name} has no preprocessing spec")
    if not server_decodes(spec, target):
        return []
    clip = TensorSpec(PIPELINE_OUTPUT, "float32", spec.output_shape)
    if clip.shape != vision.inputs[0].shape:
        raise ExportError(f"preprocessing gives {clip.shape}, {vision.name} takes {vision.inputs[0].shape}")
    encoded, frames = (TensorSpec(PIPELINE_INPUTS[0], "uint8", (-1,)),
                       TensorSpec(PIPELINE_INPUTS[1], "int32", (spec.frames,)))
    preprocess = _preprocess_model(spec, serving, target, [encoded, frames], clip)
    video, indices = (TensorSpec(VIDEO_EMBED_INPUTS[0], "uint8", (-1,)),
                      TensorSpec(VIDEO_EMBED_INPUTS[1], "int32", (spec.frames,)))
    steps = [
        triton_config.Step(PREPROCESS_MODEL, dict(zip(PIPELINE_INPUTS, VIDEO_EMBED_INPUTS, strict=True)),
                           {PIPELINE_OUTPUT: "preprocessed_clip"}),
        triton_config.Step(vision.name, {vision.inputs[0].name: "preprocessed_clip"},
                           {o.name: o.name for o in vision.outputs}),
    ]
    ensemble_config = triton_config.ensemble_config(VIDEO_EMBED_MODEL, serving.max_batch, [video, indices],
                                                    vision.outputs, steps)
    ensemble = ExtraModel(
        VIDEO_EMBED_MODEL, "video_embedding", ensemble_config, {},
        {"inputs": [video.to_dict(), indices.to_dict()],
         "outputs": [o.to_dict() for o in vision.outputs], "embedding_dim": vision.embedding_dim,
         "normalized_output": vision.normalized_output, "steps": [PREPROCESS_MODEL, vision.name],
         "engine": {"serving": "ensemble", "max_batch": serving.max_batch},
         "frame_numbers": "vidsearch.video.dali.clip_frame_numbers"},
        "ensemble", spec,
    )
    return [preprocess, ensemble]
