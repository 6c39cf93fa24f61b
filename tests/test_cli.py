from typer.testing import CliRunner

from vidsearch import __version__
from vidsearch.cli import app


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__ == "0.1.0"


def test_help_lists_subcommands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "version" in result.stdout


def test_presets_lists_every_shipped_preset_with_its_family() -> None:
    result = CliRunner().invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    assert {"viclip-b16", "viclip-l14", "videomae-v2-g", "videomae-v2-s-pretrain"} <= rows.keys()
    assert "videomae_v2_pretrain" in rows["videomae-v2-s-pretrain"]
