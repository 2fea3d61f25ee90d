"""`psrq embed text` and `psrq embed audio`: items.parquet -> embeddings/<modality>.parquet.

Heavy libraries (torch, transformers, sentence-transformers) load inside the commands so
`psrq --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psrq.cli_common import ThreadsOpt, WaitOpt
from psrq.engines.options import EngineChoice, engine_options

ENGINE_HELP = (
    "memory: the whole file at once (cache, per-item skip reasons); local / ray: stream --items "
    "(a Parquet file or a directory of shards) in --batch-rows batches, in this process or on a Ray Data "
    "actor pool (one encoder per actor, one GPU each when the cluster has GPUs); --out is then a directory of shards."
)

embed_app = typer.Typer(
    name="embed",
    help=(
        "Encode item text or audio into embeddings/<modality>.parquet (+ a .report.json of skips).\n\n"
        "Examples:\n\n"
        "  psrq embed text --items data/items.parquet --out embeddings/text.parquet\n\n"
        "  psrq embed audio --audio-dir data/audio-clips --out embeddings/audio.parquet\n\n"
        "  psrq embed text --items items_shards/ --out embeddings/text/ --engine ray --actors 1"
    ),
    no_args_is_help=True,
)


def _outputs(out: Path, *, streamed: bool) -> tuple:
    """--out (a file, or with a streamed engine a directory of Parquet shards, psrq's, replaced whole) + its report."""
    from psrq.outputs import Output

    return Output(out, "model_dir" if streamed else "file", "--out"), Output(
        out.with_suffix(".report.json"), "file", "--out", lock=False
    )


def _summary(report: dict, out: Path) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    reasons = ", ".join(f"{n} {r}" for r, n in report["skipped_by_reason"].items()) or "none"
    console.print(
        f"[green]wrote[/green] {out}: {report['n_embedded']}/{report['n_items']} items, "
        f"dim {report['dim']}, encoder {report['encoder']}; skipped: {reasons} "
        f"(details in {out.with_suffix('.report.json')}); {report['seconds']:.1f} s"
    )


@embed_app.command(
    "text",
    help=(
        "Embed the text column of items.parquet (default model: all-MiniLM-L6-v2, 384-d, unit length).\n\n"
        "Examples:\n\n"
        "  psrq embed text --items data/items.parquet --out embeddings/text.parquet\n\n"
        "  psrq embed text --items data/items.parquet --out embeddings/text.parquet "
        "--model ~/models/Llama-3.2-1B --batch-size 8\n\n"
        "Vectors are cached per (model fingerprint, text) under --cache-dir, so reruns are instant."
    ),
)
@engine_options(engine_help=ENGINE_HELP, batch_rows=4096)
def embed_text(
    items: Annotated[
        Path, typer.Option("--items", help="items.parquet with item_id and the text column.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output Parquet, e.g. embeddings/text.parquet.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Local model directory (sentence-transformers or any HF AutoModel). Default: all-MiniLM-L6-v2.",
        ),
    ] = None,
    column: Annotated[
        str, typer.Option("--column", help="Column holding the text to embed.")
    ] = "text",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Texts per forward pass.")
    ] = 64,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Embedding cache folder (default: $PSRQ_CACHE_DIR/embeddings or .psrq-cache/embeddings).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the cache.")
    ] = False,
    skip_empty: Annotated[
        bool,
        typer.Option(
            "--skip-empty",
            help="Leave items with null/blank text out (counted in the report) instead of failing.",
        ),
    ] = False,
    no_normalize: Annotated[
        bool, typer.Option("--no-normalize", help="Keep raw vectors (default: L2-normalised).")
    ] = False,
    max_length: Annotated[
        int,
        typer.Option(
            "--max-length", min=1, help="Token limit for HF models (longer text is truncated)."
        ),
    ] = 512,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code", help="Allow a model directory's own code (Baichuan2 needs it)."
        ),
    ] = False,
    threads: ThreadsOpt = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="torch, onnx (ONNX Runtime fp32) or onnx-int8 (dynamic int8); sentence-transformers models only. The ONNX export is made once and cached beside the embedding cache (docs/encoders.md).",
        ),
    ] = "torch",
    wait: WaitOpt = False,
    *,
    engine: EngineChoice,
) -> None:
    from psrq.outputs import claim_outputs

    if engine.streamed:
        from psrq.errors import ConfigError
        from psrq.features.stream import TextEmbedMapper, embed_shards

        if backend != "torch":
            raise ConfigError(
                f"--backend {backend} is for --engine memory; the streamed engines run the torch backend"
            )
        cfg = engine.config()
        kwargs = {
            "model": model,
            "column": column,
            "normalize": not no_normalize,
            "batch_size": batch_size,
            "max_length": max_length,
            "trust_remote_code": trust_remote_code,
            "skip_empty": skip_empty,
            "threads": threads,
        }
        with claim_outputs(*_outputs(out, streamed=True), wait=wait):
            _summary(
                embed_shards(items, out, TextEmbedMapper, kwargs, column=column, engine=cfg), out
            )
        return
    with claim_outputs(*_outputs(out, streamed=False), wait=wait):
        _embed_text(
            items,
            out,
            model,
            column,
            batch_size,
            cache_dir,
            no_cache,
            skip_empty,
            no_normalize,
            max_length,
            trust_remote_code,
            threads,
            backend,
        )


