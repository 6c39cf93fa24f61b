"""The layer rule of docs/architecture.md, checked on the source: each package imports only those below it."""

import ast
from pathlib import Path

import vidsearch

PACKAGE = Path(vidsearch.__file__).parent
BASE = {"errors", "lazy", "formats"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "lazy": set(),
    "formats": {"errors"},
    "models": BASE,
    "video": BASE,
    "index": BASE,
    "runtime": BASE | {"models", "video"},
    "export": BASE | {"models", "video"},
    "training": BASE | {"models", "video"},
    "jobs": BASE | {"video", "runtime", "index"},  # models only through the runtime
    "serving": BASE | {"video", "runtime", "index"},  # models only through the runtime
    "client": BASE | {"serving"},  # the generated stubs
    "demo": BASE | {"models", "video", "index", "runtime", "export", "training", "serving", "client"},
}


def _layer(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The vidsearch packages a module imports (absolute imports; the code base uses no others)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names = [node.module]
        found |= {name.split(".")[1] for name in names if name.startswith("vidsearch.")}
    return found


def test_every_package_imports_only_the_layers_below_it() -> None:
    breaches = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        if layer in ("__init__", "cli") or "proto" in path.parts:
            continue  # the package root and the command line may import everything
        assert layer in ALLOWED, f"{layer} is a new layer: add it to ALLOWED (and to docs/architecture.md)"
        breaches += [f"{path.relative_to(PACKAGE)} imports vidsearch.{other}"
                     for other in _imports(path) - ALLOWED[layer] - {layer}]
    assert breaches == []


def test_the_checker_sees_a_breach(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from vidsearch.training.synthetic import plan\nimport vidsearch.serving.server\n")
    assert _imports(module) == {"training", "serving"}
