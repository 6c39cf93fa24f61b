"""Every `vidsearch …` command the README and docs/ show exists and parses.

Commands in shell code blocks are parsed in full by the real command (options, types, choices), without
running; commands quoted inline (`vidsearch video clips FILE [--length 10]`, often with placeholders)
must name a real subcommand. Each subcommand used also answers `--help`.
"""

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from vidsearch.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "console", "shell"}  # untagged blocks are pictures
INLINE = re.compile(r"`(vidsearch [^`]+)`")
INDENTED = re.compile(r"^    (vidsearch .+)$", re.MULTILINE)
SHELL_END = {"&", "&&", "|", "||", ";", ">", ">>", "2>&1"}
COMMAND = typer.main.get_command(app)


def _shell_lines(text: str) -> list[str]:
    """The lines of the shell code blocks (continuations joined), and indented `vidsearch` lines."""
    lines: list[str] = []
    language: str | None = None  # inside a fenced block: its language
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
        elif language in SHELL:
            lines.append(line)
    return lines + INDENTED.findall(text)


def _arguments(line: str) -> list[str] | None:
    """The words after `vidsearch` in one shell line (None when the line does not run vidsearch)."""
    words = shlex.split(line, comments=True)
    start = next((i for i, w in enumerate(words) if w == "vidsearch" or w.endswith("vidsearch)")), None)
    if start is None:
        return None
    args = []
    for word in words[start + 1:]:
        if word in SHELL_END:
            break
        args.append(word)
    return args


def _resolve(args: list[str]) -> tuple[TyperCommand | TyperGroup, list[str], list[str]]:
    """The (sub)command the words name, its path, and the words left for it to parse."""
    command = COMMAND
    path: list[str] = []
    rest = list(args)
    while isinstance(command, TyperGroup) and rest and not rest[0].startswith("-"):
        found = command.commands.get(rest[0])
        assert found is not None, f"`vidsearch {' '.join(path + rest[:1])}` is not a command"
        command, path, rest = found, [*path, rest[0]], rest[1:]
    return command, path, rest


def _shown() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(page, command) pairs: the full shell commands, and the inline ones."""
    full, inline = [], []
    for page in PAGES:
        text = page.read_text()
        for line in _shell_lines(text):
            args = _arguments(line)
            if args is not None:
                full.append((page.name, shlex.join(args)))
        inline += [(page.name, span.removeprefix("vidsearch ")) for span in INLINE.findall(text)]
    return full, inline


FULL, INLINE_SHOWN = _shown()


def test_the_docs_show_the_commands_of_every_door() -> None:
    paths = {tuple(_resolve(shlex.split(c))[1]) for _, c in FULL}
    doors = {("export",), ("embed",), ("index", "build"), ("serve",), ("search",), ("train", "viclip")}
    assert doors <= paths


@pytest.mark.parametrize(("page", "command"), FULL)
def test_a_shown_shell_command_parses(page: str, command: str) -> None:
    found, path, rest = _resolve(shlex.split(command))
    assert not isinstance(found, TyperGroup), f"{page}: `vidsearch {command}` names only a group"
    try:
        found.make_context(" ".join(["vidsearch", *path]), rest)
    except Exception as err:  # Typer's own Click raises its UsageError kinds here
        pytest.fail(f"{page}: `vidsearch {command}` does not parse: {err}")


def _leading_words(command: str) -> list[str]:
    """The (sub)command words a quoted command starts with, before options and PLACEHOLDERS."""
    words = []
    for word in command.split()[:2]:
        if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        words.append(word)
    return words


@pytest.mark.parametrize(("page", "command"), INLINE_SHOWN)
def test_a_quoted_command_names_a_real_subcommand(page: str, command: str) -> None:
    _, path, rest = _resolve(_leading_words(command))
    assert path or not _leading_words(command), f"{page}: `vidsearch {command}` names no command"
    assert not rest


def test_every_subcommand_shown_answers_help() -> None:
    paths = {tuple(_resolve(shlex.split(c))[1]) for _, c in FULL}
    paths |= {tuple(_resolve(_leading_words(c))[1]) for _, c in INLINE_SHOWN}
    runner = CliRunner()
    for path in sorted(paths):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"vidsearch {' '.join(path)} --help: {result.output}"
        assert f"Usage: vidsearch {' '.join(path)}".rstrip() in " ".join(result.output.split())
