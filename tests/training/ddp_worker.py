"""Run by `torchrun --nproc_per_node 2` from test_ddp.py: one DDP backward pass on a fixed global
batch (gradients saved by rank 0), then a short DDP training run through `train_viclip`."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from vidsearch.training.config import Recipe, recipe_from_dict
from vidsearch.training.distributed import ProcessPlacement, process_placement
from vidsearch.training.viclip import ViCLIPObjective, build_model, train_viclip


def global_batch(size: int) -> dict[str, torch.Tensor]:
    """The same batch in every process (and in the single-process reference)."""
    generator = torch.Generator().manual_seed(123)
    tokens = torch.zeros(size, 32, dtype=torch.long)
    tokens[:, 0] = 49406
    tokens[:, 1:4] = torch.randint(300, 3000, (size, 3), generator=generator)
    tokens[:, 4] = 49407
    return {
        "video": torch.randn(size, 8, 3, 32, 32, generator=generator),
        "text": tokens,
        "group": torch.tensor([0, 1, 2, 0, 3, 4, 2, 5][:size]),
    }


def gradients(recipe: Recipe, run: ProcessPlacement, out: Path) -> None:
    torch.manual_seed(0)
    objective = ViCLIPObjective(build_model(recipe), mask_ratio=0.0)
    module = DistributedDataParallel(objective)
    batch = global_batch(8)
    local = 8 // run.shard.world
    mine = {k: v[run.shard.rank * local : (run.shard.rank + 1) * local] for k, v in batch.items()}
    module(mine)["loss"].backward()
    if run.is_main:
        torch.save(
            {n: p.grad for n, p in objective.named_parameters() if p.grad is not None}, out / "grads.pt"
        )
    dist.barrier()


if __name__ == "__main__":
    recipe_file, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    recipe = recipe_from_dict(json.loads(recipe_file.read_text()))
    with process_placement("cpu") as run:  # one process group for both parts (train_viclip joins it)
        gradients(recipe, run, out_dir)
        train_viclip(recipe, out_dir / "run")
