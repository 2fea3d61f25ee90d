"""Embedding Parquet: ``embeddings/<modality>.parquet`` and the ``emb_<modality>`` columns of
items.parquet (docs/conventions.md). Its writer, readers and batch primitives live here only.

Layouts:

- ``embeddings/<modality>.parquet``: columns ``item_id`` (string) and ``embedding``
  (fixed_size_list<float32>[d]; any list of numbers is read), one row per item that has the
  modality; key-value metadata ``psrq.encoder``, ``psrq.dim``, ``psrq.modality``, ...;
- ``items.parquet`` with one ``emb_<modality>`` list column per modality.

Rules, the same for every reader:

- item IDs are strings; integer ID columns are converted with ``str()``; a null ID, or the same
  ID twice, is an `InputError` naming the file and the IDs;
- **the null rule**: a null embedding cell means "this item lacks the modality". Readers keyed
  by item ID (`read_embedding_parquet`, `read_items_parquet`, `read_embeddings_dir`,
  `table_to_embeddings`: every stage's reader, streamed batches included) skip the row and count
  it in ``ModalityEmbeddings.n_null`` (the item gets null codes for that modality, zero content
  in the rankers), exactly like an item absent from the file. A positional reader without item
  IDs (`batch_matrix`, under `psrq.quantize.inputs.ParquetSource`, where row i of the input is
  row i of the output) cannot skip a row without renumbering the rest, so there a null cell is
  an error naming the file, column and row (or, with ``on_invalid="drop"``, a dropped row that
  is listed);
- NaN/inf inside a vector, a null inside a vector, or vectors of different lengths, is an
  `InputError` naming the file and the item (or row).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psrq.artifacts import write_parquet
from psrq.errors import InputError
from psrq.formats.ids import (
    ITEM_ID_COLUMN,
    check_unique_ids,
    describe,
    ids_to_strings,
    read_parquet,
)
from psrq.formats.sids import JOINT

EMBEDDING_COLUMN = "embedding"
ITEMS_PREFIX = "emb_"
# Modality names become column names (`sid_<name>`), so they are kept to simple identifiers.
_MODALITY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = (JOINT,)

__all__ = [
    "EMBEDDING_COLUMN",
    "ITEMS_PREFIX",
    "ITEM_ID_COLUMN",
    "RESERVED_NAMES",
    "ModalityEmbeddings",
    "batch_matrix",
    "check_modality_name",
    "check_unique_ids",
    "embedding_table",
    "embeddings_metadata",
    "from_arrays",
    "ids_to_strings",
    "items_modalities",
    "read_embedding_parquet",
    "read_embeddings_dir",
    "read_items_parquet",
    "table_to_embeddings",
    "write_embedding_parquet",
]


@dataclass(frozen=True)
class ModalityEmbeddings:
    """One modality's embeddings: row i of `X` belongs to item `item_ids[i]`.

    item_ids: object array of str [n]; X: float32 [n, d]; source: file (or "array") for messages;
    n_null: rows skipped because their embedding was null (items lacking the modality);
    metadata: the file's ``psrq.*`` key-value metadata (encoder, dim, ``psrq.synthetic``).
    """

    modality: str
    item_ids: np.ndarray
    X: np.ndarray
    source: str = "array"
    n_null: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """True when the source file says it holds SYNTHETIC data (``psrq.synthetic``)."""
        return self.metadata.get("psrq.synthetic", "").lower() == "true"

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    def __len__(self) -> int:
        return len(self.item_ids)


def check_modality_name(name: str, *, where: str = "") -> str:
    """Return `name` if it can name a modality (lower-case identifier, not 'joint', no '_suffix')."""
    at = f" ({where})" if where else ""
    if not isinstance(name, str) or not _MODALITY_NAME.match(name):
        raise InputError(
            f"modality name {name!r}{at} must be a lower-case identifier such as 'text' or 'audio'"
        )
    if name in RESERVED_NAMES or name.endswith("_suffix"):
        raise InputError(f"modality name {name!r}{at} is reserved; choose another name")
    return name


# ---- writing ------------------------------------------------------------------------------------
def embedding_table(
    item_ids: Sequence[str] | Any, vectors: np.ndarray, *, dim: int, metadata: dict[str, str]
) -> Any:
    """The embeddings/<modality>.parquet table: item_id string, embedding fixed_size_list<float32>[dim].

    item_ids: a sequence of str or a pyarrow string array; vectors: float [n, dim].
    """
    import pyarrow as pa

    ids = item_ids if isinstance(item_ids, pa.Array) else pa.array(list(item_ids), type=pa.string())
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), dim)
    table = pa.table(
        {
            ITEM_ID_COLUMN: ids,
            EMBEDDING_COLUMN: pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1), type=pa.float32()), dim
            ),
        }
    )
    return table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})


def write_embedding_parquet(
    path: str | os.PathLike[str],
    item_ids: Sequence[str],
    vectors: np.ndarray,
    *,
    dim: int,
    metadata: dict[str, str],
) -> Path:
    """Atomically write embeddings/<modality>.parquet with `metadata` (``psrq.*`` keys)."""
    write_parquet(path, embedding_table(item_ids, vectors, dim=dim, metadata=metadata))
    return Path(path)


# ---- reading, keyed by item ID ------------------------------------------------------------------
def _check_finite(X: np.ndarray, item_ids: np.ndarray, source: str) -> None:
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        raise InputError(
            f"{source}: NaN or inf in the embedding of item(s) {describe(item_ids[bad].tolist())}"
        )


def from_arrays(
    modality: str, item_ids: Any, X: Any, *, source: str = "array"
) -> ModalityEmbeddings:
    """Validate in-memory IDs + matrix (unique string IDs, finite float matrix [n, d], matching n)."""
    check_modality_name(modality, where=source)
    ids = ids_to_strings(item_ids, source=source)
    mat = np.asarray(X)
    if mat.dtype == object or not np.issubdtype(mat.dtype, np.number):
        raise InputError(f"{source}: {modality} embeddings must be numeric, got dtype {mat.dtype}")
    if mat.ndim != 2 or mat.shape[1] == 0:
        raise InputError(
            f"{source}: {modality} embeddings must be a matrix [n_items, dim], got shape {mat.shape}"
        )
    if mat.shape[0] != len(ids):
        raise InputError(
            f"{source}: {modality} has {len(ids)} item IDs but {mat.shape[0]} embedding rows"
        )
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    check_unique_ids(ids, source=source)
    _check_finite(mat, ids, source)
    return ModalityEmbeddings(modality, ids, mat, source)


def _check_list_type(t: Any, source: str, column: str) -> None:
    import pyarrow as pa

    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InputError(f"{source}: column {column!r} is {t}; expected a list of floats per item")
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise InputError(f"{source}: column {column!r} holds {t.value_type}, not numbers")


def _list_column_to_matrix(col: Any, item_ids: np.ndarray, source: str, column: str) -> np.ndarray:
    """float32 [n, d] from a list / fixed_size_list column without nulls."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    t = col.type
    _check_list_type(t, source, column)
    if len(col) == 0:
        width = t.list_size if pa.types.is_fixed_size_list(t) else 0
        return np.zeros((0, width), dtype=np.float32)
    if pa.types.is_fixed_size_list(t):
        width = int(t.list_size)
    else:
        lengths = np.diff(col.offsets.to_numpy())
        width = int(lengths[0])
        bad = np.flatnonzero(lengths != width)
        if len(bad):
            raise InputError(
                f"{source}: column {column!r} has vectors of different lengths: item {item_ids[0]!r} has "
                f"{width}, item(s) {describe(item_ids[bad].tolist())} differ"
            )
    if width == 0:
        raise InputError(f"{source}: column {column!r} holds empty vectors")
    values = col.flatten().to_numpy(zero_copy_only=False)  # child nulls become NaN: caught below
    return np.ascontiguousarray(values, dtype=np.float32).reshape(len(col), width)


