"""InternVideo2 through the whole path: an official-shaped stage-2 file → `vidsearch export` → the
embedded runtime in a real server → Ingest of real H.264 videos → Search, checked against PyTorch;
and the Triton runtime (a real Triton server) answering as the embedded one."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from tools.triton_server import TritonServer, find_triton
from vidsearch.cli import app
from vidsearch.client import SearchClient
from vidsearch.export import ExportConfig, ExportResult, export_model
from vidsearch.export.graphs import scaled_preprocess
from vidsearch.export.inputs import decoded_clips
from vidsearch.models import InternVideo2, load_checkpoint
from vidsearch.models.wordpiece import WordPieceTokenizer
from vidsearch.runtime import RuntimeConfig, open_runtime
from vidsearch.serving import SearchServer, load_settings
from vidsearch.video.clips import ClipSpec

from ..models.reference_internvideo2 import ReferenceStage2
from ..runtime.models import SCENE_S, write_videos
from ..tiny_configs import TINY_INTERNVIDEO2, TINY_WORDPIECE_VOCAB

QUERIES = ("a dog is running in the park", "red car on the street", "the blue sky at sunset")
PARITY = 1e-4
REPO_ROOT = Path(__file__).resolve().parents[2]
TRITON_ENV = Path(os.environ.get("VIDSEARCH_TRITON_ENV", REPO_ROOT / ".venv-triton"))


@dataclass(frozen=True)
class Exported:
    result: ExportResult
    repository: Path
    model: InternVideo2  # what the checkpoint holds, in PyTorch
    vocabulary: Path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    folder = tmp_path_factory.mktemp("internvideo2")
    torch.manual_seed(0)
    reference = ReferenceStage2(TINY_INTERNVIDEO2, total_text_layers=3)
    checkpoint = folder / "stage2.pth"
    torch.save({"model": reference.state_dict()}, checkpoint)  # training-only keys included, as released
    vocabulary = folder / "vocab.txt"  # beside the checkpoint: export finds it there
    vocabulary.write_text("\n".join(TINY_WORDPIECE_VOCAB) + "\n")
    preset = folder / "internvideo2-tiny.json"
    preset.write_text(json.dumps({"family": "internvideo2", "config": TINY_INTERNVIDEO2}))
    repository = folder / "repository"
    result = export_model(ExportConfig(str(preset), checkpoint, repository, max_batch=4, cpu_threads=1))
    model = load_checkpoint(checkpoint, preset)
    assert isinstance(model, InternVideo2)
    return Exported(result, repository, model, vocabulary)


def test_onnx_runtime_runs_each_vision_rms_norm_as_one_fused_kernel(exported: Exported,
                                                                    tmp_path: Path) -> None:
    """Four RMSNorms a block (norm1, norm2, q, k): written as a division by the root, ONNX Runtime
    fuses each into SimplifiedLayerNormalization at the default opset (the rsqrt form stays six passes)."""
    vision = next(m for m in exported.result.models if m.name == "viclip_vision")
    optimised = tmp_path / "optimised.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(optimised)
    model = vision.path / "model.onnx"
    ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(optimised)).graph.node]
    assert ops.count("SimplifiedLayerNormalization") == 4 * TINY_INTERNVIDEO2["vision_layers"]
    assert "Reciprocal" not in ops


def test_at_opset_23_both_towers_run_on_onnx_runtimes_attention_kernel_within_parity(exported: Exported,
                                                                                    tmp_path: Path) -> None:
    """Opset 23 writes attention as one Attention node, which ONNX Runtime runs fused; its kernel
    refuses a padding mask broadcast over the queries, so the text tower's mask has a row per query."""
    folder = exported.vocabulary.parent
    config = ExportConfig(str(folder / "internvideo2-tiny.json"), folder / "stage2.pth",
                          tmp_path / "repository", max_batch=4, cpu_threads=1, opset=23)
    for model in export_model(config).models:
        assert model.parity
        assert all(figure.max_rel_error <= PARITY for figure in model.parity), model.parity
        ops = [node.op_type for node in onnx.load(str(model.path / "model.onnx")).graph.node]
        assert "Attention" in ops, (model.name, ops)
        assert "Softmax" not in ops, (model.name, ops)


def test_export_writes_both_towers_within_parity_with_their_tokenizer_and_preprocessing(
    exported: Exported,
) -> None:
    models = {m.name: m for m in exported.result.models}
    assert set(models) == {"viclip_text", "viclip_vision"}
    for model in models.values():
        assert model.parity
        assert all(figure.max_rel_error <= PARITY for figure in model.parity), model.parity
    text = json.loads((models["viclip_text"].path / "vidsearch.json").read_text())
    assert text["tokenizer"]["kind"] == "wordpiece"
    assert text["tokenizer"]["context_length"] == TINY_INTERNVIDEO2["context_length"]
    assert (models["viclip_text"].path / "vocab.txt").read_text() == exported.vocabulary.read_text()
    assert text["source"]["preset"].endswith("internvideo2-tiny.json")
    vision = json.loads((models["viclip_vision"].path / "vidsearch.json").read_text())
    sampling = {"frames": 4, "mode": "segment_middle_frame", "stride_frames": None}
    assert vision["preprocess"]["sampling"] == sampling
    assert vision["preprocess"]["interpolation"] == "bicubic"
    assert vision["inputs"][0]["shape"] == [-1, 4, 3, 28, 28]


