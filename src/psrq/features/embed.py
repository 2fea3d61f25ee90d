"""Catalogue-level embedding: items.parquet (or a folder of audio files) -> embeddings/<modality>.parquet.

Output (docs/conventions.md): one row per item that has the modality, columns ``item_id``
(string) and ``embedding`` (fixed_size_list<float32>[dim]), key-value metadata ``psrq.encoder``,
``psrq.dim``, ``psrq.modality``, ``psrq.encoder_fingerprint``; written atomically.

Missing-modality rule: an item with no text (when skipping is asked for), no audio path, or an
unreadable / empty / silent audio file is absent from the output. Every such item is listed
with its reason in a JSON report next to the output (``<name>.report.json``) and counted there
and in the Parquet metadata (``psrq.n_items``, ``psrq.n_embedded``, ``psrq.n_skipped``).
Nothing is lost silently.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from psrq.artifacts import write_json
from psrq.errors import InputError
from psrq.features.audio_io import AUDIO_EXTENSIONS, AudioDecodeError, decode_audio
from psrq.features.base import Encoder
from psrq.formats.embeddings import write_embedding_parquet

OnEmpty = Literal["error", "skip"]
MAX_LISTED = 10


def report_path_for(out: str | os.PathLike[str]) -> Path:
    """embeddings/audio.parquet -> embeddings/audio.report.json"""
    return Path(out).with_suffix(".report.json")


def _listing(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:MAX_LISTED])
    return shown + (f" and {len(values) - MAX_LISTED} more" if len(values) > MAX_LISTED else "")


# ---- reading items ---------------------------------------------------------------------------
def read_items(
    path: str | os.PathLike[str], columns: Sequence[str], *, optional: Sequence[str] = ()
) -> Any:
    """Read `columns` (+ those of `optional` present) of items.parquet as a pyarrow Table.

    Checks: the file exists and is Parquet, the columns exist, item_id is non-null and unique.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise InputError(f"items file not found: {p}")
    try:
        schema = pq.read_schema(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{p}: not a readable Parquet file ({e})") from e
    wanted = ["item_id", *columns]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise InputError(f"{p}: missing column(s) {missing}; available: {schema.names}")
    table = pq.read_table(
        p, columns=wanted + [c for c in optional if c in schema.names and c not in wanted]
    )
    ids = table.column("item_id")
    if ids.null_count:
        rows = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False)).tolist()
        raise InputError(f"{p}: column 'item_id' is null at row(s) {_listing(rows)}")
    id_list = [str(v) for v in ids.to_pylist()]
    _check_unique(id_list, str(p))
    return table.set_column(
        table.schema.get_field_index("item_id"), "item_id", pa.array(id_list, pa.string())
    )


def _check_unique(item_ids: Sequence[str], source: str) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for i in item_ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise InputError(
            f"{source}: duplicate item_id(s) {_listing(sorted(set(dups)))}; item ids must be unique"
        )


# ---- writing ---------------------------------------------------------------------------------
def encoder_metadata(encoder: Encoder) -> dict[str, str]:
    """The ``psrq.*`` metadata an embeddings file records about its encoder."""
    return {
        "psrq.encoder": encoder.name,
        "psrq.dim": str(encoder.dim),
        "psrq.modality": encoder.modality,
        "psrq.encoder_fingerprint": encoder.fingerprint,
    }


def _write_outputs(
    out: str | os.PathLike[str],
    ids: list[str],
    vectors: np.ndarray,
    encoder: Encoder,
    report: dict[str, Any],
) -> dict[str, Any]:
    counts = {
        "n_items": report["n_items"],
        "n_embedded": report["n_embedded"],
        "n_skipped": report["n_skipped"],
    }
    meta = {**encoder_metadata(encoder), **{f"psrq.{k}": str(v) for k, v in counts.items()}}
    write_embedding_parquet(out, ids, vectors, dim=encoder.dim, metadata=meta)
    write_json(report_path_for(out), report)
    return report


