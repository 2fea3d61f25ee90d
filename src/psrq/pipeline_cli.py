"""`psrq run`: the whole pipeline in one command (see psrq.pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psrq.cli_common import WaitOpt

RUN_HELP = """Run the whole pipeline and write one HTML report.

data -> embed -> quantize (PSRQ + RQ-KMeans) -> ID quality -> train MCCA and DIN -> evaluate -> report

Examples:

  psrq run                                  (built-in Last.fm-2k data -> runs/lastfm2k/report.html)

  psrq run --config my-catalogue.yaml       (your own data in the documented Parquet schema)

  psrq run --out runs/try2 --seeds 3        (override single settings without a file)

  psrq run --show-config                    (print the full default configuration as YAML)

A rerun reuses every stage whose inputs did not change; an interrupted run resumes. --force redoes everything.
"""


def run_cmd(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML configuration (see docs/configuration.md)."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Output directory (overrides the config's `output`)."),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per ranking model (overrides rank.seeds).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redo every stage even if it is up to date.")
    ] = False,
    skip_rank: Annotated[
        bool, typer.Option("--skip-rank", help="Stop after semantic IDs and their quality.")
    ] = False,
    show_config: Annotated[
        bool, typer.Option("--show-config", help="Print the effective configuration and exit.")
    ] = False,
    wait: WaitOpt = False,
) -> None:
    import json

    import yaml

    from psrq.config import load_config
    from psrq.outputs import claim_outputs
    from psrq.pipeline import run_outputs, run_pipeline

    cfg = load_config(config, {"out": out, "rank": {"seeds": seeds}})
    if show_config:
        typer.echo(yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False))
        raise typer.Exit()
    with claim_outputs(*run_outputs(cfg), wait=wait):
        report = run_pipeline(cfg, force=force, skip_rank=skip_rank)
    typer.echo(f"report: {report}")


def register(app: typer.Typer) -> None:
    app.command("run", help=RUN_HELP)(run_cmd)
