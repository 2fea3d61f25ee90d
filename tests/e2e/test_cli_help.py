"""`psrq --help` and every subcommand's help show examples, and every example parses.

"Parses" means as a run would: every option value converted and checked (cli_examples.py), not
just recognised before a `--help` that skips the conversion. The README's examples and those of
quantize / assign / report / train / evaluate / score also run for real on tiny data
(test_readme.py, test_cli_examples_run.py).
"""

from __future__ import annotations

import re
import shlex

import click
import pytest
import typer
from typer.testing import CliRunner

from psrq.cli import app

from .cli_examples import ExampleError, parse_example


def _commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd: click.Command, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


def _help(path: list[str]) -> str:
    """The command's own help text (unwrapped), after checking `--help` renders."""
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd: click.Command = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd.help or ""


def test_every_stage_command_is_registered() -> None:
    names = {" ".join(p) for p in _commands()}
    for expected in [
        "run",
        "data prepare",
        "data synth",
        "embed text",
        "embed audio",
        "quantize",
        "assign",
        "report",
        "train",
        "evaluate",
        "score",
        "experiment",
    ]:
        assert expected in names


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "psrq")
def test_help_has_examples_that_parse(path: list[str]) -> None:
    text = _help(path)
    examples = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("psrq "):
            # an example may be followed by a comment in parentheses or chained with &&
            command = re.split(r"\s{2,}\(|\s&&\s", line)[0]
            examples.append(shlex.split(command)[1:])
    assert examples, f"psrq {' '.join(path)} --help shows no example"
    for argv in examples:
        if "..." in argv:
            continue  # an elided example ("psrq train ... --no-mjc") shows one option only
        try:
            parse_example(argv)
        except ExampleError as e:
            pytest.fail(f"example `psrq {' '.join(argv)}` does not parse: {e}")
