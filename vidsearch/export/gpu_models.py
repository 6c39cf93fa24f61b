"""The GPU-only models of a ViCLIP repository: `video_preprocess` (DALI) and `viclip_video_embed`.

`video_preprocess` is `vidsearch.video.dali`'s pipeline for the vision model's `Preprocess` spec,
serialized: the encoded bytes of a video (`encoded`) and one clip's frame numbers (`frames`, which
`vidsearch.video.dali.clip_frame_numbers` computes on the client by demuxing alone, with the same
sampling rule as the CPU path) → `fn.decoders.video` on the GPU ("mixed", NVDEC) → resize →
normalise → the clip tensor `viclip_vision` takes. The ensemble `viclip_video_embed` chains the two
on the server: a client sends bytes and frame numbers (VIDEO, FRAME_INDICES) and gets embeddings.

DALI builds and serializes this GPU pipeline on a machine without a GPU when `device_id=None`
(Triton's DALI backend gives each instance its GPU when it loads the model); only running it needs
one. Rotation metadata is not applied on this path (see `vidsearch.video.dali`).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vidsearch.errors import ExportError
from vidsearch.export import triton_config
from vidsearch.export.graphs import Graph, TensorSpec
from vidsearch.video import dali
from vidsearch.video.preprocess import Preprocess

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

PREPROCESS_MODEL = "video_preprocess"
ENSEMBLE_MODEL = "viclip_video_embed"
# The pipeline's external sources are named `encoded` and `frames` (vidsearch.video.dali); the DALI
# backend matches config inputs to them by name and config outputs to pipeline outputs by position.
PIPELINE_INPUTS = ("encoded", "frames")
PIPELINE_OUTPUT = "clip"
ENSEMBLE_INPUTS = ("VIDEO", "FRAME_INDICES")
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


def video_models(vision: Graph, serving: triton_config.Serving) -> list[ExtraModel]:
    """`video_preprocess` and `viclip_video_embed` for the vision graph of a ViCLIP export."""
    spec = vision.preprocess
    if spec is None:
        raise ExportError(f"{vision.name} has no preprocessing spec")
    clip = TensorSpec(PIPELINE_OUTPUT, "float32", spec.output_shape)
    if clip.shape != vision.inputs[0].shape:
        raise ExportError(f"preprocessing gives {clip.shape}, {vision.name} takes {vision.inputs[0].shape}")
    encoded, frames = (TensorSpec(PIPELINE_INPUTS[0], "uint8", (-1,)),
                       TensorSpec(PIPELINE_INPUTS[1], "int32", (spec.frames,)))
    pipeline = dali.build_pipeline(spec, "gpu", batch_size=serving.max_batch, num_threads=DALI_THREADS,
                                   device_id=None)
    preprocess_config = triton_config.dali_config(PREPROCESS_MODEL, serving, [encoded, frames], clip)
    preprocess = ExtraModel(
        PREPROCESS_MODEL, "video_preprocess", preprocess_config, {"model.dali": bytes(pipeline.serialize())},
        {"inputs": [encoded.to_dict(), frames.to_dict()],
         "outputs": [clip.to_dict()], "decoder": "fn.decoders.video, mixed (NVDEC)",
         "frame_numbers": "vidsearch.video.dali.clip_frame_numbers"},
        "dali (GPU decode)", spec,
    )
    video, indices = (TensorSpec(ENSEMBLE_INPUTS[0], "uint8", (-1,)),
                      TensorSpec(ENSEMBLE_INPUTS[1], "int32", (spec.frames,)))
    steps = [
        triton_config.Step(PREPROCESS_MODEL, dict(zip(PIPELINE_INPUTS, ENSEMBLE_INPUTS, strict=True)),
                           {PIPELINE_OUTPUT: "preprocessed_clip"}),
        triton_config.Step(vision.name, {vision.inputs[0].name: "preprocessed_clip"},
                           {o.name: o.name for o in vision.outputs}),
    ]
    ensemble_config = triton_config.ensemble_config(ENSEMBLE_MODEL, serving.max_batch, [video, indices],
                                                    vision.outputs, steps)
    ensemble = ExtraModel(
        ENSEMBLE_MODEL, "video_embedding", ensemble_config, {},
        {"inputs": [video.to_dict(), indices.to_dict()],
         "outputs": [o.to_dict() for o in vision.outputs], "embedding_dim": vision.embedding_dim,
         "normalized_output": vision.normalized_output, "steps": [PREPROCESS_MODEL, vision.name],
         "frame_numbers": "vidsearch.video.dali.clip_frame_numbers"},
        "ensemble", spec,
    )
    return [preprocess, ensemble]
