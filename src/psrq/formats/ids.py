"""Item IDs as every format reads them: strings, never null, unique within a file."""

from __future__ import annotations

from typing import Any

import numpy as np

from psrq.errors import InputError

ITEM_ID_COLUMN = "item_id"


def describe(values: Any, limit: int = 10) -> str:
    """The first `limit` values, repr'd, then how many more."""
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def ids_to_strings(ids: Any, *, source: str, column: str = ITEM_ID_COLUMN) -> np.ndarray:
    """Item IDs as an object array of str; integers are converted with str(); nulls are an error.

    Accepts a pyarrow (chunked) array, a numpy array or any sequence.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(_plain_list(ids))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise InputError(f"{source}: column {column!r} cannot be read as item IDs ({e})") from e
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if arr.null_count:
        rows = np.flatnonzero(pc.is_null(arr).to_numpy(zero_copy_only=False))
        raise InputError(f"{source}: column {column!r} is null at row(s) {describe(rows.tolist())}")
    if pa.types.is_integer(arr.type):
        arr = arr.cast(pa.string())
    elif not (
        pa.types.is_string(arr.type)
        or pa.types.is_large_string(arr.type)
        or pa.types.is_null(arr.type)
    ):
        raise InputError(
            f"{source}: column {column!r} has type {arr.type}; item IDs must be strings (or integers)"
        )
    out = arr.to_numpy(zero_copy_only=False) if len(arr) else np.array([], dtype=object)
    return out.astype(object, copy=False)


def _plain_list(ids: Any) -> list[Any]:
    if isinstance(ids, np.ndarray):
        if np.issubdtype(ids.dtype, np.integer):
            return [str(int(v)) for v in ids]
        return ids.tolist()
    return list(ids)


def check_unique_ids(item_ids: np.ndarray, *, source: str) -> None:
    """Raise InputError naming the duplicated IDs (and how often each occurs) in `source`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(item_ids) == 0:
        return
    counts = pc.value_counts(pa.array(item_ids, type=pa.string()))
    dupes = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(dupes):
        shown = [f"{v['values']!r} x{v['counts']}" for v in dupes.to_pylist()[:10]]
        more = f" and {len(dupes) - 10} more" if len(dupes) > 10 else ""
        raise InputError(f"{source}: duplicate item IDs: {', '.join(shown)}{more}")


def read_parquet(path: Any, columns: list[str] | None = None) -> Any:
    """A Parquet file (or the named columns) as a pyarrow Table; InputError for a missing file,
    an unreadable one, or a missing column (naming the columns there are)."""
    from pathlib import Path

    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Parquet file not found: {path}")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({e})") from e
    missing = [c for c in columns or [] if c not in schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; available: {schema.names}")
    try:
        return pq.read_table(path, columns=columns)
    except Exception as e:  # a truncated body behind a readable footer
        raise InputError(f"{path}: not a readable Parquet file ({e})") from e