def table_to_embeddings(table: Any, modality: str, column: str, source: str) -> ModalityEmbeddings:
    """One modality from a table with item_id and the list column `column` (the rules above;
    null cells are skipped and counted)."""
    import pyarrow.compute as pc

    ids = ids_to_strings(table.column(ITEM_ID_COLUMN), source=source)
    check_unique_ids(ids, source=source)
    col = table.column(column)
    n_null = int(col.null_count)
    if n_null:
        valid = pc.is_valid(col)
        ids = ids[valid.to_numpy(zero_copy_only=False)]
        col = col.filter(valid)
    X = _list_column_to_matrix(col, ids, source, column)
    _check_finite(X, ids, source)
    meta = {
        k.decode(): v.decode()
        for k, v in (table.schema.metadata or {}).items()
        if k.startswith(b"psrq.")
    }
    return ModalityEmbeddings(modality, ids, X, source, n_null, meta)


def read_embedding_parquet(
    path: str | os.PathLike[str], modality: str, *, column: str = EMBEDDING_COLUMN
) -> ModalityEmbeddings:
    """One modality from an ``embeddings/<modality>.parquet`` file (item_id + embedding)."""
    path = Path(path)
    check_modality_name(modality, where=str(path))
    table = read_parquet(path, [ITEM_ID_COLUMN, column])
    return table_to_embeddings(table, modality, column, str(path))


