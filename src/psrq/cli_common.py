"""Options shared by several commands (kept apart so psrq.outputs stays free of typer).

The engine options (--engine, --address, --num-cpus, ...) are psrq.engines.options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="If another psrq process is writing the same output, wait for it instead of failing at once.",
    ),
]
RankerModelOpt = Annotated[
    Path,
    typer.Option(
        "--model",
        help="Ranker model directory (or a `psrq train` output directory holding model/).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="Torch CPU threads (default: torch's choice)."),
]
