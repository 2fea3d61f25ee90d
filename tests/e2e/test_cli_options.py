"""The option names agree across every command: one spelling for outputs, one meaning for --items,
the engine options declared once (psrq.engines.options) and taken whole by each engine command."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from psrq.cli import app
from psrq.engines.options import EngineChoice, engine_options

OLD_OUTPUT_SPELLINGS = {"--output", "--out-dir", "--output-dir", "--outdir", "-o", "--json"}
ENGINE_FLAGS = {
    "--engine",
    "--address",
    "--num-cpus",
    "--object-store-mb",
    "--actors",
    "--actor-cpus",
    "--batch-rows",
}
ENGINE_COMMANDS = {"quantize", "assign", "embed text", "embed audio"}


def _commands(cmd=None, path: tuple[str, ...] = ()):
    """(command path, its click command) for every leaf command of the psrq app."""
    cmd = cmd if cmd is not None else typer.main.get_command(app)
    subcommands = getattr(cmd, "commands", None)
    if subcommands is None:
        yield " ".join(path), cmd
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


def _options(cmd):
    return [p for p in cmd.params if p.param_type_name == "option"]


def test_the_walk_sees_every_stage() -> None:
    names = {name for name, _ in _commands()}
    assert {"run", "train", "report", "serve", "export", "data synth", "embed text"} <= names


def test_outputs_are_spelled_out_everywhere() -> None:
    found = [
        (name, flag)
        for name, cmd in _commands()
        for opt in _options(cmd)
        for flag in [*opt.opts, *opt.secondary_opts]
        if flag in OLD_OUTPUT_SPELLINGS
    ]
    assert found == [], f"use --out: {found}"


def test_items_is_always_a_file() -> None:
    seen = []
    for name, cmd in _commands():
        for opt in _options(cmd):
            if "--items" in opt.opts:
                seen.append(name)
                assert opt.type_descriptor.annotation is Path, (name, opt.type_descriptor)
    assert {"quantize", "assign", "report", "embed text", "embed audio", "serve"} <= set(seen)


def test_engine_commands_take_every_engine_option_with_one_help() -> None:
    helps: dict[str, set[str]] = {}
    for name, cmd in _commands():
        flags = {flag for opt in _options(cmd) for flag in opt.opts}
        if name in ENGINE_COMMANDS:
            assert ENGINE_FLAGS <= flags, (name, ENGINE_FLAGS - flags)
        else:
            assert not (flags & (ENGINE_FLAGS - {"--batch-rows"})), name
        for opt in _options(cmd):
            if name in ENGINE_COMMANDS and opt.opts[0] in ENGINE_FLAGS - {"--engine"}:
                helps.setdefault(opt.opts[0], set()).add(opt.help)
    assert all(len(h) == 1 for h in helps.values()), helps


def test_engine_options_pass_one_engine_choice() -> None:
    got: list[tuple[int, EngineChoice]] = []
    toy = typer.Typer()

    @toy.command()
    @engine_options(engine_help="memory or local", batch_rows=7)
    def cmd(n: int = 1, *, engine: EngineChoice) -> None:
        got.append((n, engine))

    runner = CliRunner()
    assert runner.invoke(toy, ["--n", "3"]).exit_code == 0
    assert runner.invoke(toy, ["--engine", "local", "--actors", "2"]).exit_code == 0
    assert got[0][0] == 3 and got[0][1].kind == "memory" and not got[0][1].streamed
    n, choice = got[1]
    assert n == 1 and choice.streamed
    cfg = choice.config()
    assert (cfg.kind, cfg.actors, cfg.batch_rows) == ("local", 2, 7)
