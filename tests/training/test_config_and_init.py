import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vidsearch.errors import CheckpointError, ConfigError
from vidsearch.training.config import apply_overrides, list_recipes, load_recipe, recipe_from_dict
from vidsearch.training.viclip import build_model, clip_to_viclip

from .conftest import TINY_MODEL, tiny_recipe


def test_shipped_recipes_parse_and_round_trip() -> None:
    names = list_recipes()
    assert {"demo", "viclip-b16-finetune", "videomae-s-pretrain", "videomae-s-finetune"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe_from_dict(recipe.to_dict()) == recipe
    demo = load_recipe("demo")
    assert demo.task == "viclip"
    assert demo.model == "viclip-demo"
    assert demo.export_dtype == "float16"


def test_overrides_are_dotted_and_parsed_as_json(tmp_path: Path) -> None:
    recipe = load_recipe(
        "demo", {"loop.steps": "12", "optim.lr": 0.5, "data.synthetic.n": "40", "description": "x y"}
    )
    assert recipe.loop.steps == 12
    assert recipe.optim.lr == 0.5
    assert recipe.data.synthetic is not None
    assert recipe.data.synthetic["n"] == 40
    assert recipe.description == "x y"
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"loop": 3}, {"loop.steps": 1})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "dance"}, "task must be"),
        ({"loop": {"steps": 0, "batch_size": 2}}, "must be positive"),
        ({"optim": {"lr": 1e-3, "warmup": 3}}, "unknown optim settings"),
        ({"colour": "red"}, "unknown keys"),
        ({"data": {"positives": "friends"}}, "positives"),
    ],
)
def test_bad_recipes_are_config_errors(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict({**tiny_recipe(Path("/data")), **change})


def test_unknown_recipe_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="demo"):
        load_recipe("no-such-recipe")


def _clip_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What an OpenAI-CLIP-style checkpoint of the same widths would hold."""
    out: dict[str, torch.Tensor] = {"logit_scale": torch.tensor(4.6)}
    for key, value in model.state_dict().items():
        if key.startswith("vision_encoder."):
            if key.endswith("temporal_positional_embedding"):
                continue
            name = "visual." + key.removeprefix("vision_encoder.")
            out[name] = value[:, :, 0] if name == "visual.conv1.weight" else value
        elif key.startswith("text_encoder."):
            name = key.removeprefix("text_encoder.")
            out[name] = (
                torch.cat([value, torch.randn(45, value.shape[1])])
                if name == "positional_embedding"
                else value
            )
    return out


def test_initialise_from_a_clip_checkpoint_inflates_it(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model(recipe_from_dict(tiny_recipe(tmp_path)))
    clip = {k: v.clone().contiguous() for k, v in _clip_state_dict(source).items()}
    assert clip["positional_embedding"].shape[0] == 77
    path = tmp_path / "clip.safetensors"
    save_file(clip, str(path))
    torch.manual_seed(2)
    model = build_model(recipe_from_dict({**tiny_recipe(tmp_path), "init": str(path)}))
    for key, value in source.state_dict().items():
        if key in ("temp", "vision_encoder.temporal_positional_embedding"):
            continue
        assert torch.equal(model.state_dict()[key], value), key
    assert model.vision_encoder.conv1.weight.shape[2] == 1
    assert float(model.temp.detach()) == pytest.approx(0.01)
    mapped = clip_to_viclip(clip, 32)
    assert "logit_scale" not in mapped
    assert mapped["text_encoder.positional_embedding"].shape[0] == 32


def test_initialise_rejects_a_checkpoint_of_another_shape(tmp_path: Path) -> None:
    wider = build_model(
        recipe_from_dict({**tiny_recipe(tmp_path), "model_overrides": {**TINY_MODEL, "text_width": 64}})
    )
    path = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in wider.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="does not fit"):
        build_model(recipe_from_dict({**tiny_recipe(tmp_path), "init": str(path)}))
    (tmp_path / "r.json").write_text(json.dumps(tiny_recipe(tmp_path)))
    assert load_recipe(tmp_path / "r.json").model_overrides == TINY_MODEL


def test_fresh_models_can_start_with_wider_position_embeddings(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path)
    recipe["objective"] = {"mask_ratio": 0.0, "position_init_std": 0.5}
    vision = build_model(recipe_from_dict(recipe)).vision_encoder
    assert 0.4 < float(vision.temporal_positional_embedding.detach().std()) < 0.6
    assert 0.4 < float(vision.positional_embedding.detach().std()) < 0.6
    default = build_model(recipe_from_dict(tiny_recipe(tmp_path))).vision_encoder
    assert float(default.temporal_positional_embedding.detach().abs().max()) == 0.0
