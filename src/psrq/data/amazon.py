"""Amazon Reviews, 2014 (McAuley et al.) and 2023 (Hou et al.) releases, from their published files.

2014: reviews JSON lines {reviewerID, asin, overall, unixReviewTime, ...}; metadata lines are
Python dict literals {asin, title, brand, categories [[...]], description, ...} (parsed with
ast.literal_eval, never eval); image features (optional) are the binary file of records
[10-byte ASIN][4096 x float32 little-endian] (e.g. image_features_Baby.b), or a Parquet file
(item_id, embedding).
2023: reviews JSON lines {rating, parent_asin, user_id, timestamp (milliseconds), ...}; metadata
JSON lines {parent_asin, title, features [..], description [..], categories [..], store, ...}.
Items are keyed by asin (2014) / parent_asin (2023). Files may be gzipped.

Label rule default: rating >= 4 -> 1, < 4 -> 0 (the paper's Amazon Baby rule). Items whose
metadata yields no text are skipped and counted; so are the reviews of such items. A review
naming an item absent from the metadata file is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psrq.errors import InputError
from psrq.formats.embeddings import embedding_table

from .io import iter_json_lines
from .schema import (
    DataSet,
    OnEmptyText,
    describe_rows,
    require_file,
    validate_interactions,
    validate_items,
)

DESCRIPTION_CHARS = 600


def _field(rec: dict[str, Any], key: str, path: Path, lineno: int) -> Any:
    if key not in rec or rec[key] is None:
        raise InputError(f"{path}: line {lineno} has no {key!r} field")
    return rec[key]


def _flatten(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out: list[str] = []
    for v in value:
        out.extend(_flatten(v))
    return out


def _compose(title: str, extras: list[tuple[str, list[str]]]) -> str:
    parts = [title.strip().rstrip(".") + "."] if title and title.strip() else []
    for label, values in extras:
        values = [v.strip() for v in values if v and v.strip()]
        if values:
            joined = ", ".join(dict.fromkeys(values))
            parts.append(f"{label}: {joined[:DESCRIPTION_CHARS].rstrip('.')}.")
    return " ".join(parts)


def _items_2014(meta: Path) -> Iterator[dict[str, Any]]:
    for lineno, rec in iter_json_lines(
        meta, what="Amazon 2014 metadata", allow_python_literals=True
    ):
        asin = str(_field(rec, "asin", meta, lineno))
        text = _compose(
            rec.get("title") or "",
            [
                ("Brand", _flatten(rec.get("brand"))),
                (
                    "Categories",
                    [" > ".join(c) for c in rec.get("categories") or [] if isinstance(c, list)],
                ),
                ("Description", _flatten(rec.get("description"))),
            ],
        )
        yield {"item_id": asin, "text": text, "title": rec.get("title"), "line": lineno}


def _items_2023(meta: Path) -> Iterator[dict[str, Any]]:
    for lineno, rec in iter_json_lines(meta, what="Amazon 2023 metadata"):
        asin = str(_field(rec, "parent_asin", meta, lineno))
        text = _compose(
            rec.get("title") or "",
            [
                ("Store", _flatten(rec.get("store"))),
                (
                    "Categories",
                    [" > ".join(_flatten(rec.get("categories")))] if rec.get("categories") else [],
                ),
                ("Features", _flatten(rec.get("features"))),
                ("Description", _flatten(rec.get("description"))),
            ],
        )
        yield {"item_id": asin, "text": text, "title": rec.get("title"), "line": lineno}


def _items_table(
    records: Iterator[dict[str, Any]], meta: Path, on_empty_text: OnEmptyText
) -> tuple[pa.Table, int]:
    rows = list(records)
    if not rows:
        raise InputError(f"{meta}: no item records")
    table = pa.table(
        {
            "item_id": [r["item_id"] for r in rows],
            "text": [r["text"] for r in rows],
            "title": [r["title"] if isinstance(r["title"], str) else None for r in rows],
        }
    )
    return validate_items(table, str(meta), on_empty_text=on_empty_text)


def _reviews_2014(path: Path) -> Iterator[tuple[int, str, str, int, float]]:
    for lineno, rec in iter_json_lines(path, what="Amazon 2014 reviews"):
        yield (
            lineno,
            str(_field(rec, "reviewerID", path, lineno)),
            str(_field(rec, "asin", path, lineno)),
            _int(_field(rec, "unixReviewTime", path, lineno), path, lineno, "unixReviewTime"),
            _float(_field(rec, "overall", path, lineno), path, lineno, "overall"),
        )


def _reviews_2023(path: Path) -> Iterator[tuple[int, str, str, int, float]]:
    for lineno, rec in iter_json_lines(path, what="Amazon 2023 reviews"):
        ms = _int(_field(rec, "timestamp", path, lineno), path, lineno, "timestamp")
        yield (
            lineno,
            str(_field(rec, "user_id", path, lineno)),
            str(_field(rec, "parent_asin", path, lineno)),
            ms // 1000,
            _float(_field(rec, "rating", path, lineno), path, lineno, "rating"),
        )


def _int(v: Any, path: Path, lineno: int, key: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise InputError(f"{path}: line {lineno}: {key} {v!r} is not an integer") from None


def _float(v: Any, path: Path, lineno: int, key: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{path}: line {lineno}: {key} {v!r} is not a number") from None
    if not np.isfinite(x):
        raise InputError(f"{path}: line {lineno}: {key} is {v!r}")
    return x


def _interactions(
    reviews: Iterator[tuple[int, str, str, int, float]],
    path: Path,
    items: pa.Table,
    skipped_ids: set[str],
) -> tuple[pa.Table, int]:
    lines, users, asins, ts, rating = [], [], [], [], []
    for row in reviews:
        for col, v in zip((lines, users, asins, ts, rating), row, strict=True):
            col.append(v)
    if not users:
        raise InputError(f"{path}: no review records")
    table = pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(asins, pa.string()),
            "timestamp": pa.array(ts, pa.int64()),
            "rating": pa.array(rating, pa.float32()),
        }
    )
    of_skipped = pc.is_in(
        table.column("item_id"), value_set=pa.array(sorted(skipped_ids), pa.string())
    )
    of_skipped = of_skipped.to_numpy(zero_copy_only=False)
    table = table.filter(pa.array(~of_skipped))
    line_numbers = np.asarray(lines)[~of_skipped]
    known = pc.is_in(
        table.column("item_id"), value_set=items.column("item_id").combine_chunks()
    ).to_numpy(zero_copy_only=False)
    if not known.all():
        bad = np.flatnonzero(~known)
        raise InputError(
            f"{path}: item {table.column('item_id')[int(bad[0])].as_py()!r} on line {int(line_numbers[bad[0]])} is not in the "
            f"metadata file ({len(bad)} review(s) name unknown items; lines {', '.join(str(int(x)) for x in line_numbers[bad[:5]])})"
        )
    return table, int(of_skipped.sum())


def _load(
    name: str,
    reviews: Path,
    meta: Path,
    item_records: Iterator[dict[str, Any]],
    review_rows: Iterator[tuple[int, str, str, int, float]],
    image_features: Path | None,
    on_empty_text: OnEmptyText,
    image_dim: int,
) -> DataSet:
    require_file(reviews, f"Amazon {name} reviews file")
    all_items = list(item_records)
    items, n_blank = _items_table(iter(all_items), meta, on_empty_text)
    kept = set(items.column("item_id").to_pylist())
    skipped_ids = {r["item_id"] for r in all_items} - kept
    interactions, n_reviews_skipped = _interactions(review_rows, reviews, items, skipped_ids)
    interactions = validate_interactions(interactions, items.column("item_id"), str(reviews))
    data = DataSet(
        name=name,
        items=items,
        interactions=interactions,
        sources=[reviews, meta],
        default_label_rule="rating",
        skipped={"items_with_empty_text": n_blank, "reviews_of_skipped_items": n_reviews_skipped},
    )
    if image_features is not None:
        data.embeddings["image"] = read_image_features(
            image_features, items.column("item_id"), dim=image_dim
        )
        data.sources.append(Path(image_features))
    return data


def load_amazon2014(
    reviews: str | Path,
    meta: str | Path,
    *,
    image_features: str | Path | None = None,
    image_dim: int = 4096,
    on_empty_text: OnEmptyText = "skip",
) -> DataSet:
    """Amazon Reviews 2014 (e.g. reviews_Baby_5.json + meta_Baby.json [+ image_features_Baby.b])."""
    reviews, meta = Path(reviews), Path(meta)
    return _load(
        "amazon2014",
        reviews,
        meta,
        _items_2014(meta),
        _reviews_2014(reviews),
        Path(image_features) if image_features else None,
        on_empty_text,
        image_dim,
    )


def load_amazon2023(
    reviews: str | Path,
    meta: str | Path,
    *,
    image_features: str | Path | None = None,
    image_dim: int = 4096,
    on_empty_text: OnEmptyText = "skip",
) -> DataSet:
    """Amazon Reviews 2023 (e.g. Baby_Products.jsonl + meta_Baby_Products.jsonl)."""
    reviews, meta = Path(reviews), Path(meta)
    return _load(
        "amazon2023",
        reviews,
        meta,
        _items_2023(meta),
        _reviews_2023(reviews),
        Path(image_features) if image_features else None,
        on_empty_text,
        image_dim,
    )


def read_image_features(
    path: str | Path, item_ids: pa.ChunkedArray, *, dim: int = 4096
) -> pa.Table:
    """Image features as an embeddings table (item_id, fixed_size_list<float32>[dim]) for the known items.

    Accepts the 2014 binary format (records of a 10-byte ASIN + `dim` little-endian float32) or a
    Parquet file with item_id and embedding columns.
    """
    p = require_file(path, "image features file")
    if p.suffix == ".parquet":
        from .parquet_source import read_parquet_table

        table = read_parquet_table(p, "image features file")
        if "item_id" not in table.column_names or "embedding" not in table.column_names:
            raise InputError(f"{p}: image features need columns item_id and embedding")
        keep = pc.is_in(
            pc.cast(table.column("item_id"), pa.string()), value_set=item_ids.combine_chunks()
        )
        table = table.filter(keep)
        emb_type = table.schema.field("embedding").type
        width = emb_type.list_size if pa.types.is_fixed_size_list(emb_type) else dim
        return _with_encoder_metadata(table, p, width)
    record = np.dtype([("asin", "S10"), ("features", "<f4", (dim,))])
    size = p.stat().st_size
    if size % record.itemsize:
        raise InputError(
            f"{p}: size {size} is not a multiple of the {record.itemsize}-byte record "
            f"(10-byte ASIN + {dim} float32); is this an image_features_*.b file?"
        )
    records = np.memmap(p, dtype=record, mode="r")
    try:
        asins = np.char.decode(records["asin"], "ascii")
    except UnicodeDecodeError:
        raise InputError(
            f"{p}: an ASIN is not ASCII; the file is not in the 2014 image-feature format"
        ) from None
    keep = np.flatnonzero(np.isin(asins, np.asarray(item_ids.to_pylist(), dtype=asins.dtype)))
    feats = np.ascontiguousarray(records["features"][keep], dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(feats).all(axis=1))
    if len(bad):
        raise InputError(
            f"{p}: image features of {asins[keep[bad[0]]]!r} contain NaN/inf (records {describe_rows(keep[bad])})"
        )
    return _with_encoder_metadata(
        embedding_table(asins[keep].tolist(), feats, dim=dim, metadata={}), p, dim
    )


def _with_encoder_metadata(table: pa.Table, source: Path, dim: int) -> pa.Table:
    """Tag the table as embeddings/<modality>.parquet expects (psrq.encoder, psrq.dim)."""
    return table.replace_schema_metadata(
        {
            **(table.schema.metadata or {}),
            b"psrq.encoder": f"precomputed:{source.name}".encode(),
            b"psrq.dim": str(dim).encode(),
        }
    )
