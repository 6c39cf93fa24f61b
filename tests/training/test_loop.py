import json
import math
from pathlib import Path

import pytest
import torch

from vidsearch.errors import CheckpointError
from vidsearch.training.artifact import load_model_folder
from vidsearch.training.checkpointing import load_checkpoint_state, save_checkpoint
from vidsearch.training.config import recipe_from_dict
from vidsearch.training.loop import StepInfo
from vidsearch.training.viclip import ViCLIPObjective, build_model, train_viclip

from .conftest import tiny_recipe
from .ddp_worker import global_batch


class StopRunError(Exception):
    pass


def test_loss_falls_on_a_tiny_run(synth_data: Path, tmp_path: Path) -> None:
    losses: list[float] = []
    recipe = recipe_from_dict(tiny_recipe(synth_data, steps=40, batch_size=6))
    result = train_viclip(recipe, tmp_path, on_step=lambda info: losses.append(info.loss))
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:8]) / 8
    assert result.model_dir is not None
    assert set(result.metrics) >= {"retrieval", "single_frame", "motion"}
    shipped = load_model_folder(result.model_dir)
    assert shipped.preprocess.size == (32, 32)
    assert shipped.config["training"]["steps"] == 40
    assert shipped.config["training"]["metrics"] == json.loads(json.dumps(result.metrics))


def test_resume_after_an_interruption_continues_bit_for_bit(synth_data: Path, tmp_path: Path) -> None:
    recipe = recipe_from_dict(tiny_recipe(synth_data, steps=6, save_every=2))
    train_viclip(recipe, tmp_path / "straight")

    def stop_at_four(info: StepInfo) -> None:
        if info.step == 4:
            raise StopRunError

    with pytest.raises(StopRunError):
        train_viclip(recipe, tmp_path / "broken", on_step=stop_at_four)
    assert load_checkpoint_state(tmp_path / "broken/checkpoints/last.pt")["step"] == 4
    resumed_steps: list[int] = []
    train_viclip(
        recipe, tmp_path / "broken", resume=True, on_step=lambda info: resumed_steps.append(info.step)
    )
    assert resumed_steps == [5, 6]
    straight = load_checkpoint_state(tmp_path / "straight/checkpoints/last.pt")
    resumed = load_checkpoint_state(tmp_path / "broken/checkpoints/last.pt")
    assert resumed["step"] == straight["step"] == 6
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for number, state in straight["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["optimizer"]["state"][number][name]), (number, name)
    assert straight["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"]
    assert torch.equal(straight["rng"][0]["torch"], resumed["rng"][0]["torch"])


def test_resume_refuses_another_recipe(synth_data: Path, tmp_path: Path) -> None:
    train_viclip(recipe_from_dict(tiny_recipe(synth_data, steps=2)), tmp_path)
    changed = recipe_from_dict({**tiny_recipe(synth_data, steps=2), "objective": {"mask_ratio": 0.1}})
    with pytest.raises(CheckpointError, match="objective"):
        train_viclip(changed, tmp_path, resume=True)


def test_checkpoints_are_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    state = {
        "model": {"w": torch.ones(2)},
        "optimizer": {},
        "scheduler": {},
        "step": 1,
        "rng": [],
        "recipe": {},
    }
    save_checkpoint(path, state)

    class Unpicklable:
        def __reduce__(self) -> tuple[object, ...]:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {**state, "step": 2, "extra": Unpicklable()})
    assert load_checkpoint_state(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint_state(path)


def test_bf16_autocast_trains_on_the_cpu(synth_data: Path, tmp_path: Path) -> None:
    losses: list[float] = []
    recipe = recipe_from_dict(tiny_recipe(synth_data, steps=3, precision="bf16"))
    train_viclip(recipe, tmp_path, on_step=lambda info: losses.append(info.loss))
    assert len(losses) == 3
    assert all(math.isfinite(loss) for loss in losses)
    assert (
        load_checkpoint_state(tmp_path / "checkpoints/last.pt")["model"]["model.temp"].dtype == torch.float32
    )


def test_gradient_checkpointing_gives_the_same_gradients(synth_data: Path) -> None:
    grads = []
    for checkpointing in (False, True):
        recipe = recipe_from_dict({**tiny_recipe(synth_data), "grad_checkpointing": checkpointing})
        torch.manual_seed(0)
        objective = ViCLIPObjective(build_model(recipe), mask_ratio=0.0)
        assert objective.model.vision_encoder.transformer.grad_checkpointing is checkpointing
        objective(global_batch(8))["loss"].backward()
        grads.append({n: p.grad for n, p in objective.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6), name