def read_embeddings_dir(
    directory: str | os.PathLike[str] | None, modalities: list[str] | None = None
) -> dict[str, ModalityEmbeddings]:
    """All (or the named) ``<modality>.parquet`` files of an embeddings directory ({} for None)."""
    if directory is None:
        return {}
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"embeddings directory not found: {d}")
    found = {p.stem: p for p in sorted(d.glob("*.parquet"))}
    wanted = list(found) if modalities is None else modalities
    missing = [m for m in wanted if m not in found]
    if missing:
        raise InputError(f"{d}: no embeddings for modality {missing} (found {sorted(found)})")
    return {m: read_embedding_parquet(found[m], m) for m in wanted}


def embeddings_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``psrq.*`` key-value metadata of an embeddings Parquet file ({} when absent)."""
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        return {}
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"psrq.")}


def items_modalities(path: str | os.PathLike[str]) -> list[str]:
    """Modalities with an ``emb_<modality>`` column in an items.parquet."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Parquet file not found: {path}")
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({e})") from e
    return [c[len(ITEMS_PREFIX) :] for c in names if c.startswith(ITEMS_PREFIX)]


def read_items_parquet(
    path: str | os.PathLike[str], modalities: list[str] | None = None
) -> dict[str, ModalityEmbeddings]:
    """Every ``emb_<modality>`` column of an items.parquet (or only `modalities`)."""
    path = Path(path)
    available = items_modalities(path)
    wanted = available if modalities is None else list(modalities)
    absent = [m for m in wanted if m not in available]
    if absent or not wanted:
        raise InputError(
            f"{path}: no column {', '.join(ITEMS_PREFIX + m for m in absent) or 'emb_<modality>'}; "
            f"embedding columns present: {[ITEMS_PREFIX + m for m in available] or 'none'}"
        )
    for m in wanted:
        check_modality_name(m, where=f"{path}: column {ITEMS_PREFIX}{m}")
    table = read_parquet(path, [ITEM_ID_COLUMN, *(ITEMS_PREFIX + m for m in wanted)])
    return {m: table_to_embeddings(table, m, ITEMS_PREFIX + m, str(path)) for m in wanted}


def table_modalities(
    table: Any, layout: dict[str, str], source: str
) -> dict[str, ModalityEmbeddings]:
    """{modality: ModalityEmbeddings} of one batch ({modality: column}); modalities whose every
    cell is null in the batch are left out."""
    mods = {}
    for m, col in layout.items():
        e = table_to_embeddings(table.select([ITEM_ID_COLUMN, col]), m, col, source)
        if len(e):
            mods[m] = e
    return mods


# ---- positional batches (no item IDs) -----------------------------------------------------------
def null_rows(col: Any) -> np.ndarray:
    """Row indices int64 of the null cells of a column."""
    if not col.null_count:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))


def describe_rows(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{shown}{more}"


def batch_matrix(col: Any, *, source: Any, column: str, first_row: int) -> np.ndarray:
    """float32 [n, d] of one record batch's list column, rows numbered from `first_row` in
    messages. A null cell is an error naming the rows (positional reads cannot skip: see the
    null rule above); NaN/inf are left for the caller (it may drop those rows)."""
    import pyarrow as pa

    nulls = null_rows(col)
    if len(nulls):
        raise InputError(
            f"{source}: column {column!r} is null at row(s) {describe_rows(first_row + nulls)}"
        )
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    lengths = np.diff(col.offsets.to_numpy()) if not pa.types.is_fixed_size_list(col.type) else None
    if lengths is not None and len(lengths) and (lengths != lengths[0]).any():
        bad = np.flatnonzero(lengths != lengths[0])
        raise InputError(
            f"{source}: column {column!r} has vectors of different lengths "
            f"(row {first_row} has {lengths[0]}, rows {describe_rows(first_row + bad)} differ)"
        )
    values = col.flatten().to_numpy(zero_copy_only=False)
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"{source}: column {column!r} is not numeric ({values.dtype})")
    return values.astype(np.float32, copy=False).reshape(len(col), -1)
