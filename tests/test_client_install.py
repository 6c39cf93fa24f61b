"""`vidsearch[client]` is enough for the client and `vidsearch search`: no torch, FAISS, PyAV or ONNX.

A fresh virtualenv gets exactly what the installed package's metadata says the `client` extra needs
(followed through every dependency's own requirements), linked file by file from this environment, so
the check needs no network and takes a second or two; then the client is imported and the command run.
"""

import re
import subprocess
import sys
import sysconfig
from importlib.metadata import Distribution, distribution
from pathlib import Path

from packaging.requirements import Requirement

HEAVY = ("torch", "faiss", "av", "onnx", "onnxruntime", "pyarrow", "scenedetect")
SOURCE = Path(__file__).resolve().parents[1] / "vidsearch"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(extras: set[str]) -> dict[str, Distribution]:
    """The distributions `vidsearch[extras]` needs, by normalised name (vidsearch itself excluded)."""
    found: dict[str, Distribution] = {}
    wanted: list[tuple[str, set[str]]] = [("vidsearch", extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, chosen = wanted.pop()
        if (name, frozenset(chosen)) in seen:
            continue
        seen.add((name, frozenset(chosen)))
        dist = distribution(name)
        if name != "vidsearch":
            found[_normal(name)] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in chosen or {""}):
                wanted.append((req.name, set(req.extras)))
    return found


def _link(dist: Distribution, site: Path) -> None:
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file))).resolve()
        target = site / file
        if file.parts[0] == ".." or not source.is_file() or target.exists():
            continue  # scripts outside site-packages; files two distributions share
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)


def test_the_client_extra_declares_nothing_heavy() -> None:
    names = set(_closure({"client"}))
    assert {"grpcio", "protobuf", "typer"} <= names
    assert not names & {_normal(h) for h in (*HEAVY, "faiss-cpu", "onnxscript", "pillow")}


def test_the_client_and_the_search_command_run_with_only_the_client_extra(tmp_path: Path) -> None:
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    python = env / "bin" / "python"
    purelib = sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)})
    site = Path(purelib)
    for dist in _closure({"client"}).values():
        _link(dist, site)
    (site / "vidsearch").symlink_to(SOURCE)

    probe = ("import importlib.util as u, vidsearch.client; "
             f"print([m for m in {HEAVY!r} if u.find_spec(m)])")
    imported = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]", "the fresh environment must not see the heavy packages"

    command = [str(python), "-c", "from vidsearch.cli import app; app(prog_name='vidsearch')"]
    for args in (["search", "--help"], ["--help"]):
        result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                                env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0, result.stderr
        assert "Usage: vidsearch" in result.stdout
    search = subprocess.run([*command, "search", "cats", "--server", "127.0.0.1:1", "--timeout", "1"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert search.returncode == 1, search.stderr
    assert "error: UNAVAILABLE" in search.stderr
