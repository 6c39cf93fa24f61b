"""The GPU check kit (tools/gpu): the pinned bundle, its offline install, and the GPU report's plumbing.

The real bundle (~700 MB) is not downloaded here: the build and install run on a bundle of a hand-made
wheel and the project's own wheel, through the same commands.
"""

import base64
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU_TOOLS = ROOT / "tools" / "gpu"
sys.path.insert(0, str(GPU_TOOLS))
import bundle  # noqa: E402
import check  # noqa: E402

LOCK_LINE = re.compile(r"^(?P<name>[a-z0-9-]+)==(?P<version>\S+) --hash=sha256:[0-9a-f]{64}$")


def test_the_lock_pins_the_gpu_stack_by_hash_and_leaves_the_machine_torch_alone() -> None:
    text = bundle.lock_path("3.12", 13).read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    pins = {}
    for line in lines:
        match = LOCK_LINE.match(line)
        assert match, f"not pinned by version and hash: {line}"
        pins[match["name"]] = match["version"]
    needed = {"nvidia-dali-cuda130", "faiss-gpu-cuvs", "libcuvs-cu13", "libraft-cu13", "librmm-cu13",
              "rapids-logger", "av", "pynvvideocodec", "pytest", "grpcio", "onnxruntime", "pyarrow"}
    assert needed <= set(pins), needed - set(pins)
    assert pins["faiss-gpu-cuvs"] == "1.15.1"
    assert not {"torch", "faiss-cpu", "nvidia-cublas", "nvidia-cuda-runtime"} & set(pins)


