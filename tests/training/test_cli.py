import json
from pathlib import Path

from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.errors import EXIT_ERROR, EXIT_USAGE

from .conftest import tiny_recipe, write_recipe

runner = CliRunner()


def test_data_synth_writes_videos_and_manifests(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "synth", "--out", str(tmp_path), "--n", "6", "--seed", "1", "--size", "48"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 6
    assert (tmp_path / "train.jsonl").is_file()
    assert json.loads((tmp_path / "synth.json").read_text())["spec"]["seed"] == 1


def test_train_viclip_from_a_recipe_file_with_overrides(synth_data: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "tiny.json", tiny_recipe(synth_data))
    out = tmp_path / "run"
    args = [
        "train",
        "viclip",
        "--preset",
        str(recipe),
        "--out",
        str(out),
        "--steps",
        "2",
        "--set",
        "loop.batch_size=4",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "step 2/2" in result.output
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["training"]["steps"] == 2
    assert config["training"]["recipe"]["loop"]["batch_size"] == 4
    assert "--steps 2" in config["training"]["command"]
    assert "retrieval" in config["training"]["metrics"]


def test_train_errors_are_reported_not_raised(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "viclip", "--preset", "no-such-recipe", "--out", str(tmp_path)])
    assert result.exit_code == EXIT_ERROR
    assert "error: unknown training recipe" in result.output
    result = runner.invoke(app, ["train", "videomae-pretrain", "--preset", "demo", "--out", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "viclip" in result.output
    result = runner.invoke(app, ["train", "viclip", "--set", "novalue"])
    assert result.exit_code == EXIT_USAGE
    assert "KEY=VALUE" in result.output


def test_pretraining_takes_no_test_manifest(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "videomae-pretrain", "--test", str(tmp_path / "t.jsonl")])
    assert result.exit_code == EXIT_USAGE
    assert "No such option: --test" in result.output


def test_recipes_are_listed() -> None:
    result = runner.invoke(app, ["train", "recipes"])
    assert result.exit_code == 0
    assert "demo" in result.output
    assert "videomae-pretrain" in result.output


def test_data_internvid_writes_a_manifest_of_the_local_clips(tmp_path: Path) -> None:
    annotations = tmp_path / "InternVid-10M-FLT.jsonl"
    rows = [
        {
            "YoutubeID": "abc",
            "Start_timestamp": "00:00:01.000",
            "End_timestamp": "00:00:03.500",
            "Caption": "x",
        },
        {
            "YoutubeID": "gone",
            "Start_timestamp": "00:00:00.000",
            "End_timestamp": "00:00:01.000",
            "Caption": "y",
        },
    ]
    annotations.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "abc.mp4").write_bytes(b"")
    out = tmp_path / "clips.csv"
    result = runner.invoke(
        app, ["data", "internvid", str(annotations), "--videos", "videos/{id}.mp4", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "1 clips" in result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("video,start,end,caption")
    assert lines[1].startswith(f"{tmp_path / 'videos' / 'abc.mp4'},1.0,3.5,x")
