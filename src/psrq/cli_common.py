"""Options shared by every writing command (kept apart so psrq.outputs stays free of typer)."""

from __future__ import annotations

from typing import Annotated

import typer

WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="If another psrq process is writing the same output, wait for it instead of failing at once.",
    ),
]
