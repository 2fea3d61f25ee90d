"""`psrq serve` (the HTTP service) and `psrq export` (ranker as ONNX / TorchScript)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from psrq.cli_common import RankerModelOpt

SERVE_HELP = """Serve semantic IDs for new items, scoring, and the semantic-ID explorer over HTTP.

Loads the quantizer model directory (and optionally a ranker, a text and an audio encoder),
verifies every manifest and checksum, then listens. Needs the extra: pip install 'psrq[serve]'.
Admin routes (POST /admin/reload) need $PSRQ_ADMIN_TOKEN; without it they are disabled.
Requests and responses: docs/serving.md; interactive docs at /docs; the explorer at /.

Examples:

  psrq serve --quantizer runs/lastfm2k/quantizers/psrq --ranker runs/lastfm2k/rank/mcca-psrq/seed0 --items runs/lastfm2k/data/items.parquet --embeddings runs/lastfm2k/embeddings --text-encoder minilm

  psrq serve --run runs/lastfm2k  (the artifacts `psrq run` wrote: PSRQ quantizer, MCCA ranker, items, embeddings, MiniLM)

  psrq serve --quantizer models/sids --port 8080 --workers 2 --max-batch 512
"""

EXPORT_HELP = """Export a trained ranker with its item tables as ONNX or TorchScript.

Inputs: target int64 [batch] and history int64 [batch, L] item rows (0 = padding); output:
logits float32 [batch]. Writes OUT and OUT.json (inputs, item-row convention, source model).

Examples:

  psrq export --model runs/lastfm2k/rank/mcca-psrq/seed0 --format onnx --out mcca.onnx

  psrq export --model runs/lastfm2k/rank/din/seed0 --format torchscript --out din.pt
