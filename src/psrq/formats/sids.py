"""sids.parquet: semantic IDs, one code tuple per codebook per item (docs/conventions.md).

Columns: ``item_id``; ``sid_<codebook>`` (fixed_size_list<int32>[n_levels]) per codebook (each
modality name and `JOINT`); optional ``sid_<codebook>_suffix`` (int32); ``missing_modalities``
(list<string>). Key-value metadata: ``psrq.sid_sizes`` (codebook -> codes per level),
``psrq.methods`` and ``psrq.quantizer_fingerprint`` (the quantizer the IDs came from),
``psrq.synthetic``.

The null rule, the one every reader follows: an item without codes in a codebook (it lacks that
modality) has a **null code list**; a null *inside* a list, a negative code, or a list of another
length than the codebook's levels is an error naming the file, column, row and item. Decoded,
a codebook is `codes` int32 [n, n_levels] plus a presence mask `present` bool [n] (rows not
present hold 0); the rankers' -1 padding is derived from that mask in one place,
`SemanticIDs.padded_codes`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from psrq.artifacts import write_parquet
from psrq.errors import ArtifactError, InputError
from psrq.formats.ids import ITEM_ID_COLUMN, check_unique_ids, ids_to_strings, read_parquet

JOINT = "joint"
SID_PREFIX = "sid_"
SUFFIX_SUFFIX = "_suffix"
MISSING_COLUMN = "missing_modalities"
SID_SIZES_KEY = "psrq.sid_sizes"
METHODS_KEY = "psrq.methods"
FINGERPRINT_KEY = "psrq.quantizer_fingerprint"
SID_SOURCE_KEYS = (METHODS_KEY, FINGERPRINT_KEY)


def sid_column(codebook: str) -> str:
    return f"{SID_PREFIX}{codebook}"


def codebook_columns(names: list[str]) -> list[str]:
    """The codebooks with a ``sid_<codebook>`` column among `names` (suffix columns excluded)."""
    return [
        c[len(SID_PREFIX) :]
        for c in names
        if c.startswith(SID_PREFIX) and not c.endswith(SUFFIX_SUFFIX)
    ]


@dataclass
class SemanticIDs:
    """Semantic IDs of a set of items, one code tuple per codebook.

    item_ids: object array of str [n]; modalities: the modality names, in model order;
    has_modality: bool [n, n_modalities]; codes[codebook]: int32 [n, n_levels] (rows where
    `present[codebook]` is False hold 0 and mean "null"); suffixes[codebook]: int32 [n]
    (-1 where absent), or None when not disambiguated.
    """

    item_ids: np.ndarray
    modalities: list[str]
    has_modality: np.ndarray
    codes: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    suffixes: dict[str, np.ndarray] | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def codebooks(self) -> list[str]:
        return list(self.codes)

    def __len__(self) -> int:
        return len(self.item_ids)

    def missing_modalities(self) -> list[list[str]]:
        names = np.array(self.modalities, dtype=object)
        return [names[~row].tolist() for row in self.has_modality]

    def without_suffixes(self) -> SemanticIDs:
        return replace(self, suffixes=None)

    def padded_codes(self) -> dict[str, np.ndarray]:
        """{codebook: int64 [n, n_levels]} with -1 on the rows without codes (the rankers' form)."""
        return {
            cb: np.where(self.present[cb][:, None], codes.astype(np.int64), -1)
            for cb, codes in self.codes.items()
        }

    def sid_sizes(self) -> dict[str, list[int]]:
        """Codes per level of each codebook: the ``psrq.sid_sizes`` metadata where it names the
        codebook, otherwise the largest code per level + 1 (1 for a codebook without codes)."""
        declared = _declared_sizes(self.metadata, "semantic IDs")
        out = {}
        for cb, codes in self.codes.items():
            if cb in declared:
                out[cb] = list(declared[cb])
            else:
                have = codes[self.present[cb]]
                top = have.max(0) if len(have) else np.zeros(codes.shape[1], np.int64)
                out[cb] = [int(v) + 1 for v in top]
        return out

    # ---- Parquet ------------------------------------------------------------------------------
    def to_table(self) -> Any:
        """pyarrow Table in the sids.parquet schema of docs/conventions.md (+ missing_modalities)."""
        import pyarrow as pa

        columns: dict[str, Any] = {ITEM_ID_COLUMN: pa.array(self.item_ids, type=pa.string())}
        for cb, codes in self.codes.items():
            n_levels = codes.shape[1]
            values = pa.array(
                np.ascontiguousarray(codes, dtype=np.int32).reshape(-1), type=pa.int32()
            )
            absent = pa.array(~self.present[cb])
            columns[sid_column(cb)] = pa.FixedSizeListArray.from_arrays(
                values, n_levels, mask=absent
            )
            if self.suffixes is not None:
                columns[sid_column(cb) + SUFFIX_SUFFIX] = pa.array(
                    self.suffixes[cb], type=pa.int32(), mask=~self.present[cb]
                )
        missing = ~self.has_modality
        offsets = np.concatenate([[0], np.cumsum(missing.sum(axis=1))]).astype(np.int32)
        names = np.array(self.modalities, dtype=object)[np.nonzero(missing)[1]]
        columns[MISSING_COLUMN] = pa.ListArray.from_arrays(
            pa.array(offsets, type=pa.int32()), pa.array(names.tolist(), type=pa.string())
        )
        meta = {
            "psrq.content": "semantic IDs",
            "psrq.codebooks": json.dumps(self.codebooks),
            "psrq.modalities": json.dumps(self.modalities),
            **self.metadata,
        }
        return pa.table(columns).replace_schema_metadata({k: str(v) for k, v in meta.items()})

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write sids.parquet atomically."""
        write_parquet(path, self.to_table())
        return Path(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SemanticIDs:
        """Read a sids.parquet (ours, or any file with item_id + sid_<codebook> columns)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"semantic-ID file not found: {path}")
        return cls.from_table(read_parquet(path), source=str(path))

    @classmethod
    def from_table(cls, table: Any, *, source: str = "table") -> SemanticIDs:
        """The one decoder of the sids format (the null rule in the module docstring)."""
        import pyarrow as pa

        if ITEM_ID_COLUMN not in table.column_names:
            raise InputError(f"{source}: no item_id column")
        ids = ids_to_strings(table.column(ITEM_ID_COLUMN), source=source)
        check_unique_ids(ids, source=source)
        cbs = codebook_columns(table.column_names)
        if not cbs:
            raise InputError(f"{source}: no sid_<codebook> column (columns: {table.column_names})")
        meta = {
            k.decode(errors="replace"): v.decode(errors="replace")
            for k, v in (table.schema.metadata or {}).items()
        }
        declared = _declared_sizes(meta, source)
        codes, present = {}, {}
        for cb in cbs:
            codes[cb], present[cb] = decode_codes(
                table.column(sid_column(cb)),
                source=source,
                name=sid_column(cb),
                item_ids=ids,
                declared_levels=len(declared[cb]) if cb in declared else None,
            )
        suffixes = None
        if all(sid_column(cb) + SUFFIX_SUFFIX in table.column_names for cb in cbs):
            suffixes = {
                cb: table.column(sid_column(cb) + SUFFIX_SUFFIX)
                .fill_null(-1)
                .to_numpy()
                .astype(np.int32)
                for cb in cbs
            }
        modalities = [c for c in cbs if c != JOINT]
        if "psrq.modalities" in meta:
            try:
                modalities = json.loads(meta["psrq.modalities"])
            except ValueError:
                modalities = None
            if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
                raise InputError(
                    f"{source}: metadata psrq.modalities must be a JSON list of names, got {meta['psrq.modalities']!r}"
                )
        if MISSING_COLUMN in table.column_names:
            col = table.column(MISSING_COLUMN)
            if not (
                (pa.types.is_list(col.type) or pa.types.is_large_list(col.type))
                and pa.types.is_string(col.type.value_type)
            ):
                raise InputError(
                    f"{source}: column {MISSING_COLUMN!r} is {col.type}, expected a list of modality names"
                )
            has = _has_from_missing(col, modalities)
        else:
            unknown = [m for m in modalities if m not in present]
            if unknown:
                raise InputError(
                    f"{source}: metadata names modality {unknown[0]!r} but there is no sid_{unknown[0]} column"
                )
            has = (
                np.stack([present[m] for m in modalities], axis=1)
                if modalities
                else np.ones((len(ids), 0), bool)
            )
        has = has.reshape(len(ids), len(modalities))
        extra = {
            k: v
            for k, v in meta.items()
            if k.startswith("psrq.") and k not in ("psrq.codebooks", "psrq.modalities")
        }
        return cls(ids, modalities, has, codes, present, suffixes, extra)


