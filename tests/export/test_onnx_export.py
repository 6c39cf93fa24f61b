from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from vidsearch.errors import ExportError
from vidsearch.export.graphs import graphs_for
from vidsearch.export.inputs import random_batch, real_inputs
from vidsearch.export.onnx_export import export_onnx
from vidsearch.export.parity import compare, ort_runner, torch_runner

from .conftest import TinyModel


def test_towers_export_with_opset_18_and_a_dynamic_batch_axis(tiny_viclip: TinyModel, tmp_path: Path) -> None:
    text, _ = graphs_for(tiny_viclip.model)
    artifact = export_onnx(text, tmp_path / "model.onnx", opset=18, max_batch=8, simplify=True,
                           external_data_threshold=1 << 40)
    model = onnx.load(str(artifact.path))
    assert max(o.version for o in model.opset_import if o.domain == "") >= 18
    assert artifact.files == (tmp_path / "model.onnx",)
    assert not artifact.external_data
    (tokens,) = model.graph.input
    assert tokens.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert tokens.type.tensor_type.shape.dim[0].dim_param
    assert [d.dim_value for d in tokens.type.tensor_type.shape.dim[1:]] == [32]
    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 8):
        feed = random_batch(text, batch, np.random.default_rng(batch))
        embedding, normalised = session.run(None, feed)
        assert embedding.shape == normalised.shape == (batch, 32)
        np.testing.assert_allclose(np.linalg.norm(normalised, axis=1), 1.0, rtol=1e-5)


def test_weights_go_to_one_side_file_above_the_threshold(tiny_viclip: TinyModel, tmp_path: Path) -> None:
    """The ViT-g path (> 2 GB), exercised by lowering the threshold."""
    _, vision = graphs_for(tiny_viclip.model)
    artifact = export_onnx(vision, tmp_path / "model.onnx", opset=18, max_batch=2, simplify=True,
                           external_data_threshold=0)
    assert artifact.external_data
    assert [p.name for p in artifact.files] == ["model.onnx", "model.onnx.data"]
    side_file = (tmp_path / "model.onnx.data").stat().st_size
    assert side_file > 0.9 * artifact.weight_bytes  # tiny constants stay inline
    graph = onnx.load(str(artifact.path), load_external_data=False).graph
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external
    assert {entry.value for t in external for entry in t.external_data if entry.key == "location"} == {
        "model.onnx.data"
    }
    cases = {"real/2": real_inputs(vision, 2)}
    reference = torch_runner(vision.module, ["EMBEDDING", "EMBEDDING_NORMALIZED"])
    figures = compare(ort_runner(artifact.path), reference, cases, "fp32", ("onnxruntime", "pytorch"))
    assert all(f.passed for f in figures), [f.line() for f in figures]


def test_videomae_classifier_exports_logits_and_features(tiny_videomae: TinyModel, tmp_path: Path) -> None:
    (graph,) = graphs_for(tiny_videomae.model)
    artifact = export_onnx(graph, tmp_path / "model.onnx", opset=18, max_batch=4, simplify=False,
                           external_data_threshold=1 << 40)
    rng = np.random.default_rng(0)
    figures = compare(ort_runner(artifact.path), torch_runner(graph.module, ["LOGITS", "FEATURES"]),
                      {"random/3": random_batch(graph, 3, rng)}, "fp32", ("onnxruntime", "pytorch"))
    assert {(f.output, f.batch) for f in figures} == {("LOGITS", 3), ("FEATURES", 3)}
    assert all(f.max_rel_error < 1e-4 for f in figures)


def test_an_opset_the_exporter_cannot_give_fails_loudly(tiny_viclip: TinyModel, tmp_path: Path) -> None:
    text, _ = graphs_for(tiny_viclip.model)
    with pytest.raises(ExportError, match="viclip_text"):
        export_onnx(text, tmp_path / "model.onnx", opset=99, max_batch=2, simplify=True,
                    external_data_threshold=1 << 40)
