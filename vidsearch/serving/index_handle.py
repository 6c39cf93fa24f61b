"""The index the server answers from: opened (or created empty) for the runtime's model, saved after changes.

The index must hold vectors of the model the runtime serves: same name and dimension, and the same
weights when the index records a checksum; anything else is refused at start. Its version, reported
with every search, is the name of the snapshot on disk, with `+N` for changes not saved yet.
"""

import logging
import threading
from pathlib import Path

from vidsearch.errors import IndexMismatchError
from vidsearch.index import FaissClipIndex, IndexConfig, OpenOptions
from vidsearch.index.persistence import CURRENT, current_snapshot
from vidsearch.runtime.repository import RepositoryModels

log = logging.getLogger(__name__)

NEW_INDEX_FACTORY = "Flat"  # exact, and needs no training: what an index filled by Ingest starts as


class IndexHandle:
    def __init__(self, index: FaissClipIndex, directory: Path, snapshot: str, persist: bool) -> None:
        self.index = index
        self._directory = directory
        self._snapshot = snapshot
        self._unsaved = 0
        self._persist = persist
        self._lock = threading.Lock()

    @classmethod
    def open(cls, directory: Path, models: RepositoryModels, *, create: bool, persist: bool) -> "IndexHandle":
        if not (directory / CURRENT).is_file():
            if not create:
                raise IndexMismatchError(f"{directory} holds no index (build one, or allow creating it)")
            name, checksum = models.model_name, models.model_checksum
            config = IndexConfig(models.dim, name, checksum, factory=NEW_INDEX_FACTORY)
            log.info("starting an empty %s index at %s for %s", NEW_INDEX_FACTORY, directory, name)
            return cls(FaissClipIndex.create(config), directory, "new", persist)
        options = OpenOptions(expect_model=models.model_name, expect_dim=models.dim)
        index = FaissClipIndex.open(directory, options)
        recorded = index.stats().model_checksum
        if recorded and recorded != models.model_checksum:
            index.close()
            raise IndexMismatchError(f"{directory} was built with weights {recorded}; the runtime serves "
                                     f"{models.model_checksum}: rebuild the index with this model")
        return cls(index, directory, current_snapshot(directory).name, persist)

    @property
    def version(self) -> str:
        with self._lock:
            return self._snapshot if not self._unsaved else f"{self._snapshot}+{self._unsaved}"

    def changed(self) -> str:
        """Record a change (saving a snapshot when the server persists changes); returns the new version."""
        with self._lock:
            if self._persist:
                self._snapshot = self.index.save(self._directory).name
                self._unsaved = 0
            else:
                self._unsaved += 1
            return self._snapshot if not self._unsaved else f"{self._snapshot}+{self._unsaved}"

    def close(self) -> None:
        self.index.close()
