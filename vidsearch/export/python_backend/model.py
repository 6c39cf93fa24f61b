"""Triton Python backend: one exported vidsearch model, run by ONNX Runtime on the CPU.

The model's `config.pbtxt` names the ONNX file (parameter `onnx_model`, in the version directory),
the intra-op thread count (`intra_op_thread_count`, 0 = ONNX Runtime's default) and whether idle
threads spin-wait (`allow_spinning`, "0" or "1"). Triton's
dynamic batcher hands `execute` several requests at once: their inputs are concatenated along the
batch axis, run as one batch, and the outputs split back, so batching pays off here as it does in
the native backends. A failing batch answers every request in it with the error instead of
crashing the model.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """The class name and methods Triton's Python backend looks for."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_path = Path(args["model_repository"]) / args["model_version"] / parameters.get("onnx_model",
                                                                                             "model.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         parameters.get("allow_spinning", "0"))
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.inputs = [(spec["name"], pb_utils.triton_string_to_numpy(spec["data_type"]))
                       for spec in config["input"]]
        self.outputs = [spec["name"] for spec in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        try:
            feeds = [
                {name: np.ascontiguousarray(pb_utils.get_input_tensor_by_name(request, name).as_numpy(),
                                            dtype=dtype) for name, dtype in self.inputs}
                for request in requests
            ]
            sizes = [len(feed[self.inputs[0][0]]) for feed in feeds]
            batch = {name: np.concatenate([feed[name] for feed in feeds]) for name, _ in self.inputs}
            results = self.session.run(self.outputs, batch)
        except Exception as err:  # answer the requests; an exception here would fail the whole model
            error = pb_utils.TritonError(f"{type(err).__name__}: {err}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[start : start + size]))
                       for name, result in zip(self.outputs, results, strict=True)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self.session = None