def _embed_text(
    items,
    out,
    model,
    column,
    batch_size,
    cache_dir,
    no_cache,
    skip_empty,
    no_normalize,
    max_length,
    trust_remote_code,
    threads,
    backend,
) -> None:
    from psrq.features.base import set_torch_threads
    from psrq.features.cache import default_cache_dir
    from psrq.features.embed import embed_text_items, read_items
    from psrq.features.text import load_text_encoder

    set_torch_threads(threads)
    read_items(items, [column])  # fail on a bad items file before loading a model
    cache_root = cache_dir or default_cache_dir()
    encoder = load_text_encoder(
        model,
        normalize=not no_normalize,
        batch_size=batch_size,
        max_length=max_length,
        trust_remote_code=trust_remote_code,
        backend=backend,
        onnx_dir=Path(cache_root).parent / "onnx",
    )
    report = embed_text_items(
        items,
        out,
        encoder,
        column=column,
        batch_size=max(batch_size, 256),
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        on_empty="skip" if skip_empty else "error",
    )
    _summary(report, out)


@embed_app.command(
    "audio",
    help=(
        "Embed audio files: musicnn (default, 200-d, weights from the musicnn wheel) or a local MERT directory.\n\n"
        "Examples:\n\n"
        "  psrq embed audio --items data/items.parquet --out embeddings/audio.parquet\n\n"
        "  psrq embed audio --audio-dir data/audio-clips --out embeddings/audio.parquet --model musicnn-mtt\n\n"
        "  psrq embed audio --items data/items.parquet --out embeddings/audio.parquet "
        "--model ~/models/MERT-v1-95M --layer 6 --trust-remote-code\n\n"
        "Items without audio_path, and unreadable/empty/silent files, are left out and listed in "
        "<out>.report.json."
    ),
)
@engine_options(engine_help=ENGINE_HELP, batch_rows=64)
def embed_audio(
    out: Annotated[
        Path, typer.Option("--out", help="Output Parquet, e.g. embeddings/audio.parquet.")
    ],
    items: Annotated[
        Path | None,
        typer.Option("--items", help="items.parquet with item_id and an audio path column."),
    ] = None,
    audio_dir: Annotated[
        Path | None,
        typer.Option("--audio-dir", help="A folder of audio files instead (item_id = file stem)."),
    ] = None,
    model: Annotated[
        str,
        typer.Option("--model", help="musicnn-msd, musicnn-mtt, or a local HF directory (MERT)."),
    ] = "musicnn-msd",
    column: Annotated[
        str, typer.Option("--column", help="Column with paths (relative to the items file).")
    ] = "audio_path",
    layer: Annotated[
        int, typer.Option("--layer", help="Hidden layer to mean-pool for HF models (-1 = last).")
    ] = -1,
    window_seconds: Annotated[
        float,
        typer.Option("--window-seconds", min=1.0, help="HF models: audio window per forward pass."),
    ] = 30.0,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code",
            help="Allow a model directory's own code (the real MERT needs it).",
        ),
    ] = False,
    files_per_batch: Annotated[
        int,
        typer.Option("--files-per-batch", min=1, help="Files whose patches share a forward pass."),
    ] = 8,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Embedding cache folder, keyed by file content (default: $PSRQ_CACHE_DIR/embeddings or .psrq-cache/embeddings).",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read or write the cache.")
    ] = False,
    threads: ThreadsOpt = None,
    wait: WaitOpt = False,
    *,
    engine: EngineChoice,
) -> None:
    from psrq.errors import InputError
    from psrq.outputs import claim_outputs

    if engine.streamed:
        from psrq.features.stream import AudioEmbedMapper, embed_shards

        if items is None:
            raise InputError(
                "--engine local/ray reads --items (a Parquet file or a directory of shards), not --audio-dir"
            )
        cfg = engine.config()
        # Relative audio paths resolve against the folder holding the items file (or the shards folder).
        base = (items if items.is_dir() else items.parent).resolve()
        kwargs = {
            "model": model,
            "column": column,
            "base_dir": str(base),
            "layer": layer,
            "window_seconds": window_seconds,
            "trust_remote_code": trust_remote_code,
            "files_per_batch": files_per_batch,
            "threads": threads,
        }
        with claim_outputs(*_outputs(out, streamed=True), wait=wait):
            _summary(
                embed_shards(items, out, AudioEmbedMapper, kwargs, column=column, engine=cfg), out
            )
        return
    with claim_outputs(*_outputs(out, streamed=False), wait=wait):
        _embed_audio(
            out,
            items,
            audio_dir,
            model,
            column,
            layer,
            window_seconds,
            trust_remote_code,
            files_per_batch,
            cache_dir,
            no_cache,
            threads,
        )


def _embed_audio(
    out,
    items,
    audio_dir,
    model,
    column,
    layer,
    window_seconds,
    trust_remote_code,
    files_per_batch,
    cache_dir,
    no_cache,
    threads,
) -> None:
    from psrq.errors import InputError
    from psrq.features.base import set_torch_threads
    from psrq.features.cache import default_cache_dir
    from psrq.features.embed import (
        audio_items_from_dir,
        audio_items_from_table,
        embed_audio_items,
        load_audio_encoder,
    )

    if (items is None) == (audio_dir is None):
        raise InputError("give exactly one of --items ITEMS.parquet or --audio-dir FOLDER")
    set_torch_threads(threads)
    pairs = (
        audio_items_from_table(items, column)
        if items is not None
        else audio_items_from_dir(audio_dir)
    )
    encoder = load_audio_encoder(
        model, layer=layer, window_seconds=window_seconds, trust_remote_code=trust_remote_code
    )
    report = embed_audio_items(
        pairs,
        out,
        encoder,
        source=str(items if items is not None else audio_dir),
        files_per_batch=files_per_batch,
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
    )
    _summary(report, out)


def register(app: typer.Typer) -> None:
    app.add_typer(embed_app, name="embed")
