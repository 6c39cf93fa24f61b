"""The index the server answers from: the `ClipIndex` at the configured location, for the served model.

Serving knows no backend: `vidsearch.index.opening` picks it from the location, and the index itself
reports its version (with every search) and keeps its changes durable.
"""

from pathlib import Path

from vidsearch.index import ClipIndex, GpuPolicy
from vidsearch.index.milvus import MilvusIndexSpec, MilvusTarget
from vidsearch.index.opening import ModelIdentity, open_index
from vidsearch.runtime.facts import RuntimeFacts


def open_served_index(location: Path | MilvusTarget, models: RuntimeFacts, *, create: bool, persist: bool,
                      device: str = "auto", verify_max_bytes: int | None = None,
                      milvus_index: MilvusIndexSpec | None = None) -> ClipIndex:
    """Open (or create) the index for the runtime's model (a directory, or a Milvus collection);
    `persist` makes each change durable; `device` (cpu, gpu, auto) is where FAISS runs; a snapshot above
    `verify_max_bytes` is checked in the background; a Milvus collection created gets `milvus_index`."""
    model = ModelIdentity(models.model_name, models.dim, models.model_checksum)
    return open_index(location, model, create=create, durable=persist, gpu=GpuPolicy.for_device(device),
                      verify_max_bytes=verify_max_bytes, milvus_index=milvus_index)
