"""`vidsearch export` end to end: what it writes, and how it refuses bad input without writing."""

import hashlib
import json
import shutil
import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import pytest
from safetensors import safe_open
from tritonclient.grpc import model_config_pb2 as mc

from vidsearch.errors import CheckpointError, ConfigError, ExportError, MissingDependencyError, ParityError
from vidsearch.export import ExportConfig, export_model, parity, triton_config

from .conftest import MAX_BATCH, TinyModel, export_config, run_cli


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def staging_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".staging-" in p.name]


def manifest(repository: Path, model: str, version: int = 1) -> dict[str, object]:
    data = json.loads((repository / model / str(version) / "vidsearch.json").read_text())
    assert isinstance(data, dict)
    return data


def copy_of(repository: Path, tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    shutil.copytree(repository, out)
    return out


def test_cpu_export_writes_a_self_describing_repository(cpu_repository: Path, tiny_viclip: TinyModel) -> None:
    assert sorted(p.name for p in cpu_repository.iterdir()) == ["viclip_text", "viclip_video_embed",
                                                                 "viclip_vision", "video_preprocess"]
    checkpoint_sha = hashlib.sha256(tiny_viclip.checkpoint.read_bytes()).hexdigest()
    backend_model = resources.files("vidsearch.export.python_backend").joinpath("model.py").read_bytes()
    for name, task in (("viclip_text", "text_embedding"), ("viclip_vision", "video_embedding")):
        version_dir = cpu_repository / name / "1"
        files = sorted(p.name for p in version_dir.iterdir())
        assert files == ["model.onnx", "model.py", "model.safetensors", "vidsearch.json"]
        assert (version_dir / "model.py").read_bytes() == backend_model
        config = triton_config.parse((cpu_repository / name / "config.pbtxt").read_text())
        assert (config.name, config.backend, config.max_batch_size) == (name, "python", MAX_BATCH)
        assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
        data = manifest(cpu_repository, name)
        assert data["model_name"] == name
        assert data["task"] == task
        assert data["embedding_dim"] == 32
        assert data["normalized_output"] == "EMBEDDING_NORMALIZED"
        assert data["source"] == {"preset": str(tiny_viclip.preset), "checkpoint": "tiny-viclip.pth",
                                  "checkpoint_sha256": checkpoint_sha}
        weights: dict[str, object] = data["weights"]  # type: ignore[assignment]  # the torch runtime's
        file = version_dir / "model.safetensors"
        assert weights["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert (weights["family"], weights["config"]) == ("viclip", asdict(tiny_viclip.model.config))
        tower = "text" if name == "viclip_text" else "vision"
        assert (weights["tower"], weights["prefixes"]) == (tower, [f"{tower}_encoder.", f"{tower}_proj."])
        with safe_open(str(file), "pt") as tensors:  # the tower's own tensors only
            assert {key.split(".")[0] for key in tensors.keys()} == {f"{tower}_encoder"}  # noqa: SIM118
        assert data["exported_at"]
        assert isinstance(data["export_seconds"], float)
        figures = data["parity"]["figures"]  # type: ignore[index]
        assert {(f["inputs"], f["batch"], f["output"]) for f in figures} == {
            (kind, batch, output) for kind in ("random", "real") for batch in (1, MAX_BATCH)
            for output in ("EMBEDDING", "EMBEDDING_NORMALIZED")
        }
        assert all(f["passed"] and f["max_rel_error"] <= 1e-4 and f["bound"] == 1e-4 for f in figures)
    text, vision = manifest(cpu_repository, "viclip_text"), manifest(cpu_repository, "viclip_vision")
    assert text["inputs"] == [{"name": "TOKENS", "dtype": "int64", "shape": [-1, 32]}]
    assert text["tokenizer"]["context_length"] == 32  # type: ignore[index]
    assert text["preprocess"] is None
    preprocess = vision["preprocess"]
    assert preprocess["size"] == [32, 32]  # type: ignore[index]
    assert preprocess["sampling"] == {"frames": 8, "mode": "segment_middle", "stride_frames": None}  # type: ignore[index]
    assert len(preprocess["digest"]) == 16  # type: ignore[index]


def test_the_cpu_export_writes_the_gpu_targets_ensemble_with_a_pyav_preprocessing_model(
        cpu_repository: Path) -> None:
    configs = {name: triton_config.parse((cpu_repository / name / "config.pbtxt").read_text())
               for name in ("video_preprocess", "viclip_video_embed")}
    preprocess, ensemble = configs["video_preprocess"], configs["viclip_video_embed"]
    assert preprocess.backend == "python"
    assert [(i.name, i.data_type, list(i.dims), i.allow_ragged_batch) for i in preprocess.input] == [
        ("encoded", mc.TYPE_UINT8, [-1], True), ("frames", mc.TYPE_INT32, [8], False)
    ]
    assert [(o.name, list(o.dims)) for o in preprocess.output] == [("clip", [8, 3, 32, 32])]
    source = resources.files("vidsearch.export.python_backend").joinpath("video_model.py").read_bytes()
    assert (cpu_repository / "video_preprocess" / "1" / "model.py").read_bytes() == source
    assert (ensemble.platform, ensemble.max_batch_size) == ("ensemble", MAX_BATCH)
    assert [(i.name, list(i.dims)) for i in ensemble.input] == [("VIDEO", [-1]), ("FRAME_INDICES", [8])]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["video_preprocess", "viclip_vision"]
    vision = manifest(cpu_repository, "viclip_vision")
    for name in ("video_preprocess", "viclip_video_embed"):
        assert manifest(cpu_repository, name)["preprocess"] == vision["preprocess"]
    assert manifest(cpu_repository, "viclip_video_embed")["engine"] == {"serving": "ensemble",
                                                                        "max_batch": MAX_BATCH}


def test_a_second_export_adds_a_version_and_leaves_the_first_untouched(
    cpu_repository: Path, tiny_viclip: TinyModel, tmp_path: Path
) -> None:
    out = copy_of(cpu_repository, tmp_path)
    before = snapshot(out)
    result = export_model(export_config(tiny_viclip, out, max_batch=MAX_BATCH, cpu_threads=1))
    assert [(m.name, m.version) for m in result.models] == [
        ("viclip_text", 2), ("viclip_vision", 2), ("video_preprocess", 2), ("viclip_video_embed", 2)]
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert sorted(set(after) - set(before)) == sorted([
        *(f"{model}/2/{file}" for model in ("viclip_text", "viclip_vision")
          for file in ("model.onnx", "model.py", "model.safetensors", "vidsearch.json")),
        "viclip_video_embed/2/vidsearch.json", "video_preprocess/2/model.py",
        "video_preprocess/2/vidsearch.json",
    ])
    assert manifest(out, "viclip_text", 2)["version"] == 2
    assert staging_leftovers(tmp_path) == []


def test_an_existing_version_is_never_overwritten(cpu_repository: Path, tiny_viclip: TinyModel,
                                                  tmp_path: Path) -> None:
    out = copy_of(cpu_repository, tmp_path)
    before = snapshot(out)
    config = export_config(tiny_viclip, out, max_batch=MAX_BATCH, version=1, cpu_threads=1)
    with pytest.raises(ExportError, match=r"viclip_text/1 exists; .*--version \(next free: 2\)"):
        export_model(config)
    assert snapshot(out) == before
    assert staging_leftovers(tmp_path) == []


def test_a_repository_of_another_model_is_refused(cpu_repository: Path, tiny_viclip_other: TinyModel,
                                                  tmp_path: Path) -> None:
    out = copy_of(cpu_repository, tmp_path)
    before = snapshot(out)
    config = export_config(tiny_viclip_other, out, max_batch=MAX_BATCH)
    with pytest.raises(ExportError, match=r"holds another model's repository .*embed_dim"):
        export_model(config)
    assert snapshot(out) == before


def test_a_different_serving_configuration_is_refused(cpu_repository: Path, tiny_viclip: TinyModel,
                                                      tmp_path: Path) -> None:
    out = copy_of(cpu_repository, tmp_path)
    before = snapshot(out)
    config = export_config(tiny_viclip, out, max_batch=MAX_BATCH * 2)
    with pytest.raises(ExportError, match=r"serving configuration \(.*max_batch_size"):
        export_model(config)
    assert snapshot(out) == before


def test_a_model_directory_vidsearch_did_not_write_is_refused(tiny_viclip: TinyModel, tmp_path: Path) -> None:
    foreign = tmp_path / "repo" / "viclip_text"
    (foreign / "1").mkdir(parents=True)
    (foreign / "config.pbtxt").write_text('name: "viclip_text"\nbackend: "python"\n')
    before = snapshot(tmp_path / "repo")
    with pytest.raises(ExportError, match="did not write"):
        export_model(ExportConfig(str(tiny_viclip.preset), tiny_viclip.checkpoint, tmp_path / "repo"))
    assert snapshot(tmp_path / "repo") == before


def test_a_checkpoint_of_another_family_is_refused(tiny_viclip: TinyModel, tiny_videomae: TinyModel,
                                                   tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="ViCLIP"):
        export_model(ExportConfig(str(tiny_viclip.preset), tiny_videomae.checkpoint, tmp_path / "repo"))
    assert not (tmp_path / "repo").exists()


def test_a_checkpoint_of_another_size_is_refused(tiny_viclip: TinyModel, tiny_viclip_other: TinyModel,
                                                 tmp_path: Path) -> None:
    wrong = ExportConfig(str(tiny_viclip.preset), tiny_viclip_other.checkpoint, tmp_path / "repo")
    with pytest.raises(CheckpointError, match=r"not a tiny-viclip checkpoint: .*embed_dim 16 \(preset: 32\)"):
        export_model(wrong)
    assert not (tmp_path / "repo").exists()


def test_a_pretraining_preset_is_refused(tiny_viclip: TinyModel, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="videomae_v2_pretrain"):
        export_model(ExportConfig("videomae-v2-s-pretrain", tiny_viclip.checkpoint, tmp_path / "repo"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--checkpoint", "{tmp}/missing.pth"], "missing.pth: no such checkpoint file"),
        (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
        (["--precision", "fp16"], "--target cpu serves fp32 only"),
    ],
)
def test_bad_command_lines_fail_with_the_reason_and_write_nothing(
    tiny_viclip: TinyModel, tmp_path: Path, arguments: list[str], message: str
) -> None:
    base = {"--model": str(tiny_viclip.preset), "--checkpoint": str(tiny_viclip.checkpoint),
            "--out": str(tmp_path / "repo")}
    given = dict(zip(arguments[::2], (a.format(tmp=tmp_path) for a in arguments[1::2]), strict=True))
    code, output = run_cli("export", *(x for pair in {**base, **given}.items() for x in pair))
    assert code == 1
    assert message in output
    assert not (tmp_path / "repo").exists()


def test_a_failed_parity_check_leaves_nothing_behind(
    cpu_repository: Path, tiny_viclip: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(parity.BOUNDS, "fp32", (0.0, 1.0))  # nothing passes a zero bound
    out = copy_of(cpu_repository, tmp_path)
    before = snapshot(out)
    for target in (out, tmp_path / "new"):
        with pytest.raises(ParityError, match="viclip_text: the exported model does not match its reference"):
            export_model(ExportConfig(str(tiny_viclip.preset), tiny_viclip.checkpoint, target,
                                      max_batch=MAX_BATCH, cpu_threads=1))
    assert snapshot(out) == before
    assert not (tmp_path / "new").exists()
    assert staging_leftovers(tmp_path) == []


def test_videomae_classifier_exports_as_one_model(tiny_videomae: TinyModel, tmp_path: Path) -> None:
    result = export_model(ExportConfig(str(tiny_videomae.preset), tiny_videomae.checkpoint, tmp_path / "repo",
                                       max_batch=2))
    assert [m.name for m in result.models] == ["videomae_v2"]
    data = manifest(tmp_path / "repo", "videomae_v2")
    assert [o["name"] for o in data["outputs"]] == ["LOGITS", "FEATURES"]  # type: ignore[attr-defined]
    assert data["inputs"] == [{"name": "VIDEO", "dtype": "float32", "shape": [-1, 3, 4, 32, 32]}]
    assert data["preprocess"]["layout"] == "CTHW"  # type: ignore[index]
    assert data["preprocess"]["sampling"]["frames"] == 4  # type: ignore[index]
    assert data["normalized_output"] is None
    assert all(f.passed for m in result.models for f in m.parity)


def test_int8_without_tensorrt_fails_before_writing(tiny_viclip: TinyModel, tmp_path: Path) -> None:
    video = tmp_path / "calibration.mp4"
    video.write_bytes(b"\0")
    config = ExportConfig(str(tiny_viclip.preset), tiny_viclip.checkpoint, tmp_path / "repo", target="gpu",
                          precision="int8", calibration_videos=(video,))
    with pytest.raises(ExportError, match="int8 needs TensorRT to calibrate"):
        export_model(config)
    assert not (tmp_path / "repo").exists()


def test_without_dali_the_gpu_target_fails_before_writing(
    tiny_viclip: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what an environment without DALI looks like
    with pytest.raises(MissingDependencyError, match="DALI"):
        export_model(ExportConfig(str(tiny_viclip.preset), tiny_viclip.checkpoint, tmp_path / "repo",
                                  target="gpu"))
    assert not (tmp_path / "repo").exists()
