"""Reading item embeddings per modality, keyed by string item IDs.

Three layouts are read (docs/conventions.md):

- ``embeddings/<modality>.parquet``: columns ``item_id`` (string) and ``embedding``
  (list or fixed_size_list of floats), one row per item that has the modality;
- ``items.parquet`` with one ``emb_<modality>`` list column per modality (a null cell = the item
  lacks that modality);
- one ``.npy`` matrix per modality plus an item-ID file (``.txt`` one ID per line, ``.parquet``
  with an ``item_id`` column, or a ``.npy`` array of strings) listing its rows in order.

Every reader returns `ModalityEmbeddings`: string IDs, a float32 matrix, and where it came from.
Rules, applied the same way to all three layouts:

- item IDs are strings; integer ID columns are converted with ``str()`` (as the data loaders do);
  a null ID, or the same ID twice, is an `InputError` naming the file and the IDs;
- a null embedding cell means "this item lacks the modality": the row is skipped and counted in
  ``n_null`` (so the multimodal quantizer gives it null codes for that modality, never a crash);
- NaN/inf inside a vector, or vectors of different lengths, is an `InputError` naming the file
  and the item.

Whole matrices are read into memory: the multimodal quantizer aligns modalities by item ID,
which needs random access. (The single-modality quantizers stream through `psrq.quantize.inputs`.)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psrq.errors import InputError

EMBEDDING_COLUMN = "embedding"
ITEM_ID_COLUMN = "item_id"
ITEMS_PREFIX = "emb_"
# Modality names become column names (`sid_<name>`), so they are kept to simple identifiers.
_MODALITY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = ("joint",)


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


def _describe(values: Any, limit: int = 10) -> str:
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
        raise InputError(
            f"{source}: column {column!r} is null at row(s) {_describe(rows.tolist())}"
        )
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


def _check_finite(X: np.ndarray, item_ids: np.ndarray, source: str) -> None:
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        raise InputError(
            f"{source}: NaN or inf in the embedding of item(s) {_describe(item_ids[bad].tolist())}"
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


def _list_column_to_matrix(col: Any, item_ids: np.ndarray, source: str, column: str) -> np.ndarray:
    """float32 [n, d] from a list / fixed_size_list column without nulls."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InputError(f"{source}: column {column!r} is {t}; expected a list of floats per item")
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise InputError(f"{source}: column {column!r} holds {t.value_type}, not numbers")
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
                f"{width}, item(s) {_describe(item_ids[bad].tolist())} differ"
            )
    if width == 0:
        raise InputError(f"{source}: column {column!r} holds empty vectors")
    values = col.flatten().to_numpy(zero_copy_only=False)  # child nulls become NaN: caught below
    return np.ascontiguousarray(values, dtype=np.float32).reshape(len(col), width)


def table_to_embeddings(table: Any, modality: str, column: str, source: str) -> ModalityEmbeddings:
    """One modality from an in-memory table with item_id and the list column `column` (rules above)."""
    return _table_to_embeddings(table, modality, column, source)


def _table_to_embeddings(table: Any, modality: str, column: str, source: str) -> ModalityEmbeddings:
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


def _read_parquet(path: Path, columns: list[str]) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputError(f"Parquet file not found: {path}")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({e})") from e
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; available: {schema.names}")
    return pq.read_table(path, columns=columns)


def read_embedding_parquet(
    path: str | os.PathLike[str], modality: str, *, column: str = EMBEDDING_COLUMN
) -> ModalityEmbeddings:
    """One modality from an ``embeddings/<modality>.parquet`` file (item_id + embedding)."""
    path = Path(path)
    check_modality_name(modality, where=str(path))
    table = _read_parquet(path, [ITEM_ID_COLUMN, column])
    return _table_to_embeddings(table, modality, column, str(path))


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
    table = _read_parquet(path, [ITEM_ID_COLUMN, *(ITEMS_PREFIX + m for m in wanted)])
    return {m: _table_to_embeddings(table, m, ITEMS_PREFIX + m, str(path)) for m in wanted}


