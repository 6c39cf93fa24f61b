"""The Triton model repository writer: version directories, `vidsearch.json`, all or nothing.

Layout (Triton's): `<out>/<model>/config.pbtxt` and `<out>/<model>/<version>/` holding the model file
and `vidsearch.json`, the self-description of that version (model name, task, tensors, embedding
dimension, preprocessing spec, tokenizer, source checkpoint sha256, parity figures, export time).

Nothing in an existing repository is overwritten or left half-written: every file is first written
into a staging directory beside `<out>` (never inside it, where a polling server would see it), and
only a complete export is moved in, by renames: a new model's whole directory, or a new version
directory of a model that is there already. Conflicts are found before any work is done: a model of
the same name that vidsearch did not write, or that is another model (architecture, target,
precision, serving configuration), or a version that exists.
"""

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from vidsearch.errors import ExportError
from vidsearch.export import triton_config
from vidsearch.formats.model_repository import (
    DESCRIPTION,
    ModelDescription,
    PreprocessSpec,
    read_description,
    write_description,
)

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

log = logging.getLogger(__name__)

CONFIG = "config.pbtxt"


@dataclass(frozen=True)
class ExistingModel:
    """A model directory found in the output repository."""

    name: str
    path: Path
    versions: tuple[int, ...]
    description: ModelDescription | None  # of the latest version, if vidsearch wrote it
    config: "mc.ModelConfig | None"


def read_model(path: Path) -> ExistingModel:
    if not path.is_dir():
        raise ExportError(f"{path} exists and is not a model directory; export into another --out directory")
    versions = tuple(sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit()))
    description = read_description(path / str(versions[-1])) if versions else None
    config_path = path / CONFIG
    config = triton_config.parse(config_path.read_text(), str(config_path)) if config_path.is_file() else None
    return ExistingModel(path.name, path, versions, description, config)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{key}: {old.get(key)!r} there, {new.get(key)!r} now"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _config_fields(config: "mc.ModelConfig") -> dict[str, Any]:
    return {field.name: str(value) for field, value in config.ListFields()}


class StagedRepository:
    """Stages the models of one export and moves them into `out` on `commit`; use as a context
    manager so that the staging directory is always removed."""

    def __init__(self, out: Path, version: int | None) -> None:
        self.out = out
        self.version = version
        self.root: Path | None = None
        self._versions: dict[str, int] = {}
        self._existing: dict[str, ExistingModel] = {}

    def __enter__(self) -> "StagedRepository":
        parent = self.out.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=parent))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _staging(self) -> Path:
        if self.root is None:
            raise ExportError("the staged repository is used outside its `with` block")
        return self.root

    def reserve(self, name: str, identity: dict[str, Any], config: "mc.ModelConfig") -> int:
        """Check that `name` may be written into `out` and choose its version; raises on a conflict."""
        existing = self.out / name
        version = self.version or 1
        if existing.exists():
            found = read_model(existing)
            self._check_same_model(found, identity, config)
            if self.version is None:
                version = max(found.versions, default=0) + 1
            elif self.version in found.versions:
                raise ExportError(f"{existing / str(self.version)} exists; vidsearch never overwrites a "
                                  f"version: pass another --version (next free: {max(found.versions) + 1})")
            self._existing[name] = found
        self._versions[name] = version
        return version

    def _check_same_model(self, found: ExistingModel, identity: dict[str, Any],
                          config: "mc.ModelConfig") -> None:
        where = found.path
        if found.description is None:
            raise ExportError(f"{where} holds a model that vidsearch export did not write (its latest "
                              f"version has no {DESCRIPTION}); export into another --out directory")
        old_identity = dict(found.description.identity)
        if old_identity != identity:
            diff = "; ".join(_differences(old_identity, identity))
            raise ExportError(f"{where} holds another model's repository ({diff}); export into another "
                              "--out directory")
        if found.config != config:
            old = _config_fields(found.config) if found.config else {}
            diff = "; ".join(_differences(old, _config_fields(config)))
            raise ExportError(f"{where}/{CONFIG} differs from this export's serving configuration "
                              f"({diff}); a new version must be served the same way: export into another "
                              "--out directory")

    def version_dir(self, name: str) -> Path:
        """The staged version directory of a reserved model, created on first use."""
        if name not in self._versions:
            raise ExportError(f"model {name} was not reserved before staging")
        path = self._staging() / name / str(self._versions[name])
        path.mkdir(parents=True, exist_ok=True)
        return path

    def finish(self, name: str, config: "mc.ModelConfig", body: dict[str, Any],
               preprocess: PreprocessSpec | None) -> None:
        """Write the model's config.pbtxt and its version's vidsearch.json into the staging area."""
        version_dir = self.version_dir(name)
        (version_dir.parent / CONFIG).write_text(triton_config.to_text(config))
        write_description(version_dir, self._versions[name], body, preprocess)

    def commit(self, order: list[str]) -> list[Path]:
        """Move the staged models into `out`, in `order` (an ensemble after its steps)."""
        staging = self._staging()
        missing = [name for name in order if not (staging / name / CONFIG).is_file()]
        if missing or set(order) != set(self._versions):
            raise ExportError(f"the export is incomplete, nothing was written (unfinished: {missing})")
        if not self.out.exists():
            os.rename(staging, self.out)  # the whole repository appears at once
            self.root = None
            return [self.out / name / str(self._versions[name]) for name in order]
        moves = []
        for name in order:
            if name in self._existing:
                version = str(self._versions[name])
                moves.append((staging / name / version, self.out / name / version))
            else:
                moves.append((staging / name, self.out / name))
        done: list[tuple[Path, Path]] = []
        try:
            for source, target in moves:
                if target.exists():
                    raise ExportError(f"{target} appeared while exporting; nothing was written")
                os.rename(source, target)
                done.append((source, target))
        except (OSError, ExportError) as err:
            for source, target in reversed(done):
                os.rename(target, source)
            if isinstance(err, ExportError):
                raise
            raise ExportError(f"could not move the export into {self.out}: {err}; nothing was written"
                              ) from err
        return [self.out / name / str(self._versions[name]) for name in order]
