"""Run the GPU check on a GPU machine from the offline bundle: install, `pytest -m gpu`, the GPU report.

    python tools/gpu/check.py --bundle dist/gpu-bundle          # or: make gpu-check BUNDLE=dist/gpu-bundle
    python tools/gpu/check.py --parts /tmp/parts                # join a bundle carried in <= 45 MB folders

Needs only the standard library and the machine's own Python with its CUDA PyTorch. The bundle's wheels
are checked against its manifest (SHA-256), then installed with no index and no dependency resolution
into a target folder (default /tmp/vidsearch-gpu-site) that is put in front of the machine's packages
for the checks only: the machine's PyTorch is never replaced. The CUDA libraries of that PyTorch go on
LD_LIBRARY_PATH (FAISS's cuVS build needs them). Writes one JSON report (pytest counts + the GPU report)
and prints its table; exits non-zero if a GPU test failed or a step could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "bundle.json"
STAMP = ".vidsearch-bundle"
PIECE = re.compile(r"^(?P<name>.+)\.part(?P<number>\d+)$")
BUDGET_S = 450.0  # the whole check: under the 8 minutes of issue 14, with room for a slow start
TESTS_S = 150.0  # pytest -m gpu at most; the report gets the rest
MARGIN_S = 15.0  # the report's table and JSON after its last section


class BundleError(Exception):
    """The bundle is incomplete or damaged: the message names the file."""


def join_parts(parts: Path, bundle: Path) -> Path:
    """Reassemble a bundle that `bundle.py build --parts` cut into folders."""
    bundle.mkdir(parents=True, exist_ok=True)
    pieces: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(parts.glob("part-*/*")):
        match = PIECE.match(path.name)
        if match:
            pieces.setdefault(match["name"], []).append((int(match["number"]), path))
        else:
            shutil.copyfile(path, bundle / path.name)
    for name, found in pieces.items():
        with open(bundle / name, "wb") as out:
            for _, piece in sorted(found):
                out.write(piece.read_bytes())
    return bundle


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(bundle: Path) -> dict:
    """The bundle's manifest, after checking that every wheel it lists is there, whole, and nothing else."""
    try:
        manifest = json.loads((bundle / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle / MANIFEST}: cannot be read ({exc})") from None
    present = {p.name for p in bundle.glob("*.whl")}
    for name, expected in manifest["files"].items():
        if name not in present:
            raise BundleError(f"{bundle / name}: listed in {MANIFEST} but missing")
        if sha256(bundle / name) != expected["sha256"]:
            raise BundleError(f"{bundle / name}: SHA-256 differs from {MANIFEST} (damaged or replaced)")
    extra = present - set(manifest["files"])
    if extra:
        raise BundleError(f"{bundle}: wheels not in {MANIFEST}: {', '.join(sorted(extra))}")
    return manifest


def install(bundle: Path, target: Path, manifest: dict) -> bool:
    """Install every wheel into `target` (no index, no resolution); False when it already holds them."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    if (target / STAMP).is_file() and (target / STAMP).read_text() == digest:
        return False
    if target.exists():
        shutil.rmtree(target)
    wheels = [str(bundle / name) for name in sorted(manifest["files"])]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--disable-pip-version-check", "--target", str(target), *wheels], check=True)
    (target / STAMP).write_text(digest)
    return True


def check_environment(target: Path) -> dict[str, str]:
    """The environment of the checks: the bundle first on the path, the machine's CUDA libraries found."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    libraries = []
    try:
        import torch  # the machine's own

        site = Path(torch.__file__).parents[1]
        libraries = sorted(str(p) for p in site.glob("nvidia/*/lib") if p.is_dir())
        libraries += sorted(str(p) for p in site.glob("nvidia/cu*/lib") if p.is_dir())
    except ImportError:
        pass
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dict.fromkeys([*libraries, env.get("LD_LIBRARY_PATH", "")]))
    return env


def gpu_test_files() -> list[str]:
    """The test modules with GPU tests (collecting the whole suite would need every test dependency)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                  if "pytest.mark.gpu" in p.read_text())


def run_tests(env: dict[str, str], report: Path, timeout_s: float | None) -> dict:
    junit = report / "pytest-gpu.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *gpu_test_files()]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, timeout=timeout_s, capture_output=True, text=True)
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:  # reported as a failure, and the report still runs
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        status, output = 124, f"pytest -m gpu stopped after {timeout_s:.0f} s\n{partial}"
    counts = {"exit_status": status, "seconds": round(time.perf_counter() - started, 1),
              "output_tail": output[-3000:]}
    if junit.is_file():
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] = int(suite.get(key, 0))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bundle", type=Path)
    source.add_argument("--parts", type=Path, help="folders part-NN/ written by `bundle.py build --parts`")
    parser.add_argument("--target", type=Path, default=Path("/tmp/vidsearch-gpu-site"))
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "gpu-check")
    parser.add_argument("--install-only", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="run the GPU report at tiny sizes")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help="seconds for the whole check (install, tests, report); the report gets what "
                        "the tests leave and skips or stops sections to fit (docs/gpu.md)")
    parser.add_argument("--full", action="store_true", help="no budget: every report section, however long")
    args = parser.parse_args()
    started = time.monotonic()
    bundle = join_parts(args.parts, args.target.with_name(args.target.name + "-bundle")) if args.parts \
        else args.bundle
    try:
        manifest = verify(bundle)
    except BundleError as exc:
        sys.exit(f"gpu-check: {exc}")
    fresh = install(bundle, args.target, manifest)
    done = "installed into" if fresh else "already in"
    print(f"gpu-check: {len(manifest['files'])} wheels {done} {args.target}")
    if args.install_only:
        return
    args.report.mkdir(parents=True, exist_ok=True)
    env = check_environment(args.target)
    tests = run_tests(env, args.report, timeout_s=None if args.full else TESTS_S)
    gpu_json = args.report / "gpu.json"
    gpu_json.unlink(missing_ok=True)
    bench = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", str(gpu_json)]
    if args.full:
        bench.append("--full")
    else:  # what is left, less the time to write the report; gpu.py stops its own sections to fit
        left = args.budget_s - (time.monotonic() - started) - MARGIN_S
        bench += ["--budget-s", f"{max(left, 0.0):.0f}"]
    subprocess.run(bench + (["--smoke"] if args.smoke else []), cwd=ROOT, env=env, check=False)
    report = {"bundle": {k: manifest[k] for k in ("python", "cuda", "lock")}, "pytest_gpu": tests,
              "gpu_report": json.loads(gpu_json.read_text()) if gpu_json.is_file() else None}
    (args.report / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\npytest -m gpu: {tests.get('tests', '?')} tests, {tests.get('failures', '?')} failed, "
          f"{tests.get('errors', '?')} errors, {tests.get('skipped', '?')} skipped "
          f"(exit {tests['exit_status']}); report: {args.report / 'gpu-check.json'}")
    if tests["exit_status"] != 0 or report["gpu_report"] is None:
        sys.exit(1)


if __name__ == "__main__":
    main()
