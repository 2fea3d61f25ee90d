"""samples/{train,valid,test}.parquet: one row per ranking sample (docs/conventions.md).

Written by the data stage (`psrq.data.protocol` builds `SAMPLE_SCHEMA` tables,
`psrq.data.prepare` writes them), read by the rankers. The columns a ranker needs are
`SAMPLE_COLUMNS`; `check_samples_schema` is the one check of their types.

Null rules: a null ``user_id``/``item_id`` or ``label`` is an error naming the file, column and
row (checked where the columns are encoded, `psrq.rank.batches.encode_samples`); a null or empty
``history`` is an empty history (all padding).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from psrq.artifacts import write_parquet
from psrq.errors import InputError
from psrq.formats.ids import read_parquet

SPLITS = ("train", "valid", "test")
META = "meta.json"
SAMPLE_COLUMNS = ("user_id", "item_id", "label", "history")
SAMPLE_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("label", pa.int8()),
        ("timestamp", pa.int64()),
        ("history", pa.list_(pa.string())),
        ("split", pa.string()),
        ("item_train_count", pa.int32()),
        ("is_cold", pa.bool_()),
    ]
)


def split_path(samples_dir: str | os.PathLike[str], split: str) -> Path:
    """samples/<split>.parquet."""
    return Path(samples_dir) / f"{split}.parquet"


def _is_id_type(t: Any) -> bool:
    """An Arrow type item and user IDs may have: string or integer (null: an empty column)."""
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_null(t)
    )


def check_samples_schema(table: Any, source: Any) -> None:
    """InputError unless `table` has the samples columns with usable types: user_id and item_id
    string/integer IDs, history a list of them, label numeric or boolean."""
    missing = [c for c in SAMPLE_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; found {table.column_names}")
    for name in ("user_id", "item_id"):
        t = table.schema.field(name).type
        if not _is_id_type(t):
            raise InputError(f"{source}: column {name!r} must hold string or integer IDs, got {t}")
    t = table.schema.field("history").type
    if not (
        (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_id_type(t.value_type)
    ) and not pa.types.is_null(t):
        raise InputError(f"{source}: column 'history' must be a list of item IDs, got {t}")
    t = table.schema.field("label").type
    if not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    ):
        raise InputError(f"{source}: column 'label' must be 0/1 numbers, got {t}")


def read_samples(path: str | os.PathLike[str]) -> Any:
    """One samples split as a pyarrow Table, its schema checked."""
    table = read_parquet(path)
    check_samples_schema(table, path)
    return table


def write_samples(path: str | os.PathLike[str], table: Any, *, atomic: bool = True) -> Path:
    """Write one samples split after checking its schema; `atomic=False` inside a directory
    that is itself published atomically (psrq data prepare's samples/)."""
    import pyarrow.parquet as pq

    check_samples_schema(table, path)
    if atomic:
        write_parquet(path, table)
    else:
        pq.write_table(table, path)
    return Path(path)
