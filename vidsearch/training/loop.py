"""The training loop shared by every recipe.

A recipe hands over an *objective*: an `nn.Module` holding the trained network as `model`, whose
forward takes a batch and returns `{"loss": …}` plus whatever it wants logged. The loop wraps it in
DDP under `torchrun`, runs it under autocast where asked, clips the global gradient norm, steps AdamW
and the schedule, and saves a checkpoint every `save_every` steps and at the end. Resuming restores
model, optimiser, scheduler, gradient scaler, step and every process's random state, and the data
order is a function of the step (`sampler.py`), so an interrupted run continues exactly as if it had
not stopped.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.training.checkpointing import (
    LAST,
    load_checkpoint_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vidsearch.training.distributed import ProcessPlacement, all_gather_objects
from vidsearch.training.optim import OptimConfig, build_optimizer, build_scheduler
from vidsearch.training.sampler import ResumableBatchSampler

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Batch = Mapping[str, Tensor]
StepCallback = Callable[["StepInfo"], None]


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    batch_size: int  # global: summed over processes
    seed: int = 0
    precision: Precision = "auto"
    save_every: int = 0  # 0: only at the end
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size <= 0:
            raise ConfigError(
                f"training: steps and batch_size must be positive, got {self.steps}, {self.batch_size}"
            )
        if self.save_every < 0 or self.log_every <= 0:
            raise ConfigError(f"training: need save_every ≥ 0 and log_every > 0; got {self}")


@dataclass(frozen=True)
class StepInfo:
    """What a callback learns after each optimiser step."""

    step: int  # steps completed
    total: int
    loss: float
    lr: float
    grad_norm: float
    seconds: float  # wall time of this run so far
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    """What a recipe run returns (`model_dir` is None on processes other than 0)."""

    out_dir: Path
    model_dir: Path | None  # None on processes other than 0
    steps: int
    seconds: float
    metrics: Mapping[str, Any]


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32. `auto`: bf16 (fp16 without bf16 support) on CUDA,
    float32 on the CPU, where bf16 autocast is rarely faster."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 mixed precision needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


class Trainer:
    """Runs an objective over a data set; see the module docstring."""

    def __init__(
        self,
        objective: nn.Module,
        dataset: Dataset[Any],
        loop: LoopConfig,
        optim: OptimConfig,
        run: ProcessPlacement,
        out_dir: Path,
        recipe: Mapping[str, Any],
        depth: int = 0,
        workers: int = 0,
    ) -> None:
        self.loop, self.optim, self.run, self.out_dir = loop, optim, run, out_dir
        self.recipe = dict(recipe)
        self.objective = objective.to(run.device)
        self.dataset, self.workers = dataset, workers
        model = objective.get_submodule("model")
        # Groups by the model's own parameter names, which weight-decay and layer-id rules read.
        self.optimizer = build_optimizer(model, optim, depth)
        self.scheduler = build_scheduler(self.optimizer, loop.steps, optim)
        self.autocast_dtype = resolve_precision(loop.precision, run.device)
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=self.autocast_dtype == torch.float16)
        self.step = 0
        self.module: nn.Module = self.objective
        if run.distributed:
            device_ids = [run.device.index] if run.device.type == "cuda" else None
            self.module = DistributedDataParallel(self.objective, device_ids=device_ids)

    # --- checkpoints -----------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / LAST

    def save(self) -> None:
        """Checkpoint the run (every process's RNG state; written by process 0)."""
        rngs = all_gather_objects(rng_state(), self.run)
        if not self.run.is_main:
            return
        save_checkpoint(
            self.checkpoint_path,
            {
                "model": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "rng": rngs,
                "recipe": self.recipe,
            },
        )

    def resume(self, path: Path | None = None) -> None:
        """Continue from a checkpoint (default: this run's last one)."""
        path = path or self.checkpoint_path
        state = load_checkpoint_state(path)
        if state["recipe"] != self.recipe:
            changed = sorted(
                k
                for k in set(state["recipe"]) | set(self.recipe)
                if state["recipe"].get(k) != self.recipe.get(k)
            )
            raise CheckpointError(
                f"{path}: was trained with another recipe (differs in {changed}); "
                "resume with the same settings or start a new run"
            )
        if len(state["rng"]) != self.run.shard.world:
            raise CheckpointError(
                f"{path}: saved by {len(state['rng'])} process(es), resumed on "
                f"{self.run.shard.world}; exact resume needs the same number"
            )
        self.objective.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        set_rng_state(state["rng"][self.run.shard.rank])
        log.info("resumed from %s at step %d", path, self.step)

    # --- the loop --------------------------------------------------------------------------------

    def _loader(self) -> Iterable[Batch]:
        sampler = ResumableBatchSampler(
            len(self.dataset),  # type: ignore[arg-type]
            self.loop.batch_size,
            self.loop.steps,
            self.loop.seed,
            self.run.shard,
            self.step,
        )
        # A private generator: creating the iterator must not draw from the global RNG.
        generator = torch.Generator().manual_seed(self.loop.seed)
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=self.workers,
            generator=generator,
            persistent_workers=False,
            worker_init_fn=_single_thread_worker if self.workers else None,
        )

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.run.device.type, dtype=self.autocast_dtype)

    def _train_step(self, batch: Batch) -> tuple[float, float, dict[str, float]]:
        batch = {k: v.to(self.run.device, non_blocking=True) for k, v in batch.items()}
        with self._autocast():
            output = self.module(batch)
        loss: Tensor = output["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.objective.parameters() if p.grad is not None]
        # With no clipping asked for, an infinite limit only measures the norm (for the log).
        norm = torch.nn.utils.clip_grad_norm_(params, self.optim.grad_clip or float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        extra = {k: float(v) for k, v in output.items() if k != "loss"}
        return float(loss.detach()), float(norm), extra

    def fit(self, on_step: StepCallback | None = None) -> None:
        """Train from the current step to `loop.steps`; `on_step` sees every step (process 0 only)."""
        self.module.train()
        started = time.perf_counter()
        for batch in self._loader():
            loss, norm, extra = self._train_step(batch)
            self.step += 1
            if self.loop.save_every and self.step % self.loop.save_every == 0 and self.step < self.loop.steps:
                self.save()
            if on_step is not None and self.run.is_main:
                lr = max(group["lr"] for group in self.optimizer.param_groups)
                on_step(
                    StepInfo(self.step, self.loop.steps, loss, lr, norm, time.perf_counter() - started, extra)
                )
        self.save()


def _single_thread_worker(worker_id: int) -> None:
    """Data workers decode; one torch thread each keeps them from fighting the training threads."""
    torch.set_num_threads(1)
