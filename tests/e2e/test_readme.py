"""The README's examples run as written, so the docs cannot rot.

Python blocks are executed in order in one namespace (as a reader would paste them). Bash blocks
are checked command by command: every `psrq ...` line must name a real command and only options
that command accepts (parsed by the real CLI with --help appended, so nothing heavy runs here;
the pipeline itself is exercised end to end in test_end_to_end.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def _psrq_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("psrq "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_has_the_two_setup_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    blocks = _blocks("python")
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)


@pytest.mark.parametrize("argv", _psrq_commands(), ids=lambda a: " ".join(a[:2]))
def test_readme_cli_examples_parse(argv: list[str]) -> None:
    from psrq.cli import app

    # Options come before --help so the parser validates them; --help then exits without work.
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"psrq {' '.join(argv)}: {result.output}"
    assert "Usage" in result.output
