"""Make the offline GPU bundle: every wheel the GPU path needs beyond what a CUDA PyTorch machine has.

GPU servers are often offline, so the project carries its GPU dependencies as one folder of wheels that
installs with no package index and no dependency resolution (`tools/gpu/check.py` installs it):

    python tools/gpu/bundle.py lock            # resolve once for the target, pin with hashes (committed)
    python tools/gpu/bundle.py build           # download the pinned wheels + build the project's wheel
    python tools/gpu/bundle.py build --parts dist/gpu-parts   # also split into folders of <= 45 MB

`make gpu-bundle` runs `build`. The target is a Python version and a CUDA major version (default 3.12
and 13, the lent H200 machines); the lock file of a target is `requirements-py<PY>-cu<CUDA>.lock`
beside this script. The machine's own PyTorch is never replaced: torch is not in the bundle, nor are
the CUDA libraries its environment already holds (cuBLAS, cuRAND, cuSOLVER, cuSPARSE, NVRTC, the CUDA
runtime, nvJitLink, cuFile, NCCL): `check.py` puts those folders on LD_LIBRARY_PATH, as FAISS's cuVS
build needs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from check import sha256  # the check's own hash: what the bundle records is what the check verifies

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MANIFEST = "bundle.json"
PART_BYTES = 45 * 1000 * 1000

# What the GPU path needs on top of the project's own dependencies (torch excluded: the machine's).
GPU_PACKAGES = {13: ["nvidia-dali-cuda130", "pynvvideocodec"], 12: ["nvidia-dali-cuda120", "pynvvideocodec"]}
# FAISS on the GPU, pinned as a set known to work together and taken without their dependencies: their
# CUDA requirements (cuda-toolkit 13.x pins) cannot be resolved beside DALI's, and the CUDA libraries come
# from the machine's PyTorch anyway. faiss 1.15.1 with cuVS 26.06 ran on the lent H200.
FAISS_PACKAGES = {
    13: ["faiss-gpu-cuvs==1.15.1", "libcuvs-cu13==26.6.0", "libraft-cu13==26.6.0", "librmm-cu13==26.6.0",
         "rapids-logger==0.2.*"],
    12: ["faiss-gpu-cu12==1.14.1.post1"],
}
TEST_PACKAGES = ["pytest", "pytest-timeout"]
# Provided by a CUDA PyTorch environment: taking them from the bundle would shadow the machine's own.
MACHINE_PROVIDES = re.compile(
    r"^(torch|triton|sympy|mpmath|networkx|jinja2|markupsafe|fsspec|filelock|cuda-toolkit|cuda-pathfinder"
    r"|nvidia-(cublas|curand|cusolver|cusparse|cusparselt|cuda-nvrtc|cuda-runtime|cuda-cupti|nvjitlink"
    r"|cufile|nccl|nvtx|cudnn|cufft)(-cu\d+)?)$"
)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_12_x86_64",
             "manylinux2010_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def lock_path(python: str, cuda: int) -> Path:
    return HERE / f"requirements-py{python.replace('.', '')}-cu{cuda}.lock"


def _target_args(python: str) -> list[str]:
    abi = f"cp{python.replace('.', '')}"
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", abi]
    for platform in PLATFORMS:
        args += ["--platform", platform]
    return args


def _project_requirements(extra: str = "demo") -> list[str]:
    """The project's own runtime dependencies with an extra (`demo` reaches server, export and client;
    its own `vidsearch[…]` references followed), read from pyproject.toml, without torch and faiss-cpu
    (the GPU build of FAISS is the same module)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found, wanted, seen = list(project["dependencies"]), [extra], set()
    while wanted:
        name = wanted.pop()
        seen.add(name)
        for req in project["optional-dependencies"][name]:
            inner = re.fullmatch(r"vidsearch\[([a-z,]+)\]", req)
            if inner:
                wanted += [e for e in inner.group(1).split(",") if e not in seen]
            elif req not in found:
                found.append(req)
    return [r for r in found if not re.match(r"^(torch|faiss-cpu)\b", r)]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _resolve(python: str, requirements: list[str], *options: str) -> list[dict]:
    """What pip would install for the target (its `--report`), without installing anything."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                        "--target", str(Path(tmp) / "target"), "--report", str(report), *options,
                        *_target_args(python), *requirements], check=True)
        return list(json.loads(report.read_text())["install"])


def lock(python: str, cuda: int) -> Path:
    """Resolve the bundle for the target once and pin every wheel by version and SHA-256."""
    resolved = _resolve(python, _project_requirements() + GPU_PACKAGES[cuda] + TEST_PACKAGES)
    resolved += _resolve(python, FAISS_PACKAGES[cuda], "--no-deps")
    lines = [f"# The GPU bundle for Python {python}, CUDA {cuda}: written by `python tools/gpu/bundle.py lock"
             f" --python {python} --cuda {cuda}`.",
             "# Everything is pinned by hash; the target resolves nothing."]
    for item in sorted(resolved, key=lambda i: _normalise(i["metadata"]["name"])):
        name = _normalise(item["metadata"]["name"])
        if MACHINE_PROVIDES.match(name):
            continue
        sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
        lines.append(f"{name}=={item['metadata']['version']} --hash=sha256:{sha}")
    out = lock_path(python, cuda)
    out.write_text("\n".join(lines) + "\n")
    return out


def build(python: str, cuda: int, out: Path, lock_file: Path, find_links: Path | None) -> Path:
    """Download the pinned wheels and build the project's wheel into `out`, with a manifest of both."""
    out.mkdir(parents=True, exist_ok=True)
    source = ["--no-index", "--find-links", str(find_links)] if find_links else []
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                    "--dest", str(out), *source, *_target_args(python), "-r", str(lock_file)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True)
    wheels = sorted(p for p in out.glob("*.whl"))
    manifest = {"python": python, "cuda": cuda, "lock": lock_file.name,
                "files": {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size} for p in wheels}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def split(bundle: Path, parts: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Cut the bundle into folders of at most `part_bytes` (a device call carries one folder at a time).

    Wheels are split across folders whole where they fit, in byte pieces `NAME.partNN` where they do not;
    `check.py --parts` joins them again.
    """
    folders: list[Path] = []
    size = part_bytes

    def room(needed: int) -> Path:
        nonlocal size
        if size + needed > part_bytes:
            folders.append(parts / f"part-{len(folders):02d}")
            folders[-1].mkdir(parents=True, exist_ok=True)
            size = 0
        size += needed
        return folders[-1]

    for path in sorted(bundle.iterdir()):
        data = path.read_bytes()
        if len(data) <= part_bytes:
            (room(len(data)) / path.name).write_bytes(data)
            continue
        for number, start in enumerate(range(0, len(data), part_bytes)):
            piece = data[start:start + part_bytes]
            (room(len(piece)) / f"{path.name}.part{number:02d}").write_bytes(piece)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["lock", "build"])
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--cuda", type=int, default=13, choices=sorted(GPU_PACKAGES))
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "gpu-bundle")
    parser.add_argument("--lock-file", type=Path, help="default: the committed lock of the target")
    parser.add_argument("--find-links", type=Path, help="take the wheels from this folder, not the index")
    parser.add_argument("--parts", type=Path, help="also split the bundle into folders of <= 45 MB here")
    args = parser.parse_args()
    if args.command == "lock":
        print(lock(args.python, args.cuda))
        return
    lock_file = args.lock_file or lock_path(args.python, args.cuda)
    if not lock_file.is_file():
        sys.exit(f"no lock file {lock_file}: run `python tools/gpu/bundle.py lock --python {args.python} "
                 f"--cuda {args.cuda}` first")
    bundle = build(args.python, args.cuda, args.out, lock_file, args.find_links)
    total = sum(p.stat().st_size for p in bundle.glob("*.whl"))
    print(f"{bundle}: {len(list(bundle.glob('*.whl')))} wheels, {total / 1e6:.0f} MB")
    if args.parts:
        folders = split(bundle, args.parts)
        print(f"{args.parts}: {len(folders)} folders of <= {PART_BYTES / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