def test_export_refuses_a_missing_or_foreign_vocabulary(exported: Exported, tmp_path: Path) -> None:
    folder = exported.vocabulary.parent
    command = ["export", "--model", str(folder / "internvideo2-tiny.json"), "--checkpoint",
               str(folder / "stage2.pth"), "--out", str(tmp_path / "repository")]
    missing = CliRunner().invoke(app, [*command, "--vocabulary", str(tmp_path / "none.txt")])
    assert missing.exit_code == 1
    assert "needs its WordPiece vocabulary" in missing.output
    foreign = tmp_path / "vocab.txt"
    foreign.write_text("\n".join([*TINY_WORDPIECE_VOCAB, "extra"]) + "\n")
    wrong = CliRunner().invoke(app, [*command, "--vocabulary", str(foreign)])
    assert wrong.exit_code == 1
    assert "35 tokens but the text tower's embedding table has 34 rows" in wrong.output
    assert not (tmp_path / "repository").exists()


@pytest.mark.slow
def test_search_finds_the_clip_pytorch_ranks_first(exported: Exported, tmp_path: Path) -> None:
    videos = write_videos(tmp_path / "media", 2, scenes=3)
    spec = scaled_preprocess("internvideo2", TINY_INTERNVIDEO2["image_size"], TINY_INTERNVIDEO2["num_frames"])
    clips = np.concatenate([decoded_clips([v], spec, 3, ClipSpec(length_s=SCENE_S)) for v in videos])
    names = [(v.name, k * SCENE_S) for v in videos for k in range(3)]
    tokens = WordPieceTokenizer(exported.vocabulary, TINY_INTERNVIDEO2["context_length"])(QUERIES)
    with torch.no_grad():
        clip_vectors = F.normalize(exported.model.encode_video(torch.from_numpy(clips)), dim=-1)
        query_vectors = F.normalize(exported.model.encode_text(torch.from_numpy(tokens)), dim=-1)
    similarity = (query_vectors @ clip_vectors.T).numpy()

    settings = load_settings(None, port=0, metrics_port=0, http={"port": 0}, index=tmp_path / "index",
                             allowed_roots=(tmp_path / "media",), grace_s=0.5,
                             runtime={"model_repository": exported.repository, "threads": 1},
                             video={"clip_length_s": SCENE_S})
    with SearchServer(settings) as server, SearchClient(server.address) as client:
        assert [o.clips for o in client.ingest([v.name for v in videos])] == [3, 3]
        for query, scores in zip(QUERIES, similarity, strict=True):
            result = client.search(query, top_k=6)
            best = result.hits[0]
            assert (best.video_id, best.start_s) == names[int(scores.argmax())]
            assert sorted(h.score for h in result.hits) == pytest.approx(sorted(scores), abs=PARITY)
            assert result.model == "internvideo2-tiny"


@pytest.mark.slow
@pytest.mark.triton
def test_the_triton_runtime_answers_as_the_embedded_one(exported: Exported) -> None:
    if not (TRITON_ENV / "bin" / "python").is_file():
        pytest.skip(f"no Triton server environment at {TRITON_ENV}: run `make triton-env`")
    clips = np.random.default_rng(1).standard_normal((5, 4, 3, 28, 28)).astype(np.float32)
    with TritonServer(find_triton(TRITON_ENV), exported.repository, startup_timeout_s=120) as server:
        remote = open_runtime(RuntimeConfig(kind="triton", model_repository=exported.repository,
                                            triton_url=server.url))
        local = open_runtime(RuntimeConfig(model_repository=exported.repository))
        try:
            np.testing.assert_allclose(remote.embed_text(list(QUERIES)), local.embed_text(list(QUERIES)),
                                       atol=1e-5)
            np.testing.assert_allclose(remote.embed_video(clips), local.embed_video(clips), atol=1e-5)
        finally:
            remote.close()
            local.close()


def test_the_torch_runtime_answers_as_the_embedded_one(exported: Exported) -> None:
    """The InternVideo2 towers rebuilt from their exported safetensors, on the CPU in fp32."""
    clips = np.random.default_rng(2).standard_normal((5, 4, 3, 28, 28)).astype(np.float32)
    torch_config = RuntimeConfig(kind="torch", gpu="off", model_repository=exported.repository)
    with open_runtime(torch_config) as on_torch, \
            open_runtime(RuntimeConfig(model_repository=exported.repository)) as local:
        assert on_torch.kind == "torch"
        np.testing.assert_allclose(on_torch.embed_text(list(QUERIES)), local.embed_text(list(QUERIES)),
                                   atol=1e-5)
        np.testing.assert_allclose(on_torch.embed_video(clips), local.embed_video(clips), atol=1e-5)