def _wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel holding module `name` (what pip needs: METADATA, WHEEL, RECORD)."""
    dist = f"{name}-{version}.dist-info"
    wheel = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = {f"{name}.py": b"ANSWER = 42\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": wheel}

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{path},sha256={digest(data)},{len(data)}\n" for path, data in files.items())
    record += f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in [*files.items(), (f"{dist}/RECORD", record.encode())]:
            archive.writestr(member, data)
    return path


@pytest.mark.slow
def test_a_bundle_builds_installs_offline_and_refuses_a_damaged_wheel(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    made = _wheel(wheelhouse, "gpu_kit_probe", "1.0")
    lock = tmp_path / "test.lock"
    lock.write_text(f"gpu-kit-probe==1.0 --hash=sha256:{bundle.sha256(made)}\n")
    out = bundle.build("3.11", 13, tmp_path / "bundle", lock, find_links=wheelhouse)
    manifest = check.verify(out)
    assert sorted(manifest["files"]) == ["gpu_kit_probe-1.0-py3-none-any.whl",
                                         next(p.name for p in out.glob("vidsearch-*.whl"))]

    parts = tmp_path / "parts"
    folders = bundle.split(out, parts, part_bytes=1_000_000)  # the project wheel (~16 MB) is cut in pieces
    assert len(folders) > 2
    assert all(sum(p.stat().st_size for p in f.iterdir()) <= 1_000_000 for f in folders)
    joined = check.join_parts(parts, tmp_path / "joined")
    assert check.verify(joined) == manifest

    target = tmp_path / "site"
    tool = [sys.executable, str(GPU_TOOLS / "check.py"), "--target", str(target), "--install-only"]
    first = subprocess.run([*tool, "--parts", str(parts)], capture_output=True, text=True, check=True)
    assert "installed into" in first.stdout
    again = subprocess.run([*tool, "--bundle", str(joined)], capture_output=True, text=True, check=True)
    assert "already in" in again.stdout
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = "import gpu_kit_probe, vidsearch.formats.atomic as a; print(gpu_kit_probe.ANSWER, a.__file__)"
    shown = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert shown[0] == "42"
    assert shown[1].startswith(str(target))  # the bundle's copy, not the checkout

    damaged = joined / "gpu_kit_probe-1.0-py3-none-any.whl"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    refused = subprocess.run([*tool, "--bundle", str(joined)], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "gpu_kit_probe-1.0-py3-none-any.whl: SHA-256 differs" in refused.stderr


def _report(tmp_path: Path, *sections: str) -> dict:
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out),
                    "--sections", *sections], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return dict(json.loads(out.read_text())["sections"])


@pytest.mark.slow
def test_the_gpu_report_compares_decoders_for_real_and_marks_gpu_sections_skipped(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the report on a machine without a GPU")
    report = _report(tmp_path, "decode_parity", "models", "faiss")
    codecs = report["decode_parity"]["codecs"]
    assert codecs["vp9"]["status"] == "ok"  # DALI's CPU decoder against PyAV, through the report's own code
    assert codecs["vp9"]["mean_abs_grey"] <= 1.0
    assert codecs["vp9"]["frames_out_of_order"] == 0
    assert "only on a GPU" in codecs["h264"]["error"]
    assert report["models"] == {"status": "skipped", "reason": "no CUDA GPU"}
    assert report["faiss"]["status"] == "skipped"


@pytest.mark.slow
def test_the_decode_sections_run_on_dalis_cpu_decoder_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the report on a machine without a GPU")
    report = _report(tmp_path, "decode_batch", "embed_job")
    batch, job = report["decode_batch"], report["embed_job"]
    assert (batch["status"], batch["device"]) == ("ok", "cpu")
    assert (job["status"], job["decoder"]) == ("ok", "dali-cpu")
    assert batch["clips_per_s_1_sessions"] > 0
    assert batch["ratio_vs_baseline"] == batch["video_frames_per_s_best"] / batch["baseline_frames_per_s"]
    assert job["clips"] == 4 * 2  # four 2-s videos in 1-s clips
    assert 0 < job["job_vs_bound"] == job["job_clips_per_s"] / min(job["decode_only_clips_per_s"],
                                                                   job["model_only_clips_per_s"])


def test_the_bundle_takes_the_runtime_dependencies_of_the_extras_not_only_the_base_install() -> None:
    names = {re.split(r"[<>=\[;]", r)[0] for r in bundle._project_requirements()}
    assert {"av", "grpcio", "onnxruntime", "onnx", "pyarrow", "pydantic", "typer"} <= names
    assert not names & {"torch", "faiss-cpu", "vidsearch"}


def test_the_gpu_report_marks_the_torch_runtime_sections_skipped_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the report on a machine without a GPU")
    report = _report(tmp_path, "torch_runtime", "torch_parity", "training")
    for section in ("torch_runtime", "torch_parity", "training"):
        assert report[section] == {"status": "skipped", "reason": "no CUDA GPU"}


def _gpu_report_module() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_report", ROOT / "benchmarks" / "gpu.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_report"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_report_skips_for_budget_stops_an_overrun_and_keeps_its_priority_order(tmp_path: Path) -> None:
    gpu = _gpu_report_module()
    plans = [gpu.Plan("quick", 0.5, needs_gpu=False), gpu.Plan("hangs", 0.5, needs_gpu=False),
             gpu.Plan("too_big", 600, needs_gpu=False), gpu.Plan("small", 0.5, needs_gpu=False),
             gpu.Plan("on_gpu", 0.5)]
    bodies = {"quick": "json.dump({'status': 'ok', 'answer': 42}, open(sys.argv[1], 'w'))",
              "hangs": "import time; time.sleep(300)",
              "small": "json.dump({'status': 'ok'}, open(sys.argv[1], 'w'))"}

    def command(plan: Any, result: Path) -> list[str]:
        return [sys.executable, "-c", f"import json, sys; {bodies[plan.name]}", str(result)]

    gpu.section_deadline = lambda estimate_s, left_s: min(left_s, 3.0)  # tiny deadlines for tiny sections
    started = time.monotonic()
    report = gpu.run_sections(plans, 40.0, command, gpu=False)
    assert time.monotonic() - started < 20  # the hanging section was stopped at its deadline
    assert list(report) == ["quick", "hangs", "too_big", "small", "on_gpu"]
    assert report["quick"]["status"] == "ok"
    assert report["quick"]["answer"] == 42
    assert report["hangs"]["status"] == "stopped"
    assert report["hangs"]["reason"] == "ran over its deadline of 3 s"
    assert report["too_big"]["status"] == "skipped"
    assert report["too_big"]["reason"] == "time budget"
    assert report["too_big"]["left_s"] < 40
    assert report["small"]["status"] == "ok"  # a later section that fits still runs
    assert report["on_gpu"] == {"status": "skipped", "reason": "no CUDA GPU"}


def test_a_dead_section_is_an_error_naming_its_exit_and_full_runs_have_no_deadline(tmp_path: Path) -> None:
    gpu = _gpu_report_module()

    def command(plan: Any, result: Path) -> list[str]:
        return [sys.executable, "-c", "import sys; print('out of memory'); sys.exit(3)"]

    report = gpu.run_sections([gpu.Plan("dies", 600, needs_gpu=False)], None, command, gpu=False)
    assert report["dies"]["status"] == "error"  # no budget (--full): a 600-s estimate still runs
    assert "exited 3" in report["dies"]["error"]
    assert "out of memory" in report["dies"]["error"]
    assert "deadline_s" not in report["dies"]


def test_the_report_plans_every_section_once_with_the_targets_first() -> None:
    gpu = _gpu_report_module()
    names = [plan.name for plan in gpu.PLANS]
    makers = gpu.section_makers(gpu.SMOKE, "cpu", Path("/tmp/unused.json"), Path(tempfile.mkdtemp()))
    assert sorted(names) == sorted(makers)
    assert names.index("decode_parity") < names.index("torch_runtime") < names.index("faiss") \
        < names.index("embed_job") < names.index("torch_parity") < names.index("training") \
        < names.index("search_1m") < names.index("search_10m") == len(names) - 1
    targets = names[: names.index("faiss") + 1]  # the issues' targets fit in the default budget
    assert sum(plan.estimate_s for plan in gpu.PLANS if plan.name in targets) < gpu.DEFAULT_BUDGET_S


def test_gpu_tests_that_overrun_their_share_are_a_failure_and_the_check_goes_on(tmp_path: Path) -> None:
    counts = check.run_tests(dict(os.environ), tmp_path, timeout_s=0.2)  # pytest cannot even start in 0.2 s
    assert counts["exit_status"] == 124
    assert "pytest -m gpu stopped after 0 s" in counts["output_tail"]
    assert check.TESTS_S + check.MARGIN_S < check.BUDGET_S < 8 * 60  # issue 14: the check fits 8 minutes
