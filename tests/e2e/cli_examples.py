"""Parse a `psrq ...` example the way a run would, without running it.

`--help` appended to an example stops the parser before any option value is converted, so a
wrong value (`--n-levels three`, an unknown option, a missing required one) would pass.
`parse_example` resolves the sub-command and builds its context: every option value is
converted and range-checked and required options are enforced, and the command is not invoked.
"""

from __future__ import annotations

from typing import Any

import typer

from psrq.cli import app


class ExampleError(Exception):
    """The example would not parse; the message is the CLI's own."""


def parse_example(argv: list[str]) -> dict[str, Any]:
    """The converted parameters of `psrq <argv>`; raises ExampleError when it would not parse."""
    cmd = typer.main.get_command(app)
    args = list(argv)
    path = ["psrq"]
    while getattr(cmd, "commands", None):  # a group: descend into the named sub-command
        if not args or args[0] not in cmd.commands:
            raise ExampleError(f"{' '.join(path)} has no command {args[:1]}")
        path.append(args.pop(0))
        cmd = cmd.commands[path[-1]]
    try:
        with cmd.make_context(" ".join(path), args) as ctx:
            return dict(ctx.params)
    except Exception as e:  # typer's click raises UsageError / BadParameter / Exit
        if type(e).__name__ == "Exit" and not getattr(e, "exit_code", 1):
            return {}  # an eager option (e.g. --show-config) ends parsing early, successfully
        message = e.format_message() if hasattr(e, "format_message") else repr(e)
        raise ExampleError(f"`{' '.join([*path, *args])}`: {message}") from e


def help_examples(path: list[str]) -> list[list[str]]:
    """The `psrq ...` example lines of a command's own help text, as argv lists without `psrq`.

    An example may be followed by a comment in parentheses or chained with `&&` (first part kept).
    """
    import re
    import shlex

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    examples = []
    for line in (cmd.help or "").splitlines():
        line = line.strip()
        if line.startswith("psrq "):
            examples.append(shlex.split(re.split(r"\s{2,}\(|\s&&\s", line)[0])[1:])
    return examples
