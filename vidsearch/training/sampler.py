"""Data order that can be resumed exactly: batches are a pure function of (seed, step).

Each epoch is a permutation drawn from its own generator seeded by (seed, epoch); a global batch is
the next `global_batch` indices of it (the tail of an epoch is dropped), and process `rank` takes
its contiguous share. Starting at any step therefore yields the same batches an uninterrupted run
would have seen from there, on any number of processes that divides the global batch.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from vidsearch.errors import ConfigError


@dataclass(frozen=True)
class Shard:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this process's index lists for steps `start_step`, `start_step + 1`, … `total_steps - 1`."""

    def __init__(
        self,
        length: int,
        global_batch: int,
        total_steps: int,
        seed: int,
        shard: Shard | None = None,
        start_step: int = 0,
    ) -> None:
        shard = shard or Shard()
        if global_batch % shard.world:
            raise ConfigError(f"batch size {global_batch} is not divisible by {shard.world} processes")
        if length < global_batch:
            raise ConfigError(f"the data set has {length} items, fewer than one batch of {global_batch}")
        self.length, self.global_batch, self.total_steps = length, global_batch, total_steps
        self.seed, self.shard, self.start_step = seed, shard, start_step
        self.local_batch = global_batch // shard.world

    @property
    def steps_per_epoch(self) -> int:
        return self.length // self.global_batch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, order = -1, torch.empty(0, dtype=torch.long)
        for step in range(self.start_step, self.total_steps):
            if step // self.steps_per_epoch != epoch:
                epoch = step // self.steps_per_epoch
                order = self.epoch_order(epoch)
            start = (step % self.steps_per_epoch) * self.global_batch + self.shard.rank * self.local_batch
            yield order[start : start + self.local_batch].tolist()

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0)
