"""Two processes under a real `torchrun` (gloo) against one process on the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from vidsearch.training.checkpointing import load_checkpoint_state
from vidsearch.training.config import recipe_from_dict
from vidsearch.training.viclip import ViCLIPObjective, build_model, train_viclip

from .conftest import tiny_recipe, write_recipe
from .ddp_worker import global_batch


def test_two_process_ddp_matches_one_process(synth_data: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(synth_data, steps=3, batch_size=8)
    recipe["objective"] = {"mask_ratio": 0.0}  # token dropping draws per process; compare without it
    recipe_file = write_recipe(tmp_path / "recipe.json", recipe)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(Path(__file__).with_name("ddp_worker.py")),
            str(recipe_file),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-12000:]  # every process's output: which one failed first

    parsed = recipe_from_dict(recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): the same reduction order, not another
    try:
        torch.manual_seed(0)
        objective = ViCLIPObjective(build_model(parsed), mask_ratio=0.0)
        objective(global_batch(8))["loss"].backward()
    finally:
        torch.set_num_threads(threads)
    distributed = torch.load(tmp_path / "grads.pt", weights_only=True)
    reference = {n: p.grad for n, p in objective.named_parameters() if p.grad is not None}
    assert distributed.keys() == reference.keys()
    assert len(reference) > 10
    for name, grad in reference.items():
        assert torch.allclose(distributed[name], grad, rtol=1e-4, atol=1e-6), name

    train_viclip(parsed, tmp_path / "single")
    one = load_checkpoint_state(tmp_path / "single/checkpoints/last.pt")
    two = load_checkpoint_state(tmp_path / "run/checkpoints/last.pt")
    assert len(two["rng"]) == 2
    assert one["step"] == two["step"] == 3
    for name, value in one["model"].items():
        assert torch.allclose(two["model"][name], value, rtol=1e-4, atol=1e-6), name