def _has_from_missing(col: Any, modalities: list[str]) -> np.ndarray:
    """bool [n, n_modalities] from a list<string> column naming each row's missing modalities."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=pa.list_(pa.string()))
    has = np.ones((len(col), len(modalities)), dtype=bool)
    names = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
    for j, m in enumerate(modalities):
        has[parents[names == m], j] = False
    return has


def decode_codes(
    col: Any,
    *,
    source: str,
    name: str,
    item_ids: np.ndarray,
    declared_levels: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes int32 [n, n_levels], present bool [n]) from one ``sid_<codebook>`` column.

    A null list = no codes (present False, codes 0). The width is the list size of a
    fixed-size list, else the length of the first present list, else `declared_levels` (so a
    codebook whose rows are all null still has the file's number of levels).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    t = col.type
    if not (
        (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
        and (pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type))
    ):
        raise InputError(f"{source}: column {name!r} is {t}, expected a list of int codes")
    present = pc.is_valid(col).to_numpy(zero_copy_only=False).astype(bool)
    sub = col.filter(pa.array(present))
    if len(sub) and pc.list_flatten(sub).null_count:
        raise InputError(
            f"{source}: column {name!r} has a null code inside a code list (a missing ID is a null list)"
        )
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(t):
        n_levels = int(t.list_size)
    elif present.any():
        n_levels = int(lengths[present][0])
    else:
        n_levels = declared_levels or 0
    wrong = present & (lengths != n_levels)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise InputError(
            f"{source}: column {name!r} row {row} (item {item_ids[row]!r}) has {lengths[row]} levels, expected {n_levels}"
        )
    if n_levels == 0 and present.any():
        row = int(np.flatnonzero(present)[0])
        raise InputError(
            f"{source}: column {name!r} row {row} (item {item_ids[row]!r}) has an empty code list"
        )
    if declared_levels is not None and declared_levels != n_levels:
        raise InputError(
            f"{source}: column {name!r} has {n_levels} levels but the metadata declares {declared_levels}"
        )
    flat = pc.list_flatten(sub).to_numpy(zero_copy_only=False) if len(sub) else np.zeros(0)
    flat = np.asarray(flat, dtype=np.int64).reshape(len(sub), n_levels)
    if (flat < 0).any():
        row = int(np.flatnonzero(present)[np.flatnonzero((flat < 0).any(1))[0]])
        raise InputError(
            f"{source}: column {name!r} row {row} (item {item_ids[row]!r}) has a negative code"
        )
    codes = np.zeros((len(col), n_levels), dtype=np.int32)
    codes[present] = flat
    return codes, present


def _declared_sizes(meta: dict[str, str], source: Any) -> dict[str, list[int]]:
    """{codebook: codes per level} from the ``psrq.sid_sizes`` metadata ({} without it)."""
    if SID_SIZES_KEY not in meta:
        return {}
    try:
        declared = json.loads(meta[SID_SIZES_KEY])
        if not isinstance(declared, dict):
            raise ValueError("not a mapping")
        return {str(cb): [int(k) for k in ks] for cb, ks in declared.items()}
    except (ValueError, TypeError) as e:
        raise InputError(
            f"{source}: metadata psrq.sid_sizes is not a JSON mapping of codebook -> sizes ({e})"
        ) from None


def read_sids_source(path: str | os.PathLike[str]) -> dict[str, str]:
    """The quantizer a sids.parquet came from: its method per codebook and its fingerprint
    (Parquet metadata written by MultimodalQuantizer; {} for a file without them)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception as e:  # pyarrow raises several unrelated types for bad files
        raise InputError(f"cannot read {path}: {e}") from e
    return {k: meta[k.encode()].decode() for k in SID_SOURCE_KEYS if k.encode() in meta}


def check_sids_source(recorded: dict[str, str] | None, path: str | os.PathLike[str]) -> None:
    """ArtifactError when the sids file at `path` was made by another quantizer than `recorded`
    (the source a model was trained with). Keys missing on either side are not compared."""
    if not recorded:
        return
    theirs = read_sids_source(path)
    for key in SID_SOURCE_KEYS:
        if key in recorded and key in theirs and recorded[key] != theirs[key]:
            what = "method" if key == METHODS_KEY else "quantizer fingerprint"
            raise ArtifactError(
                f"{path} was made by another quantizer than the model was trained with: {what} "
                f"{theirs[key]} in the file, {recorded[key]} in the model. Assign the new items with the "
                "quantizer model directory the training SIDs came from (psrq assign --model-dir ...)"
            )