def _base_report(encoder: Encoder, source: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    return {
        "modality": encoder.modality,
        "encoder": encoder.name,
        "encoder_fingerprint": encoder.fingerprint,
        "dim": encoder.dim,
        "source": source,
        "output": str(out),
    }


# ---- text ------------------------------------------------------------------------------------
def embed_text_items(
    items: str | os.PathLike[str],
    out: str | os.PathLike[str],
    encoder: Encoder,
    *,
    column: str = "text",
    batch_size: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
    on_empty: OnEmpty = "error",
    progress: bool = True,
) -> dict[str, Any]:
    """Embed `column` of every item. Null/blank text raises (naming the items) or, with
    on_empty='skip', leaves the item out and counts it. Returns the report (also written)."""
    from psrq.features.text import encode_texts

    if on_empty not in ("error", "skip"):
        raise InputError(f"on_empty must be 'error' or 'skip', got {on_empty!r}")
    started = time.perf_counter()
    table = read_items(items, [column])
    ids = table.column("item_id").to_pylist()
    texts = table.column(column).to_pylist()
    if texts and not all(t is None or isinstance(t, str) for t in texts):
        raise InputError(
            f"{items}: column {column!r} must hold strings, got {table.schema.field(column).type}"
        )
    empty = [i for i, t in zip(ids, texts, strict=True) if t is None or not t.strip()]
    if empty and on_empty == "error":
        raise InputError(
            f"{items}: column {column!r} is null or blank for {len(empty)} item(s): {_listing(empty)} "
            "(fix the text, or pass --skip-empty to leave them out of the embeddings)"
        )
    empty_set = set(empty)
    keep = [(i, t) for i, t in zip(ids, texts, strict=True) if i not in empty_set]
    kept_ids = [i for i, _ in keep]
    vectors, hits = encode_texts(
        encoder, [t for _, t in keep], batch_size=batch_size, cache_dir=cache_dir, progress=progress
    )
    report = {
        **_base_report(encoder, str(items), out),
        "column": column,
        "n_items": len(ids),
        "n_embedded": len(kept_ids),
        "n_skipped": len(empty),
        "skipped_by_reason": {"empty text": len(empty)} if empty else {},
        "skipped": [{"item_id": i, "reason": "empty text"} for i in empty],
        "cache_dir": str(cache_dir) if cache_dir else None,
        "n_cache_hits": hits,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return _write_outputs(out, kept_ids, vectors, encoder, report)


# ---- audio -----------------------------------------------------------------------------------
def audio_items_from_table(
    items: str | os.PathLike[str], column: str = "audio_path"
) -> list[tuple[str, str | None]]:
    """(item_id, absolute audio path or None) per item; relative paths resolve against the items file."""
    table = read_items(items, [column])
    base = Path(items).resolve().parent
    pairs: list[tuple[str, str | None]] = []
    for item_id, path in zip(
        table.column("item_id").to_pylist(), table.column(column).to_pylist(), strict=True
    ):
        if path is not None and not isinstance(path, str):
            raise InputError(
                f"{items}: column {column!r} must hold file paths (strings); item {item_id!r} has {path!r}"
            )
        if path is None or not path.strip():
            pairs.append((item_id, None))
        else:
            pairs.append((item_id, str(base / Path(path).expanduser())))
    return pairs


def audio_items_from_dir(folder: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """Every audio file directly in `folder` (sorted), item_id = file stem."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"audio folder not found: {root}")
    files = sorted(
        p for p in root.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    if not files:
        raise InputError(f"{root}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    ids = [p.stem for p in files]
    _check_unique(ids, f"{root} (item_id = file stem)")
    return [(p.stem, str(p)) for p in files]


def _decoded(
    pairs: list[tuple[str, str]], sample_rate: int, workers: int
) -> Iterator[tuple[str, str, np.ndarray | AudioDecodeError]]:
    """Decode files in a small thread pool (libsndfile and soxr release the GIL), in order."""

    def load(path: str) -> np.ndarray | AudioDecodeError:
        try:
            return decode_audio(path, sample_rate)
        except AudioDecodeError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        # pool.map keeps at most the whole list in flight; chunk it so memory stays bounded.
        chunk = max(workers, 1) * 4
        for start in range(0, len(pairs), chunk):
            part = pairs[start : start + chunk]
            yield from (
                (i, p, r)
                for (i, p), r in zip(part, pool.map(load, [p for _, p in part]), strict=True)
            )


def _file_keys(pairs: list[tuple[str, str]], workers: int) -> dict[str, bytes]:
    """item_id -> SHA-256 of the file's bytes, for files that can be read (others fail later, named)."""
    import hashlib

    def key(path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "sha256").digest()
        except OSError:
            return None

    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        digests = list(pool.map(key, [p for _, p in pairs]))
    return {i: d for (i, _), d in zip(pairs, digests, strict=True) if d is not None}


def embed_audio_items(
    pairs: list[tuple[str, str | None]],
    out: str | os.PathLike[str],
    encoder: Any,
    *,
    source: str = "(item list)",
    files_per_batch: int = 8,
    decode_workers: int = 2,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed (item_id, path or None) pairs with an audio encoder; skips are recorded, never lost.

    With `cache_dir`, vectors are cached per (encoder fingerprint, SHA-256 of the file's bytes):
    a rerun decodes and encodes only new or changed files. Output rows keep the input order.
    """
    from tqdm.auto import tqdm

    from psrq.features.cache import EmbeddingCache

    started = time.perf_counter()
    skipped: list[dict[str, str]] = [
        {"item_id": i, "reason": "no audio"} for i, p in pairs if p is None
    ]
    with_audio = [(i, p) for i, p in pairs if p is not None]
    results: dict[str, np.ndarray] = {}
    cache = (
        EmbeddingCache(cache_dir, "audio", encoder.fingerprint, encoder.dim)
        if cache_dir is not None
        else None
    )
    keys = _file_keys(with_audio, decode_workers) if cache is not None else {}
    if cache is not None:
        found = cache.get_many(list(keys.values()))
        results.update({i: found[keys[i]] for i, _ in with_audio if keys.get(i) in found})
    n_hits = len(results)
    todo = [(i, p) for i, p in with_audio if i not in results]
    pending: list[tuple[str, str, np.ndarray]] = []
    audio_seconds = 0.0

    def flush() -> None:
        if not pending:
            return
        emb = encoder.encode([w for _, _, w in pending])
        done: list[tuple[bytes, np.ndarray]] = []
        for (item_id, path, _), v in zip(pending, emb, strict=True):
            if np.isfinite(v).all():
                results[item_id] = v
                if item_id in keys:
                    done.append((keys[item_id], v))
            else:
                skipped.append({"item_id": item_id, "path": path, "reason": "non-finite embedding"})
        if cache is not None and done:
            cache.put_many([k for k, _ in done], np.stack([v for _, v in done]))
        pending.clear()

    try:
        with tqdm(
            total=len(todo), desc=f"embed audio ({encoder.name})", unit="file", disable=not progress
        ) as bar:
            for item_id, path, result in _decoded(todo, encoder.sample_rate, decode_workers):
                if isinstance(result, AudioDecodeError):
                    skipped.append(
                        {
                            "item_id": item_id,
                            "path": path,
                            "reason": result.reason,
                            "detail": result.detail,
                        }
                    )
                else:
                    audio_seconds += len(result) / encoder.sample_rate
                    pending.append((item_id, path, result))
                    if len(pending) >= files_per_batch:
                        flush()
                bar.update(1)
            flush()
    finally:
        if cache is not None:
            cache.close()
    ids = [i for i, _ in pairs if i in results]
    by_reason: dict[str, int] = {}
    for s in skipped:
        by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
    report = {
        **_base_report(encoder, source, out),
        "sample_rate": encoder.sample_rate,
        "n_items": len(pairs),
        "n_embedded": len(ids),
        "n_skipped": len(skipped),
        "skipped_by_reason": by_reason,
        "skipped": skipped,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "n_cache_hits": n_hits,
        "audio_seconds_decoded": round(audio_seconds, 2),
        "seconds": round(time.perf_counter() - started, 3),
    }
    matrix = np.stack([results[i] for i in ids]) if ids else np.zeros((0, encoder.dim), np.float32)
    return _write_outputs(out, ids, matrix, encoder, report)


def load_audio_encoder(
    model: str = "musicnn-msd",
    *,
    layer: int = -1,
    window_seconds: float = 30.0,
    trust_remote_code: bool = False,
) -> Any:
    """'musicnn-msd' / 'musicnn-mtt' -> MusicnnEncoder; a local HF directory (MERT) -> HFAudioEncoder."""
    from psrq.features.musicnn import CHECKPOINTS

    if model in CHECKPOINTS:
        from psrq.features.musicnn import MusicnnEncoder

        return MusicnnEncoder(model)
    if not Path(model).is_dir():
        raise InputError(
            f"audio model {model!r} is neither {' nor '.join(sorted(CHECKPOINTS))} nor a local "
            "Hugging Face directory (models are never downloaded)"
        )
    from psrq.features.hf_audio import HFAudioEncoder

    return HFAudioEncoder(
        model, layer=layer, window_seconds=window_seconds, trust_remote_code=trust_remote_code
    )


def read_report(out: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON report written next to an embeddings file."""
    return json.loads(report_path_for(out).read_text())
