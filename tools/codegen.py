"""Regenerates the Python stubs of `search.proto` with grpcio-tools, reproducibly.

    python -m tools.codegen           # rewrite the committed stubs (from the repository root)
    python -m tools.codegen --check   # exit 1 if they differ from a fresh generation

A development tool, not part of the installed package: the stubs are committed, so neither users nor
the server need grpcio-tools.

The proto is compiled with the directory holding the `vidsearch` package as its include root, so the
generated modules import each other by their real package path (no post-editing of the output).
grpcio-tools is pinned in pyproject.toml: another version writes other version stamps into the stubs.
"""

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

from vidsearch.errors import MissingDependencyError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("vidsearch/serving/proto/vidsearch/v1/search.proto")
GENERATED = ("search_pb2.py", "search_pb2.pyi", "search_pb2_grpc.py")


def generate(out: Path) -> dict[str, bytes]:
    """Compile the proto into `out`; returns the generated files by name."""
    try:
        from grpc_tools import protoc
    except ImportError as err:
        raise MissingDependencyError("regenerating the stubs needs grpcio-tools (the test extra)") from err
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PACKAGE_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        str(PROTO),
    ]
    if protoc.main(args) != 0:
        raise MissingDependencyError(f"protoc failed on {PROTO}")
    folder = out / PROTO.parent
    return {name: (folder / name).read_bytes() for name in GENERATED}


def _compare(write: bool) -> list[str]:
    """Names of the committed stubs that differ from a fresh generation; rewrites them if `write`."""
    committed = PACKAGE_ROOT / PROTO.parent
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    changed = [name for name, data in fresh.items()
               if not (committed / name).is_file() or (committed / name).read_bytes() != data]
    if write:
        for name in changed:
            (committed / name).write_bytes(fresh[name])
    return changed


def stale_files() -> list[str]:
    """The committed stubs that differ from (or are missing against) a fresh generation."""
    return _compare(write=False)


def write() -> list[str]:
    """Regenerate the committed stubs; returns the names of the files that changed."""
    return _compare(write=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs (exit status 1)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        sys.stderr.write(f"stale: {', '.join(stale)}\n" if stale else "stubs are up to date\n")
        return 1 if stale else 0
    changed = write()
    sys.stderr.write(f"regenerated: {', '.join(changed)}\n" if changed else "stubs were up to date\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
