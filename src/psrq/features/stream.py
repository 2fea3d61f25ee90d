"""`psrq embed text|audio --engine local|ray`: embed items.parquet shards batch by batch.

One encoder per worker (the local process, or each actor of a Ray actor pool, on a GPU when the
actor holds one), record batches in, embedding shards out: ``item_id`` (string) and ``embedding``
(fixed_size_list<float32>[dim]) with the same ``psrq.*`` metadata as the in-memory path, so
`psrq quantize -i text=<dir> --engine ...` reads the result directly.

Differences from the in-memory path (``--engine memory``), all because each batch is on its own:
no embedding cache; item_id uniqueness is checked within a batch only; skipped items (empty text
with --skip-empty, no / unreadable audio) are absent from the output and counted in
``<out>.report.json`` (item IDs listed), but the reason is not recorded per item.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from psrq.engines.base import EngineConfig, MapResult, list_shards, map_parquet
from psrq.errors import InputError

MAX_LISTED_SKIPS = 1_000


def _embedding_table(ids: list[str], vectors: np.ndarray, encoder: Any) -> Any:
    from psrq.features.embed import encoder_metadata
    from psrq.formats.embeddings import embedding_table

    return embedding_table(ids, vectors, dim=encoder.dim, metadata=encoder_metadata(encoder))


def _on_gpu_if_any(encoder: Any) -> Any:
    """Move a torch encoder to the GPU this worker was given, when there is one."""
    import torch

    model = getattr(encoder, "model", None)
    if torch.cuda.is_available() and isinstance(model, torch.nn.Module):
        model.to("cuda")
    return encoder


class TextEmbedMapper:
    """items batch (item_id, text column) -> embeddings batch (item_id, embedding)."""

    def __init__(
        self,
        model: str | None,
        column: str,
        *,
        normalize: bool = True,
        batch_size: int = 64,
        max_length: int = 512,
        trust_remote_code: bool = False,
        skip_empty: bool = False,
        threads: int | None = None,
    ) -> None:
        from psrq.features.base import set_torch_threads
        from psrq.features.text import load_text_encoder

        set_torch_threads(threads)
        self.encoder = _on_gpu_if_any(
            load_text_encoder(
                model,
                normalize=normalize,
                batch_size=batch_size,
                max_length=max_length,
                trust_remote_code=trust_remote_code,
            )
        )
        self.column, self.skip_empty, self.batch_size = column, skip_empty, batch_size

    def __call__(self, batch: Any) -> Any:
        ids = [str(v) for v in batch.column("item_id").to_pylist()]
        texts = batch.column(self.column).to_pylist()
        keep = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        if len(keep) < len(texts) and not self.skip_empty:
            kept = set(keep)
            empty = [ids[i] for i in range(len(ids)) if i not in kept][:10]
            raise InputError(
                f"column {self.column!r} is null or blank for item(s) {empty} (pass --skip-empty to leave them out)"
            )
        vectors = [
            self.encoder.encode([texts[i] for i in keep[s : s + self.batch_size]])
            for s in range(0, len(keep), self.batch_size)
        ]
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, self.encoder.dim), np.float32)
        return _embedding_table([ids[i] for i in keep], matrix, self.encoder)


class AudioEmbedMapper:
    """items batch (item_id, audio path column) -> embeddings batch; undecodable files are left out."""

    def __init__(
        self,
        model: str,
        column: str,
        base_dir: str,
        *,
        layer: int = -1,
        window_seconds: float = 30.0,
        trust_remote_code: bool = False,
        files_per_batch: int = 8,
        threads: int | None = None,
    ) -> None:
        from psrq.features.base import set_torch_threads
        from psrq.features.embed import load_audio_encoder

        set_torch_threads(threads)
        self.encoder = _on_gpu_if_any(
            load_audio_encoder(
                model,
                layer=layer,
                window_seconds=window_seconds,
                trust_remote_code=trust_remote_code,
            )
        )
        self.column, self.base, self.files_per_batch = column, Path(base_dir), files_per_batch

    def __call__(self, batch: Any) -> Any:
        from psrq.features.audio_io import AudioDecodeError, decode_audio

        ids, waves = [], []
        for item_id, path in zip(
            batch.column("item_id").to_pylist(), batch.column(self.column).to_pylist(), strict=True
        ):
            if not isinstance(path, str) or not path.strip():
                continue
            try:
                waves.append(
                    decode_audio(str(self.base / Path(path).expanduser()), self.encoder.sample_rate)
                )
                ids.append(str(item_id))
            except AudioDecodeError:
                continue
        vectors = [
            self.encoder.encode(waves[s : s + self.files_per_batch])
            for s in range(0, len(waves), self.files_per_batch)
        ]
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, self.encoder.dim), np.float32)
        finite = np.isfinite(matrix).all(axis=1)
        return _embedding_table(
            [i for i, ok in zip(ids, finite, strict=True) if ok], matrix[finite], self.encoder
        )


def embed_shards(
    items: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    mapper: type,
    mapper_kwargs: dict[str, Any],
    *,
    column: str,
    engine: EngineConfig,
) -> dict[str, Any]:
    """Run an embed mapper over the items shards; write the shards and <out>.report.json."""
    from psrq.artifacts import write_json

    started = time.perf_counter()
    res: MapResult = map_parquet(
        items, out_dir, mapper, mapper_kwargs, columns=["item_id", column], engine=engine
    )
    report = _report(items, res, column)
    report["seconds"] = round(time.perf_counter() - started, 3)
    write_json(Path(out_dir).with_suffix(".report.json"), report)
    return report


def _ids(path: str | os.PathLike[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.chunked_array(
        [
            pq.read_table(f, columns=["item_id"]).column("item_id").cast(pa.string())
            for f in list_shards(path)
        ]
    )


def _report(items: str | os.PathLike[str], res: MapResult, column: str) -> dict[str, Any]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    all_ids = _ids(items)
    done = _ids(res.out_dir) if res.files else None
    skipped = (
        all_ids
        if done is None
        else all_ids.filter(pc.invert(pc.is_in(all_ids, value_set=done.combine_chunks())))
    )
    meta = pq.read_schema(res.files[0]).metadata if res.files else {}
    return {
        "source": str(items),
        "output": str(res.out_dir),
        "engine": res.engine,
        "column": column,
        "encoder": (meta or {}).get(b"psrq.encoder", b"").decode(),
        "dim": int((meta or {}).get(b"psrq.dim", b"0")),
        "n_items": len(all_ids),
        "n_embedded": res.n_rows,
        "n_skipped": len(skipped),
        "skipped_by_reason": {
            "empty text / no or unreadable audio (not recorded per item when streamed)": len(
                skipped
            )
        }
        if len(skipped)
        else {},
        "skipped": [{"item_id": i} for i in skipped.slice(0, MAX_LISTED_SKIPS).to_pylist()],
        "shards": len(res.files),
        **res.extra,
    }
