"""`run_embed`: one run of a batch embedding job, on either engine, resuming whatever is committed."""

import json
import logging
import time

from vidsearch.errors import ConfigError, JobError
from vidsearch.formats.atomic import write_atomic
from vidsearch.jobs.decoding import DecodeSettings, resolve_decoder
from vidsearch.jobs.inputs import WorkItem, list_inputs
from vidsearch.jobs.ledger import SUMMARY, Ledger
from vidsearch.jobs.output import JobOutput, ShardFormat
from vidsearch.jobs.progress import JobProgress, JobSummary
from vidsearch.jobs.spec import EmbedJob
from vidsearch.runtime import ModelRuntime, RepositoryModels, read_repository

log = logging.getLogger(__name__)


def run_embed(job: EmbedJob) -> JobSummary:
    """Embed every video of `job.input` not yet settled in `job.out`; the summary of this run.

    Bad videos do not raise: they are in the failures file and the summary (exit code 3).
    Raises `JobMismatchError` for an output of another job, `JobError`/`ConfigError` when it cannot run.
    """
    models = read_repository(job.runtime)  # once: the runtime opens on what is read here
    facts = models.facts(job.runtime)
    vision = facts.vision
    if vision is None or vision.preprocess is None:
        raise ConfigError(f"{job.runtime.model_repository} has no video embedding model "
                          f"({job.runtime.vision_model}) with a preprocessing spec: export a ViCLIP first")
    runtime = _server_runtime(job, models)
    ledger = None
    try:
        decoder, dali_device = resolve_decoder(job.decoder, runtime is not None and runtime.decodes_on_server)
        settings = DecodeSettings(vision.preprocess, job.clips, job.scenes, job.read, decoder, dali_device)
        items = list_inputs(job.input)
        started = time.monotonic()
        ledger = Ledger(job.out, job.identity(facts), job.overwrite)
        todo = [item for item in items if item.video_id not in ledger.settled]
        shard = ShardFormat(facts.model_name, facts.model_checksum, vision.preprocess.digest(), job.float16)
        log.info("%d videos, %d settled already, %d to do", len(items), len(items) - len(todo), len(todo))
        with JobProgress(len(items), len(items) - len(todo), job.progress) as progress:
            output = JobOutput(ledger, {i.video_id: i for i in todo}, shard, job.shard_clips,
                               vision.width, progress)
            if todo:
                _run_engine(job, models, todo, settings, output, job.batch_size or vision.batch, runtime)
        left = [item.video_id for item in items if item.video_id not in ledger.settled]
        if left:
            raise JobError(f"{len(left)} videos were not processed (first: {left[0]}); run again to resume")
        label = f"dali-{dali_device}" if decoder == "dali" else decoder
        summary = JobSummary(
            out=str(job.out), engine=job.engine, decoder=label, videos=output.videos_done,
            videos_skipped=len(items) - len(todo), videos_failed=output.failed, clips=output.clips_done,
            seconds=time.monotonic() - started, videos_total=len(ledger.settled), clips_total=ledger.clips,
            failures_total=ledger.write_failures(), shards_total=sum(1 for r in ledger.records if r["shard"]),
        )  # fmt: skip
        write_atomic(job.out / SUMMARY, json.dumps(summary.to_dict(), indent=2) + "\n")
        return summary
    finally:
        if ledger is not None:
            ledger.close()
        if runtime is not None:
            runtime.close()


def _server_runtime(job: EmbedJob, models: RepositoryModels) -> ModelRuntime | None:
    """The Triton runtime of a job, opened before decoding starts: whether its server has the decoding
    ensemble decides where the job's video is decoded (the Ray engine's actors open their own). None
    for other jobs (their runtime opens while the decoding processes fill the queue)."""
    if job.runtime.kind != "triton" or job.decoder not in ("auto", "server"):
        return None
    from vidsearch.runtime import open_runtime

    return open_runtime(job.runtime, models=models)


def _run_engine(job: EmbedJob, models: RepositoryModels, todo: list[WorkItem], settings: DecodeSettings,
                output: JobOutput, batch: int, runtime: ModelRuntime | None) -> None:
    if job.engine == "ray":
        from vidsearch.jobs.ray_engine import run_ray

        run_ray(job, models, todo, settings, output, batch)
        return
    from vidsearch.jobs.pipeline import LocalEngine
    from vidsearch.runtime import open_runtime

    with LocalEngine(todo, settings, job.workers, job.queue_clips, job.cpu_workers) as engine:
        if runtime is not None:  # opened already, and closed by the caller
            engine.run(runtime, batch, output)
            return
        # opened while the decoding processes start and fill the queue
        runtime = open_runtime(job.runtime, models=models)
        try:
            engine.run(runtime, batch, output)
        finally:
            runtime.close()
