"""Triton Python backend: `video_preprocess` on the CPU, encoded video + frame numbers → clip tensors.

The CPU target's counterpart of the DALI model of the GPU target, with the same tensors: `encoded`
(the whole encoded file, uint8, one row per clip) and `frames` (the clip's frame numbers in
presentation order, int32, as `vidsearch.video.dali.clip_frame_numbers` computes them on the client)
in, `clip` (float32, the preprocessing spec's output shape) out. It decodes with vidsearch's own
PyAV path (`vidsearch.video.decode.read_clips_at`) and the spec stored in this version's
`vidsearch.json`, so the server makes the very tensors the embedded runtime makes in-process: the
Triton server's Python environment has vidsearch installed (without its dependencies) and PyAV.

Rows of one batch that carry the same file are decoded together, in one pass through it. A video
that cannot be decoded answers its request with an INVALID_ARG error whose message starts with
`DECODE_ERROR_PREFIX`, which the client turns back into a `VideoDecodeError`.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from vidsearch.errors import ModelFormatError, VideoDecodeError
from vidsearch.formats.model_repository import DECODE_ERROR_PREFIX, read_description
from vidsearch.video.decode import ReadOptions, read_clips_at
from vidsearch.video.preprocess import Preprocess


def _error(message: str, invalid: bool) -> Any:
    """A request's error, with Triton's status code where this Triton's Python backend has codes."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG" if invalid else "INTERNAL", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    """The class name and methods Triton's Python backend looks for."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        description = read_description(version_dir)
        if description is None or description.preprocess is None:
            raise ModelFormatError(f"{version_dir}: no preprocessing spec in its vidsearch.json")
        self.spec = Preprocess.from_dict(dict(description.preprocess))
        if self.spec.digest() != description.preprocess_digest:
            raise ModelFormatError(f"{version_dir}: this vidsearch reads the preprocessing spec as digest "
                                   f"{self.spec.digest()}, the export wrote {description.preprocess_digest}")
        self.options = ReadOptions(time_limit_s=float(parameters.get("time_limit_s", "120")),
                                   threads=int(parameters.get("decode_threads", "0")))
        self.names = [spec["name"] for spec in config["input"]]
        self.output = config["output"][0]["name"]

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._answer(request) for request in requests]

    def _answer(self, request: Any) -> Any:
        encoded, frames = (pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.names)
        try:
            clips = self._clips(encoded, frames)
        except VideoDecodeError as err:
            return pb_utils.InferenceResponse(output_tensors=[],
                                              error=_error(DECODE_ERROR_PREFIX + err.reason, True))
        except Exception as err:  # answer the request; an exception here would fail the whole model
            return pb_utils.InferenceResponse(output_tensors=[],
                                              error=_error(f"{type(err).__name__}: {err}", False))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, clips)])

    def _clips(self, encoded: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """One clip tensor per row; rows holding the same file are read in one pass."""
        by_file: dict[bytes, list[int]] = {}
        for row in range(len(encoded)):
            by_file.setdefault(encoded[row].tobytes(), []).append(row)
        out = np.empty((len(encoded), *self.spec.output_shape), dtype=np.float32)
        for data, rows in by_file.items():
            wanted: Sequence[Sequence[int]] = [frames[row].tolist() for row in rows]
            for clip, tensor in read_clips_at(data, wanted, self.spec, self.options):  # raises for any clip
                out[rows[clip.index]] = tensor
        return out