def read_id_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Item IDs, one per row of a matching .npy: a .txt (one per line), .parquet (item_id) or .npy of str."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"item-ID file not found: {path}")
    if path.suffix == ".parquet":
        return ids_to_strings(
            _read_parquet(path, [ITEM_ID_COLUMN]).column(ITEM_ID_COLUMN), source=str(path)
        )
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{path}: cannot read item IDs ({e}); save them as a str array") from e
        return ids_to_strings(arr.reshape(-1), source=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[-1] == "":
        lines = lines[:-1]
    empty = [i for i, s in enumerate(lines) if not s.strip()]
    if empty:
        raise InputError(f"{path}: empty item ID on line(s) {_describe([i + 1 for i in empty])}")
    return np.array([s.strip() for s in lines], dtype=object)


def read_npy(
    path: str | os.PathLike[str], ids_path: str | os.PathLike[str], modality: str
) -> ModalityEmbeddings:
    """One modality from a .npy matrix [n, d] and an item-ID file listing its n rows in order."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f".npy file not found: {path}")
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: not a numeric .npy file ({e})") from e
    ids = read_id_file(ids_path)
    if X.ndim == 2 and X.shape[0] != len(ids):
        raise InputError(f"{path} has {X.shape[0]} rows but {ids_path} lists {len(ids)} item IDs")
    return from_arrays(modality, ids, X, source=str(path))


def parse_assignment(spec: str, *, option: str) -> tuple[str, str]:
    """'name=value' -> (name, value); a clear error otherwise."""
    name, sep, value = spec.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise InputError(
            f"{option} expects NAME=VALUE (e.g. text=embeddings/text.parquet), got {spec!r}"
        )
    return name.strip(), value.strip()


def load_modalities(
    *,
    items: str | os.PathLike[str] | None = None,
    inputs: list[str] | tuple[str, ...] = (),
    ids: list[str] | tuple[str, ...] = (),
    modalities: list[str] | None = None,
    require_all: bool = True,
) -> dict[str, ModalityEmbeddings]:
    """Gather modalities from the CLI's sources.

    items: an items.parquet with ``emb_<modality>`` columns; inputs: ``modality=path`` with path a
    .parquet (item_id + embedding) or .npy; ids: the item-ID file for .npy inputs, either
    ``modality=path`` or one bare path shared by all .npy inputs. `modalities` restricts and
    orders the result; with ``require_all=False`` a wanted modality may be absent (new items
    without audio), but an input that is not among `modalities` is still an error.
    """
    found: dict[str, ModalityEmbeddings] = {}
    if items is not None:
        item_modalities = None
        if modalities is not None:  # only the wanted ones the items file has and --input does not
            taken = _input_names(inputs)
            item_modalities = [
                m for m in items_modalities(items) if m in modalities and m not in taken
            ]
        if item_modalities != []:
            found.update(read_items_parquet(items, item_modalities))
    id_files = _id_files(ids)
    for spec in inputs:
        modality, path = parse_assignment(spec, option="--input")
        check_modality_name(modality, where=f"--input {spec}")
        if modality in found:
            raise InputError(
                f"modality {modality!r} is given twice ({found[modality].source} and {path})"
            )
        found[modality] = _read_one(modality, Path(path), id_files)
    if not found:
        raise InputError(
            "no embeddings given: pass --items items.parquet or --input text=embeddings/text.parquet"
        )
    if modalities is not None:
        absent = [m for m in modalities if m not in found]
        if absent and require_all:
            raise InputError(f"modality {absent} requested but not in the inputs ({sorted(found)})")
        extra = [m for m in found if m not in modalities]
        if extra:
            raise InputError(f"modality {extra} is not one of {modalities}")
        found = {m: found[m] for m in modalities if m in found}
    if not found:
        raise InputError(f"none of the modalities {modalities} is in the inputs")
    return found


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


def _input_names(inputs: list[str] | tuple[str, ...]) -> set[str]:
    return {parse_assignment(s, option="--input")[0] for s in inputs}


def _id_files(ids: list[str] | tuple[str, ...]) -> dict[str | None, str]:
    out: dict[str | None, str] = {}
    for spec in ids:
        if "=" in spec:
            modality, path = parse_assignment(spec, option="--ids")
            out[modality] = path
        else:
            out[None] = spec
    return out


def _read_one(modality: str, path: Path, id_files: dict[str | None, str]) -> ModalityEmbeddings:
    if path.suffix == ".npy":
        ids_path = id_files.get(modality, id_files.get(None))
        if ids_path is None:
            raise InputError(
                f"{path}: a .npy input needs its item IDs: add --ids {modality}=ids.txt (one ID per row)"
            )
        return read_npy(path, ids_path, modality)
    if path.suffix == ".parquet":
        return read_embedding_parquet(path, modality)
    raise InputError(
        f"{path}: unsupported input; give a .parquet (item_id + embedding) or a .npy file"
    )
