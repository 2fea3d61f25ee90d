"""The `psrq` command: a thin layer over the library. Each stage registers its own commands.

Stage modules (`psrq/<stage>/cli.py`) expose `register(app)`; heavy imports (torch, faiss,
sentence-transformers) happen inside the commands so `psrq --help` stays instant.
"""

from __future__ import annotations

import importlib
import os

import typer

# Models are loaded from local files only; nothing may be fetched from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    name="psrq",
    help=(
        "Multimodal semantic IDs (PSRQ) and MCCA ranking for music recommendation.\n\n"
        "Quick start:  psrq run            (whole pipeline on the built-in Last.fm-2k data)\n\n"
        "Stages, one by one (example):\n\n"
        "  psrq data prepare lastfm2k --out runs/lf/data\n\n"
        "  psrq embed text --items runs/lf/data/items.parquet --out runs/lf/embeddings/text.parquet\n\n"
        "  psrq quantize -i text=runs/lf/embeddings/text.parquet --out runs/lf/sids.parquet\n\n"
        "  psrq train --samples runs/lf/data/samples --sids runs/lf/sids.parquet --out runs/lf/mcca\n\n"
        "Every command's --help has examples."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

STAGE_CLIS = [
    "psrq.data.cli",
    "psrq.features.cli",
    "psrq.quantize.cli",
    "psrq.rank.cli",
    "psrq.pipeline_cli",
    "psrq.serve.cli",
]


def _register_all() -> None:
    for module_name in STAGE_CLIS:
        importlib.import_module(module_name).register(app)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from psrq import __version__

        typer.echo(__version__)
        raise typer.Exit()


_register_all()


def main() -> None:
    from psrq.errors import PsrqError

    try:
        app()
    except PsrqError as e:  # expected failures: one clear line, no traceback
        typer.secho(f"error: {e}", err=True, fg="red")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