"""


def _run_paths(run: Path) -> dict[str, str | None]:
    """Artifacts of a `psrq run` output directory (PSRQ quantizer, its MCCA ranker, seed 0)."""
    from psrq.errors import InputError

    quantizers = sorted(
        p for p in (run / "quantizers").glob("*") if (p / "manifest.json").is_file()
    )
    if not quantizers:
        raise InputError(f"{run}: no quantizers/<name>/manifest.json (run `psrq run` first)")
    q = next((p for p in quantizers if p.name == "psrq"), quantizers[0])
    rankers = sorted(run.glob(f"rank/mcca-{q.name}/seed*/model")) or sorted(
        run.glob("rank/mcca*/seed*/model")
    )
    items = run / "data" / "items.parquet"
    return {
        "quantizer": str(q),
        "ranker": str(rankers[0]) if rankers else None,
        "items": str(items) if items.is_file() else None,
        "embeddings": str(run / "embeddings") if (run / "embeddings").is_dir() else None,
        "text_encoder": _encoder_of(run / "embeddings" / "text.parquet"),
        "audio_encoder": _encoder_of(run / "embeddings" / "audio.parquet"),
    }


def _encoder_of(path: Path) -> str | None:
    """The encoder name `psrq serve` loads for embeddings written by `psrq embed` (None: SYNTHETIC or unknown)."""
    from psrq.formats.embeddings import embeddings_metadata

    name = embeddings_metadata(path).get("psrq.encoder", "")
    if name.startswith("sentence-transformers:all-MiniLM-L6-v2"):
        return "minilm"
    for musicnn in ("musicnn-msd", "musicnn-mtt"):
        if name.startswith(musicnn):
            return musicnn
    return None


def serve(
    quantizer: Annotated[
        Path | None,
        typer.Option("--quantizer", help="quantizer model directory (psrq quantize --model-dir)"),
    ] = None,
    ranker: Annotated[
        Path | None,
        typer.Option(
            "--ranker", help="ranker model directory (or a training output holding model/)"
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option("--run", help="a `psrq run` output directory: take every artifact from it"),
    ] = None,
    text_encoder: Annotated[
        str | None,
        typer.Option("--text-encoder", help="'minilm' or a local model directory (to accept text)"),
    ] = None,
    audio_encoder: Annotated[
        str | None,
        typer.Option(
            "--audio-encoder",
            help="'musicnn-msd' or a local model directory (to accept audio files)",
        ),
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option("--items", help="items.parquet: titles (title/name column) for the explorer"),
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            "--embeddings", help="embeddings directory: embedding-space neighbours in the explorer"
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="uvicorn worker processes (each loads the models)"),
    ] = 1,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch", min=1, help="items per POST /v1/items/sids (and new_items per score)"
        ),
    ] = 256,
    max_candidates: Annotated[int, typer.Option("--max-candidates", min=1)] = 1000,
    max_body_mb: Annotated[
        float,
        typer.Option(
            "--max-body-mb", min=0.001, help="largest request body (audio uploads included)"
        ),
    ] = 8.0,
    log_level: Annotated[str, typer.Option("--log-level")] = "warning",
) -> None:
    from psrq.errors import InputError
    from psrq.serve.app import ADMIN_TOKEN_ENV, SETTINGS_ENV, ServeSettings, create_app
    from psrq.serve.loaded import ServeSpec

    found: dict[str, str | None] = _run_paths(run) if run is not None else {}
    given = {
        "quantizer": quantizer,
        "ranker": ranker,
        "items": items,
        "embeddings": embeddings,
        "text_encoder": text_encoder,
        "audio_encoder": audio_encoder,
    }
    values = {k: (str(v) if v is not None else found.get(k)) for k, v in given.items()}
    if values["quantizer"] is None:
        raise InputError(
            "give --quantizer (a quantizer model directory) or --run (a psrq run output directory)"
        )
    settings = ServeSettings(
        spec=ServeSpec(**values),
        max_batch=max_batch,
        max_candidates=max_candidates,
        max_body_bytes=int(max_body_mb * (1 << 20)),
        admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None,
    )
    import uvicorn

    typer.echo(
        f"psrq serve: loading {', '.join(f'{k}={v}' for k, v in values.items() if v)}", err=True
    )
    if workers == 1:
        app = create_app(settings)  # load (and verify) before listening: errors surface here
        typer.echo(
            f"psrq serve: listening on http://{host}:{port} (docs at /docs, explorer at /)",
            err=True,
        )
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    create_app(settings)  # verify once in this process so a bad directory fails before forking
    import tempfile

    settings.reload_file = str(Path(tempfile.mkdtemp(prefix="psrq-serve-")) / "reload.json")
    os.environ[SETTINGS_ENV] = settings.to_json()
    typer.echo(f"psrq serve: {workers} workers on http://{host}:{port}", err=True)
    run_workers(
        uvicorn.Config(
            "psrq.serve.app:create_app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )
    )


def run_workers(config: Any) -> None:
    """uvicorn's multi-process mode (what `uvicorn.run(..., workers=N)` does) on a socket from
    `listening_socket`."""
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[listening_socket(config)]).run()


def listening_socket(config: Any) -> Any:
    """The workers' shared listening socket, bound by uvicorn, with TCP_NODELAY.

    Why: uvicorn binds it with protocol 0, so asyncio does not switch Nagle's algorithm off on
    the accepted connections, and a response written in two pieces (headers, body) waits for
    the client's delayed ACK: measured 48 ms for every request with 2 workers against 3-4 ms
    with 1. Set on the listening socket, TCP_NODELAY is inherited by every accepted connection
    (Linux; tests/serve/test_serve_cli.py checks it).
    """
    import socket

    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def export(
    model: RankerModelOpt,
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="output file (default: <model>/export/model.onnx or model.pt)"),
    ] = None,
) -> None:
    from psrq.serve.export import export_ranker

    if out is None:
        out = Path(model) / "export" / ("model.onnx" if fmt == "onnx" else "model.pt")
    info = export_ranker(model, out, fmt=fmt)
    typer.echo(f"wrote {info['path']} ({info['model']}, {fmt}) and {info['path']}.json")


def register(app: typer.Typer) -> None:
    app.command("serve", help=SERVE_HELP)(serve)
    app.command("export", help=EXPORT_HELP)(export)
