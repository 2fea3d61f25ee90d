"""Semantic IDs for catalogues that do not fit in memory: fit on a sample, assign everywhere.

    layout = stream_layout(items="items/")                # {modality: column}: emb_text, emb_audio
    fit_on_sample("items/", layout, mq, model_dir="model", sample_rows=65_536, seed=0)
    assign_shards("model", "items/", layout, "sids/", engine=EngineConfig(kind="ray"))

Input: one Parquet file or a directory of Parquet shards, each row one item holding every
modality it has (``item_id`` + ``emb_<modality>`` list columns, null = lacks the modality), or a
single modality (``item_id`` + ``embedding``, from ``-i text=embeddings/text/``). Rows must be
self-contained because shards are encoded independently: several ``-i`` inputs would need a
join by item ID across files, which the streamed path does not do (use the items layout).

Sampling (seeded, documented, without loading the shards): row counts come from the Parquet
footers; ``rng = numpy.random.default_rng(seed)`` draws ``sample_rows`` distinct global row
numbers uniformly (global = shards in sorted file-name order, rows in file order); each shard is
then read one row group at a time and only the drawn rows are kept. The same files and seed
always give the same sample. Memory: the sample + one row group.

Assignment maps `AssignMapper` (the frozen MultimodalQuantizer, loaded once per worker) over
record batches with `psrq.engines.map_parquet`. A row's codes depend only on the row, so every
engine, batch size and shard layout gives the codes that `MultimodalQuantizer.transform` gives
for the whole file in memory. Output rows follow the sids.parquet schema; disambiguation
suffixes need every item at once and are not produced here (use `psrq assign` in memory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from psrq.engines.base import EngineConfig, MapResult, list_shards, map_parquet
from psrq.errors import InputError
from psrq.formats.embeddings import (
    EMBEDDING_COLUMN,
    ITEM_ID_COLUMN,
    ITEMS_PREFIX,
    check_modality_name,
    table_modalities,
)
from psrq.quantize.embeddings_io import parse_assignment

DEFAULT_SAMPLE_ROWS = 65_536


def stream_layout(
    *,
    items: str | os.PathLike[str] | None = None,
    inputs: list[str] | None = None,
    modalities: list[str] | None = None,
) -> tuple[Path, dict[str, str]]:
    """(input path, {modality: column}) for the streamed path, from --items or one --input."""
    from psrq.engines.base import shard_schema

    inputs = inputs or []
    if (items is None) == (not inputs):
        raise InputError(
            "streamed quantize/assign reads either --items (file or directory of shards) or one --input MODALITY=PATH"
        )
    if len(inputs) > 1:
        raise InputError(
            "streamed quantize/assign reads one --input (shards are encoded independently, so several "
            "modalities must sit in one row: give --items with emb_<modality> columns instead)"
        )
    if items is not None:
        path = Path(items)
        names = shard_schema(path).names
        layout = {c[len(ITEMS_PREFIX) :]: c for c in names if c.startswith(ITEMS_PREFIX)}
        if modalities is not None:
            layout = {m: layout[m] for m in modalities if m in layout}
        if not layout:
            raise InputError(f"{path}: no emb_<modality> column (columns: {names})")
    else:
        modality, value = parse_assignment(inputs[0], option="--input")
        path = Path(value)
        names = shard_schema(path).names
        if EMBEDDING_COLUMN not in names:
            raise InputError(f"{path}: no {EMBEDDING_COLUMN!r} column (columns: {names})")
        layout = {modality: EMBEDDING_COLUMN}
    for m in layout:
        check_modality_name(m, where=str(path))
    if ITEM_ID_COLUMN not in names:
        raise InputError(f"{path}: no {ITEM_ID_COLUMN!r} column (columns: {names})")
    return path, layout


def sample_table(path: str | os.PathLike[str], columns: list[str], n: int, seed: int) -> Any:
    """A seeded uniform sample of min(n, total) rows of the shards (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = list_shards(path)
    counts = [pq.read_metadata(s).num_rows for s in shards]  # footers only
    total = int(sum(counts))
    if total == 0:
        raise InputError(f"{path}: no rows")
    rows = (
        np.arange(total)
        if n >= total
        else np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    )
    parts, offset = [], 0
    pool = pa.default_memory_pool()
    for shard, count in zip(shards, counts, strict=True):
        lo, hi = np.searchsorted(rows, [offset, offset + count])
        offset += count
        if hi == lo:
            continue
        local, start = rows[lo:hi] - (offset - count), 0
        # One file open at a time, released after use: readers kept open for every shard held
        # ~1 GB of freed-but-retained pages at 100 shards (measured), i.e. memory grew with n.
        with pq.ParquetFile(shard) as f:
            for g in range(f.num_row_groups):
                g_rows = f.metadata.row_group(g).num_rows
                a, b = np.searchsorted(local, [start, start + g_rows])
                if b > a:
                    group = f.read_row_group(g, columns=columns, use_threads=False)
                    parts.append(group.take(pa.array(local[a:b] - start)))
                    del group
                start += g_rows
        pool.release_unused()
    return pa.concat_tables(parts)


def fit_on_sample(
    path: str | os.PathLike[str],
    layout: dict[str, str],
    quantizer: Any,
    *,
    model_dir: str | os.PathLike[str],
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit `quantizer` (a MultimodalQuantizer) on a seeded sample of the shards and save it."""
    import time

    started = time.perf_counter()
    table = sample_table(path, [ITEM_ID_COLUMN, *layout.values()], sample_rows, seed)
    mods = table_modalities(table, layout, f"{path} (sample)")
    del table
    quantizer.fit(mods)
    quantizer.save(model_dir)
    return {
        "sample_rows": int(max(len(e) for e in mods.values())),
        "fit_seconds": time.perf_counter() - started,
    }


class AssignMapper:
    """The frozen MultimodalQuantizer of `model_dir` as a batch -> sids batch function."""

    def __init__(self, model_dir: str, layout: dict[str, str]) -> None:
        from psrq.quantize.kmeans import import_faiss
        from psrq.quantize.multimodal import MultimodalQuantizer

        import_faiss()  # sets OMP_WAIT_POLICY before numpy/faiss threads start spinning
        self.model = MultimodalQuantizer.load(model_dir)
        unknown = [m for m in layout if m not in self.model.modalities_]
        if unknown:
            raise InputError(
                f"modality {unknown} was not fitted; the model in {model_dir} knows {self.model.modalities_}"
            )
        self.layout = layout
        self.source = str(model_dir)

    def __call__(self, batch: Any) -> Any:
        mods = table_modalities(batch, self.layout, "batch")
        if not mods:
            return self._empty()
        return self.model.transform(mods).to_table()

    def _empty(self) -> Any:
        """The output schema with no rows (a batch whose every embedding cell is null)."""
        m = self.model.modalities_[0]
        one = np.zeros((1, self.model.dims_[m]), np.float32)
        return (
            self.model.transform({m: (np.array(["_"], dtype=object), one)}).to_table().slice(0, 0)
        )


def assign_shards(
    model_dir: str | os.PathLike[str],
    path: str | os.PathLike[str],
    layout: dict[str, str],
    out_dir: str | os.PathLike[str],
    *,
    engine: EngineConfig | None = None,
) -> MapResult:
    """Codes for every row of the shards under `path`, written as sids shards to `out_dir`."""
    return map_parquet(
        path,
        out_dir,
        AssignMapper,
        {"model_dir": str(Path(model_dir).resolve()), "layout": dict(layout)},
        columns=[ITEM_ID_COLUMN, *layout.values()],
        engine=engine,
    )
