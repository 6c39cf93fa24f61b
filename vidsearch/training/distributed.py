"""Where a training process runs: its device, and its place in a `torchrun` job.

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; with more than one process the group is opened with
NCCL on CUDA and gloo on the CPU. A plain `python` or `vidsearch train` run is a group of one and opens
nothing, so the same loop serves both.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from vidsearch.errors import ConfigError
from vidsearch.training.sampler import Shard

log = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class ProcessPlacement:
    """The device a training process uses and its shard of a `torchrun` job (a group of one without it)."""

    device: torch.device
    shard: Shard

    @property
    def distributed(self) -> bool:
        return self.shard.world > 1

    @property
    def is_main(self) -> bool:
        return self.shard.rank == 0


def _device(choice: DeviceChoice, local_rank: int) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but CUDA is not available on this machine")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


@contextmanager
def process_placement(choice: DeviceChoice = "auto") -> Iterator[ProcessPlacement]:
    """Where this process runs; joins (and finally leaves) the process group under `torchrun`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(choice, local_rank)
    opened = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        opened = True
        log.info("process %d of %d joined the %s group on %s", rank, world, backend, device)
    try:
        yield ProcessPlacement(device, Shard(rank, world))
        if opened:  # leave together: a gloo group torn down while a peer still works can abort the process
            dist.barrier()
    finally:
        if opened:
            dist.destroy_process_group()


def all_gather_objects(obj: Any, run: ProcessPlacement) -> list[Any]:
    """`obj` of every process, in rank order (just `[obj]` outside a group)."""
    if not run.distributed:
        return [obj]
    out: list[Any] = [None] * run.shard.world
    dist.all_gather_object(out, obj)
    return out


def barrier(run: ProcessPlacement) -> None:
    if run.distributed:
        dist.barrier()
