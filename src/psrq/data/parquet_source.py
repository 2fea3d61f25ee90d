"""Bring your own data: items.parquet + interactions.parquet in the schema of docs/conventions.md.

Items may carry precomputed modalities as emb_<modality> list<float> columns (in-house audio or
image embeddings); they become embeddings/<modality>.parquet next to the samples, and `text` is
then optional.

Also reads a directory written by `psrq data synth` (the SYNTHETIC catalogue), whose
embeddings/<modality>.parquet files travel along with it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from psrq.errors import InputError

from .schema import (
    DataSet,
    OnEmptyText,
    precomputed_embeddings,
    require_file,
    validate_interactions,
    validate_items,
)


def read_parquet_table(path: str | Path, what: str) -> pa.Table:
    p = require_file(path, what)
    try:
        return pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{p}: not a readable Parquet file ({e})") from None


def load_parquet(
    items: str | Path,
    interactions: str | Path,
    *,
    on_empty_text: OnEmptyText = "raise",
    name: str = "parquet",
) -> DataSet:
    """Load and validate user-supplied Parquet files. Skipped blank-text items are counted."""
    items_path, inter_path = Path(items), Path(interactions)
    items_table, n_blank = validate_items(
        read_parquet_table(items_path, "items file"), str(items_path), on_empty_text=on_empty_text
    )
    inter_table = read_parquet_table(inter_path, "interactions file")
    skipped = {"items_with_empty_text": n_blank} if n_blank else {}
    if n_blank:
        # interactions of dropped items go with them (counted), everything else must match the catalogue
        import pyarrow.compute as pc

        keep = pc.is_in(
            pc.cast(inter_table.column("item_id"), pa.string()),
            value_set=items_table.column("item_id").combine_chunks(),
        )
        before = inter_table.num_rows
        raw_items = pq.read_table(items_path, columns=["item_id"]).column("item_id")
        known_any = pc.is_in(
            pc.cast(inter_table.column("item_id"), pa.string()),
            value_set=pc.cast(raw_items, pa.string()).combine_chunks(),
        )
        inter_table = inter_table.filter(pc.or_(keep, pc.invert(known_any)))
        skipped["interactions_of_skipped_items"] = before - inter_table.num_rows
    inter_table = validate_interactions(inter_table, items_table.column("item_id"), str(inter_path))
    passthrough = {} if n_blank else {"items": items_path, "interactions": inter_path}
    return DataSet(
        name=name,
        items=items_table,
        interactions=inter_table,
        sources=[items_path, inter_path],
        skipped=skipped,
        default_label_rule="auto",
        passthrough=passthrough,
        embeddings=dict(precomputed_embeddings(items_table, str(items_path))),
    )


def load_synth_dir(root: str | Path) -> DataSet:
    """Load a SYNTHETIC catalogue written by `psrq data synth` (explicit labels, precomputed embeddings)."""
    base = Path(root)
    if not (base / "items.parquet").is_file():
        raise InputError(
            f"{base} is not a synthetic catalogue directory: items.parquet is missing (run `psrq data synth --out {base}`)"
        )
    data = load_parquet(base / "items.parquet", base / "interactions.parquet", name="synth")
    meta = pq.read_schema(base / "items.parquet").metadata or {}
    data.synthetic = meta.get(b"psrq.synthetic") == b"true"
    emb_dir = base / "embeddings"
    if emb_dir.is_dir():
        for f in sorted(emb_dir.glob("*.parquet")):
            data.embeddings[f.stem] = f
            data.sources.append(f)
    data.default_label_rule = (
        "explicit" if "label" in data.interactions.column_names else "implicit"
    )
    return data
