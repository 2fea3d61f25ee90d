"""The two tables every loader yields (items + interactions), and their validation.

Schemas are the contract of docs/conventions.md: `item_id`/`user_id` are strings, timestamps
are int64 seconds since the Unix epoch (UTC), labels are int8 in {0, 1}. Every check names the
file, the column and the first offending rows, because the user has to go and fix them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psrq.errors import InputError
from psrq.formats.embeddings import ITEMS_PREFIX

# Timestamps outside [1970-01-01, 2100-01-01) are almost always milliseconds or garbage.
MIN_TIMESTAMP = 0
MAX_TIMESTAMP = 4_102_444_800

ITEM_REQUIRED = ("item_id", "text")
INTERACTION_REQUIRED = ("user_id", "item_id", "timestamp")
# Precomputed modalities: an items column emb_<modality> (list<float>, one vector per item, null =
# the item lacks that modality). With at least one such column, `text` is optional.
EMBEDDING_PREFIX = ITEMS_PREFIX
# Data without timestamps that comes with its own split (TikTok): interactions carry `split`.
PRESPLIT_REQUIRED = ("user_id", "item_id", "split")
SPLIT_NAMES = ("train", "valid", "test")
OnEmptyText = Literal["raise", "skip"]


@dataclass
class DataSet:
    """A loaded data set: the items and interactions tables of docs/conventions.md.

    `embeddings` holds precomputed modality tables (item_id, embedding) such as Amazon image
    features or the synthetic catalogue's vectors; `sources` are the input files (fingerprinted
    for caching); `skipped` counts rows a loader dropped on purpose, by reason.
    """

    name: str
    items: pa.Table
    interactions: pa.Table
    sources: list[Path] = field(default_factory=list)
    embeddings: dict[str, pa.Table | Path] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    default_label_rule: str = "implicit"
    synthetic: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # Parquet files the tables were read from unchanged (so writing them again can be skipped).
    passthrough: dict[str, Path] = field(default_factory=dict)
    # For data sets whose item content is derived from interactions (Last.fm-2k's tags): rebuild
    # the items table from events up to a timestamp, so that item text never sees the
    # validation or test period. `prepare` calls it with the train boundary.
    rebuild_items: Callable[[int], pa.Table] | None = None
    # True when interactions carry the data's own `split` column and no timestamps
    # (docs/protocol.md, "Data without timestamps").
    given_split: bool = False


def embedding_modalities(table: pa.Table) -> list[str]:
    """Modalities with a precomputed emb_<modality> column, in column order."""
    return [
        c[len(EMBEDDING_PREFIX) :] for c in table.column_names if c.startswith(EMBEDDING_PREFIX)
    ]


def describe_rows(rows: np.ndarray | list[int], limit: int = 5) -> str:
    """'rows 3, 17 and 40 more' — rows are 0-based data rows of the named file."""
    rows = [int(r) for r in rows]
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def describe_item_rows(
    ids: pa.Array | pa.ChunkedArray,
    rows: np.ndarray | list[int],
    limit: int = 5,
    noun: str = "item",
) -> str:
    """ "item 'a' at row 3, item 'b' at row 17 and 40 more": each row named with its own item."""
    rows = [int(r) for r in rows]
    shown = ", ".join(f"{noun} {ids[r].as_py()!r} at row {r}" for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{shown}{more}"


def require_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    return p


def require_columns(table: pa.Table, columns: tuple[str, ...] | list[str], source: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)} (found: {', '.join(table.column_names)})"
        )


def _null_rows(col: pa.ChunkedArray) -> np.ndarray:
    return np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))


def _as_string(table: pa.Table, name: str, source: str) -> pa.Table:
    col = table.column(name)
    bad = _null_rows(col)
    if len(bad):
        raise InputError(f"{source}: column {name} is null at {describe_rows(bad)}")
    if not (
        pa.types.is_string(col.type)
        or pa.types.is_large_string(col.type)
        or pa.types.is_integer(col.type)
    ):
        raise InputError(f"{source}: column {name} must hold string or integer IDs, got {col.type}")
    return table.set_column(table.schema.get_field_index(name), name, pc.cast(col, pa.string()))


def _check_item_ids(items: pa.Table, source: str) -> pa.Table:
    """item_id as non-null, unique strings."""
    items = _as_string(items, "item_id", source)
    id_col = items.column("item_id")
    if len(pc.unique(id_col)) != len(id_col):
        counts = pc.value_counts(id_col).flatten()
        dups = pc.filter(counts[0], pc.greater(counts[1], 1))
        rows = np.flatnonzero(pc.equal(id_col, dups[0]).to_numpy(zero_copy_only=False))
        raise InputError(
            f"{source}: duplicate item_id {dups[0].as_py()!r} at {describe_rows(rows)} "
            f"({len(dups)} duplicated IDs in all)"
        )
    return items


def precomputed_embeddings(items: pa.Table, source: str) -> dict[str, pa.Table]:
    """The emb_<modality> columns of `items` as embeddings/<modality>.parquet tables.

    Same format as `psrq embed` writes (psrq.features.embed): item_id + fixed_size_list<float32>[d],
    one row per item that has the modality (a null cell = the item lacks it, counted), metadata
    psrq.encoder = "precomputed:<source>:emb_<modality>", psrq.dim, psrq.modality, psrq.n_items,
    psrq.n_embedded, psrq.n_skipped. Vectors of different lengths, NaN/inf or a non-numeric column
    are an InputError naming the file, column and item.
    """
    from psrq.formats.embeddings import (
        check_modality_name,
        embedding_table,
        table_to_embeddings,
    )

    out = {}
    for modality in embedding_modalities(items):
        column = EMBEDDING_PREFIX + modality
        check_modality_name(modality, where=f"{source}: column {column}")
        emb = table_to_embeddings(items.select(["item_id", column]), modality, column, source)
        meta = {
            "psrq.encoder": f"precomputed:{Path(source).name}:{column}",
            "psrq.dim": str(emb.dim),
            "psrq.modality": modality,
            "psrq.n_items": str(items.num_rows),
            "psrq.n_embedded": str(len(emb)),
            "psrq.n_skipped": str(emb.n_null),
        }
        out[modality] = embedding_table(emb.item_ids.tolist(), emb.X, dim=emb.dim, metadata=meta)
    return out


def validate_items(
    items: pa.Table, source: str, *, on_empty_text: OnEmptyText = "raise"
) -> tuple[pa.Table, int]:
    """Check and normalise items: unique string item_id, non-empty text.

    Returns (items, n_skipped). With on_empty_text='skip', items with null/blank text are
    dropped and counted instead of raising. `text` is optional when the items carry precomputed
    emb_<modality> columns (their vectors are checked by `precomputed_embeddings`); if present,
    it is checked as usual.
    """
    if "text" not in items.column_names and embedding_modalities(items):
        require_columns(items, ("item_id",), source)
        return _check_item_ids(items, source), 0
    if "text" not in items.column_names:
        raise InputError(
            f"{source}: missing column(s) text (found: {', '.join(items.column_names)}); items need a text "
            f"column to embed, or precomputed {EMBEDDING_PREFIX}<modality> list<float> columns (docs/conventions.md)"
        )
    require_columns(items, ITEM_REQUIRED, source)
    items = _check_item_ids(items, source)
    id_col = items.column("item_id")
    text = items.column("text")
    if not (
        pa.types.is_string(text.type)
        or pa.types.is_large_string(text.type)
        or pa.types.is_null(text.type)
    ):
        raise InputError(f"{source}: column text must be string, got {text.type}")
    text = pc.cast(text, pa.string())
    blank = pc.or_kleene(pc.is_null(text), pc.equal(pc.utf8_trim_whitespace(text), ""))
    blank = pc.fill_null(blank, True).to_numpy(zero_copy_only=False)
    n_blank = int(blank.sum())
    if n_blank and on_empty_text == "raise":
        rows = np.flatnonzero(blank)
        raise InputError(
            f"{source}: column text is empty or null for {describe_item_rows(id_col, rows)} "
            "(fix the text, or pass on_empty_text='skip' / --skip-empty-text to drop such items)"
        )
    items = items.set_column(items.schema.get_field_index("text"), "text", text)
    if n_blank:
        items = items.filter(pa.array(~blank))
    return items, n_blank


def validate_interactions(
    interactions: pa.Table, item_ids: pa.Array | pa.ChunkedArray, source: str
) -> pa.Table:
    """Check and normalise interactions against the item catalogue.

    user_id/item_id become strings, timestamp int64 seconds in range, label int8 in {0, 1},
    rating float32, play_count int64; every item_id must be a known item.
    """
    require_columns(interactions, INTERACTION_REQUIRED, source)
    t = _as_string(interactions, "user_id", source)
    t = _as_string(t, "item_id", source)
    t = _check_timestamps(t, source)
    _check_known_items(t, item_ids, source)
    if "label" in t.column_names:
        t = _check_labels(t, source)
    if "rating" in t.column_names:
        t = _cast_numeric(t, "rating", pa.float32(), source)
    if "play_count" in t.column_names:
        t = _cast_numeric(t, "play_count", pa.int64(), source)
        bad = np.flatnonzero(t.column("play_count").to_numpy(zero_copy_only=False) < 1)
        if len(bad):
            raise InputError(
                f"{source}: column play_count must be >= 1, bad at {describe_rows(bad)}"
            )
    return t


def _check_known_items(t: pa.Table, item_ids: pa.Array | pa.ChunkedArray, source: str) -> None:
    """InputError naming the interactions whose item_id is not in the catalogue `item_ids`."""
    catalogue = item_ids.combine_chunks() if isinstance(item_ids, pa.ChunkedArray) else item_ids
    known = pc.is_in(t.column("item_id"), value_set=pc.cast(catalogue, pa.string()))
    unknown = np.flatnonzero(~known.to_numpy(zero_copy_only=False))
    if len(unknown):
        raise InputError(
            f"{source}: {describe_item_rows(t.column('item_id'), unknown, noun='item_id')} "
            f"{'is' if len(unknown) == 1 else 'are'} not in the items table ({len(unknown)} interaction(s) name unknown items)"
        )


def validate_given_split_interactions(
    interactions: pa.Table, item_ids: pa.Array | pa.ChunkedArray, source: str
) -> pa.Table:
    """Interactions of data without timestamps that carry their own split (PRESPLIT_REQUIRED).

    user_id/item_id become strings, every item_id must be a known item, `split` must be one of
    train/valid/test, and the same (user, item) pair may not appear twice (without timestamps a
    repeat cannot be ordered, and it would be both a target and its own history).
    """
    require_columns(interactions, PRESPLIT_REQUIRED, source)
    t = _as_string(interactions, "user_id", source)
    t = _as_string(t, "item_id", source)
    t = _as_string(t, "split", source)
    bad = np.flatnonzero(
        ~pc.is_in(t.column("split"), value_set=pa.array(SPLIT_NAMES)).to_numpy(zero_copy_only=False)
    )
    if len(bad):
        raise InputError(
            f"{source}: column split must be one of {', '.join(SPLIT_NAMES)}, got "
            f"{t.column('split')[int(bad[0])].as_py()!r} at {describe_rows(bad)}"
        )
    _check_known_items(t, item_ids, source)
    pairs = pc.binary_join_element_wise(t.column("user_id"), t.column("item_id"), "\x1f")
    if len(pc.unique(pairs)) != t.num_rows:
        counts = pc.value_counts(pairs).flatten()
        dup = pc.filter(counts[0], pc.greater(counts[1], 1))[0].as_py()
        rows = np.flatnonzero(pc.equal(pairs, dup).to_numpy(zero_copy_only=False))
        user, item = dup.split("\x1f")
        raise InputError(
            f"{source}: (user_id {user!r}, item_id {item!r}) appears more than once, at {describe_rows(rows)}"
        )
    return t


def _cast_numeric(t: pa.Table, name: str, to: pa.DataType, source: str) -> pa.Table:
    col = t.column(name)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise InputError(f"{source}: column {name} must be numeric, got {col.type}")
    bad = _null_rows(col)
    if len(bad):
        raise InputError(f"{source}: column {name} is null at {describe_rows(bad)}")
    values = col.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(col.type) and not np.isfinite(values).all():
        raise InputError(
            f"{source}: column {name} has NaN/inf at {describe_rows(np.flatnonzero(~np.isfinite(values)))}"
        )
    return t.set_column(
        t.schema.get_field_index(name), name, pa.array(values.astype(to.to_pandas_dtype()))
    )


def _check_timestamps(t: pa.Table, source: str) -> pa.Table:
    col = t.column("timestamp")
    if pa.types.is_timestamp(col.type):
        # sub-second precision is dropped on purpose: samples are ordered by whole seconds
        seconds = pc.divide(
            pc.cast(col, pa.int64()),
            {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[col.type.unit],
        )
        col = pc.cast(seconds, pa.int64())
    elif not pa.types.is_integer(col.type):
        raise InputError(
            f"{source}: column timestamp must be int64 seconds since the epoch, got {col.type}"
        )
    bad = _null_rows(col)
    if len(bad):
        raise InputError(f"{source}: column timestamp is null at {describe_rows(bad)}")
    ts = col.to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.flatnonzero((ts < MIN_TIMESTAMP) | (ts >= MAX_TIMESTAMP))
    if len(out):
        hint = " (milliseconds? divide by 1000)" if ts[out[0]] > MAX_TIMESTAMP else ""
        raise InputError(
            f"{source}: column timestamp value {int(ts[out[0]])} at {describe_rows(out)} is out of range "
            f"[1970-01-01, 2100-01-01) in seconds{hint}"
        )
    return t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pa.array(ts))


def _check_labels(t: pa.Table, source: str) -> pa.Table:
    col = t.column("label")
    bad = _null_rows(col)
    if len(bad):
        raise InputError(f"{source}: column label is null at {describe_rows(bad)}")
    values = col.to_numpy(zero_copy_only=False)
    if values.dtype == bool:
        values = values.astype(np.int8)
    wrong = np.flatnonzero((values != 0) & (values != 1))
    if len(wrong):
        raise InputError(
            f"{source}: column label must be 0 or 1, got {values[wrong[0]].item()!r} at {describe_rows(wrong)}"
        )
    return t.set_column(
        t.schema.get_field_index("label"), "label", pa.array(values.astype(np.int8))
    )
