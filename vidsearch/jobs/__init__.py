"""Batch embedding jobs (`vidsearch embed`): a video collection → Parquet embedding shards.

`run_embed(EmbedJob(...))` lists the input (`inputs`), skips what the output's ledger settles
(`ledger`), decodes in worker processes or Ray tasks (`decoding`), embeds in batches across videos
through `vidsearch.runtime` (`pipeline`: local processes; `ray_engine`: Ray Data), reassembles whole
videos (`assemble`) and commits them in shards exactly once (`output`, `ledger`). Names are imported
on first use, so a decoding process loads neither ONNX Runtime nor Ray.
"""

from typing import TYPE_CHECKING

from vidsearch.lazy import lazy_exports

_EXPORTS = {
    "EmbedJob": "spec",
    "run_embed": "run",
    "JobSummary": "progress",
    "EXIT_OK": "progress",
    "EXIT_ERROR": "progress",
    "EXIT_WITH_FAILURES": "progress",
    "WorkItem": "inputs",
    "list_inputs": "inputs",
}

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_WITH_FAILURES", "EmbedJob", "JobSummary", "WorkItem", "list_inputs",
           "run_embed"]

if TYPE_CHECKING:
    from vidsearch.jobs.inputs import WorkItem, list_inputs
    from vidsearch.jobs.progress import EXIT_ERROR, EXIT_OK, EXIT_WITH_FAILURES, JobSummary
    from vidsearch.jobs.run import run_embed
    from vidsearch.jobs.spec import EmbedJob


__getattr__ = lazy_exports(__name__, _EXPORTS)
