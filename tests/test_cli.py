"""The `vidsearch` command as a whole: its version, its command list, and one exit-status rule for all."""

import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from vidsearch.cli import app
from vidsearch.errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE

COMMANDS = {"version", "presets", "index", "export", "train", "data", "video", "serve", "search", "demo",
            "embed"}


def test_version_prints_the_installed_distributions_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == EXIT_OK
    assert result.stdout.strip() == version("vidsearch")


def test_help_lists_every_command_and_no_other() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == EXIT_OK
    listed = {line.split()[1] for line in result.stdout.splitlines()
              if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1][0].isalpha()}
    assert listed == COMMANDS


Command = TyperCommand | TyperGroup


def _commands(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def test_no_help_text_is_eaten_as_rich_markup() -> None:
    """Rich reads `[word]` as a style tag and drops it from --help ("auto [auto]" showed "auto ."): a
    default in brackets must be written `\\[auto]`."""
    tag = re.compile(r"(?<!\\)\[[a-z#/@]")
    eaten = [f"{' '.join(path) or 'vidsearch'} {getattr(param, 'opts', [param.name])[0]}: {param.help}"
             for path, command in _commands(typer.main.get_command(app)) for param in command.params
             if tag.search(getattr(param, "help", None) or "")]
    assert not eaten, eaten
    shown = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "300"})
    assert "cpu, gpu or auto [auto]." in shown.stdout


def test_presets_lists_every_shipped_preset_with_its_family() -> None:
    result = CliRunner().invoke(app, ["presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    assert {"viclip-b16", "viclip-l14", "videomae-v2-g", "videomae-v2-s-pretrain"} <= rows.keys()
    assert "videomae_v2_pretrain" in rows["videomae-v2-s-pretrain"]


@pytest.mark.parametrize(
    "args",
    [
        ["search"],  # no query
        ["embed", "videos"],  # no --out, no --model-repository
        ["index", "build", "--out", "x"],  # no --from
        ["index", "build", "--from", "s", "--out", "x", "--gpu", "sometimes"],
        ["video", "clips", "v.mp4", "--length", "long"],
        ["export", "--model", "viclip-b16"],  # no --checkpoint
        ["train", "viclip", "--set", "novalue"],
        ["data", "synth"],  # no --out
        ["serve", "--port", "many"],
        ["serve", "--index", "milvus://db.example/clips", "--milvus-param", "nlist"],  # no =VALUE
        ["no-such-command"],
    ],
)
def test_bad_arguments_exit_with_the_usage_status(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["video", "probe", "{tmp}/absent.mp4"], "absent.mp4"),
        (["index", "stats", "{tmp}"], "error:"),
        (["index", "build", "--from", "{tmp}/none", "--out", "{tmp}/index"], "error:"),
        (["export", "--model", "viclip-b16", "--checkpoint", "{tmp}/c.pt", "--out", "{tmp}/r"], "c.pt"),
        (["train", "viclip", "--preset", "no-such-recipe", "--out", "{tmp}/run"], "no-such-recipe"),
        (["data", "internvid", "{tmp}/absent.jsonl", "--out", "{tmp}/m.jsonl", "--videos", "{{id}}.mp4"],
         "absent.jsonl"),
        (["embed", "{tmp}/nothing-here", "--out", "{tmp}/out", "--model-repository", "{tmp}/repo"], "error:"),
        (["serve", "--config", "{tmp}/absent.toml"], "absent.toml"),
        (["serve", "--index", "milvus://db.example/clips", "--milvus-concurrent-searches", "0"],
         "milvus.concurrent_searches"),
        (["serve", "--index", "milvus://db.example/clips", "--milvus-index", "IVF_SQ8", "--milvus-param",
          "nlists=64"], "IVF_SQ8 has no build parameter 'nlists'"),
        (["search", "anything", "--server", "127.0.0.1:1", "--timeout", "2"], "UNAVAILABLE"),
    ],
)
def test_errors_exit_with_the_error_status_and_say_what_was_wrong(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == EXIT_ERROR, result.output
    assert result.output.startswith("error: ") or "\nerror: " in result.output
    assert message in result.output


def test_serve_hands_the_milvus_index_flags_to_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import vidsearch.serving
    from vidsearch.index.milvus import MilvusIndexSpec

    served = []
    monkeypatch.setattr(vidsearch.serving, "serve", served.append)
    result = CliRunner().invoke(app, [
        "serve", "--index", "milvus://db.example/clips", "--milvus-index", "IVF_FLAT", "--milvus-param",
        "nlist=256", "--milvus-search-param", "nprobe=8", "--milvus-concurrent-searches", "2"])  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    (settings,) = served
    new_index = settings.milvus.new_index
    assert new_index.resolved() == MilvusIndexSpec("IVF_FLAT", {"nlist": 256}, {"nprobe": 8})
    assert settings.index_location.concurrent_searches == 2
