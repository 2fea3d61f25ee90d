"""From prepared Parquet files to tensors, once: item tables, vocabularies, padded histories.

Item ids (strings) are mapped to *item rows* once with pyarrow's vectorised `index_in`; rows 0
and 1 are reserved (PAD, OOV). Each item row carries:
- its index in the item-ID vocabulary (`item_to_id`): PAD=0, OOV=1, then one row per item seen
  at least `min_id_count` times in the training samples (as target or in a history). Rarer
  items, and items never seen in training, share the OOV row: their ID embedding is the shared
  out-of-vocabulary vector, while their semantic IDs and content still describe them.
- its semantic IDs per codebook, shifted by one (0 = missing modality / padding).
- its content embeddings per modality (zeros when missing).

A split becomes `target` int64 [n], `history` int64 [n, L] (0 = padding, oldest first, the
newest L kept), `label` float32 [n]; training batches are slices of these by a seeded
permutation, with no per-sample Python.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psrq.errors import ArtifactError, InputError
from psrq.formats.embeddings import ModalityEmbeddings, read_embedding_parquet
from psrq.formats.embeddings import read_embeddings_dir as formats_read_embeddings_dir
from psrq.formats.ids import read_parquet as read_table
from psrq.formats.samples import check_samples_schema
from psrq.formats.sids import SemanticIDs
from psrq.rank.models import OOV, PAD, TableShapes, identical_codebooks

RESERVED_ITEM_IDS = ("<pad>", "<oov>")


# ---- reading Parquet (the formats are owned by psrq.formats) -----------------------------------
def read_sids(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[int]]]:
    """sids.parquet -> (item_ids [n] str, {codebook: int64 [n, n_levels] codes, -1 = null}, sizes).

    Decoded by `psrq.formats.sids.SemanticIDs` (its null rule); codebook sizes come from the
    metadata key ``psrq.sid_sizes`` when present, otherwise from the largest code per level + 1.
    """
    sids = SemanticIDs.read(path)
    return sids.item_ids, sids.padded_codes(), sids.sid_sizes()


def sid_coverage(tables: ItemTables, item_rows: np.ndarray) -> float:
    """Share of the distinct items at `item_rows` (padding excluded) that have a semantic ID in
    at least one codebook; 1.0 when the tables hold no SIDs (nothing to cover)."""
    if not tables.sids:
        return 1.0
    rows = np.unique(np.asarray(item_rows).reshape(-1))
    rows = rows[rows != PAD]
    if len(rows) == 0:
        return 1.0
    has = np.zeros(len(rows), dtype=bool)
    for tab in tables.sids.values():
        has |= (tab[rows] > 0).any(axis=1)
    return float(has.mean())


def read_embeddings(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """embeddings/<modality>.parquet -> (item_ids [n] str, float32 [n, d]), read by
    `psrq.formats.embeddings` (null cells: items lacking the modality, skipped)."""
    return _content(read_embedding_parquet(path, Path(path).stem))


def read_embeddings_dir(
    directory: str | os.PathLike[str] | None, modalities: list[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All (or the named) embeddings/<modality>.parquet files of a directory, as content."""
    return {m: _content(e) for m, e in formats_read_embeddings_dir(directory, modalities).items()}


def _content(e: ModalityEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    if len(e) == 0:
        raise InputError(f"{e.source} has no rows with an embedding ({e.n_null} null)")
    return e.item_ids, e.X


# ---- item tables ------------------------------------------------------------------------------
@dataclass
class ItemTables:
    """Per-item-row features. Row 0 = PAD, row 1 = OOV, rows >= 2 = catalogue items."""

    item_ids: np.ndarray  # object [n_items]
    item_to_id: np.ndarray  # int64 [n_items]: PAD=0, OOV=1, own ID rows from 2
    n_ids: int
    sids: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # int64 [n_items, n_levels], shifted (0 = missing)
    sid_sizes: dict[str, list[int]] = field(default_factory=dict)
    content: dict[str, np.ndarray] = field(default_factory=dict)  # float32 [n_items, d]
    sid_source: dict[str, str] = field(
        default_factory=dict
    )  # quantizer of the SIDs (read_sids_source)
    _index: Any = None
    _lookup: dict[str, int] | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def shapes(self) -> TableShapes:
        return TableShapes(
            n_items=self.n_items,
            n_ids=self.n_ids,
            sid_sizes=dict(self.sid_sizes),
            content_dims={m: int(x.shape[1]) for m, x in self.content.items()},
            sid_aliases=identical_codebooks(self.sids, self.sid_sizes),
        )

    def rows_of(self, item_ids: Any) -> np.ndarray:
        """Item rows int64 for ids (pyarrow array, list or numpy); unknown ids -> OOV (1)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(item_ids, list | tuple) and len(item_ids) < 50_000:
            # Small lookups (scoring one user): a dict beats rebuilding pyarrow's hash table.
            if self._lookup is None:
                self._lookup = {
                    str(k): i for i, k in enumerate(self.item_ids[2:].tolist(), start=2)
                }
            return np.fromiter(
                (self._lookup.get(str(k), OOV) for k in item_ids),
                dtype=np.int64,
                count=len(item_ids),
            )
        if self._index is None:
            self._index = pa.array(self.item_ids[2:].astype(str).tolist(), type=pa.string())
        arr = (
            item_ids
            if isinstance(item_ids, pa.Array | pa.ChunkedArray)
            else pa.array(list(item_ids), type=pa.string())
        )
        idx = pc.index_in(arr, value_set=self._index)
        return idx.fill_null(OOV - 2).to_numpy(zero_copy_only=False).astype(np.int64) + 2

    def knows(self, item_ids: list[str]) -> np.ndarray:
        return self.rows_of(item_ids) != OOV

    def sid_fingerprint(self) -> str:
        """Fingerprint of the (item, semantic ID) pairs the model was trained with."""
        h = hashlib.sha256()
        h.update("\x00".join(self.item_ids[2:].astype(str).tolist()).encode())
        for cb in sorted(self.sids):
            h.update(cb.encode())
            h.update(np.ascontiguousarray(self.sids[cb][2:]).tobytes())
            h.update(json.dumps(self.sid_sizes[cb]).encode())
        return h.hexdigest()[:32]

    def subset(self, rows: np.ndarray) -> ItemTables:
        """The tables restricted to item rows `rows` (renumbered 0..len(rows)-1, in that order)."""
        return ItemTables(
            item_ids=self.item_ids[rows],
            item_to_id=self.item_to_id[rows],
            n_ids=self.n_ids,
            sids={cb: tab[rows] for cb, tab in self.sids.items()},
            sid_sizes=dict(self.sid_sizes),
            content={m: x[rows] for m, x in self.content.items()},
        )

    def with_new_items(
        self,
        item_ids: list[str],
        sids: dict[str, np.ndarray] | None = None,
        content: dict[str, np.ndarray] | None = None,
    ) -> ItemTables:
        """A copy with extra rows for items the model never saw (ID row = OOV).

        `sids`: {codebook: int64 [m, n_levels] unshifted codes, -1 = missing}, checked against
        the codebook sizes; `content`: {modality: float32 [m, d]}. Missing parts stay zero.
        """
        m = len(item_ids)
        new_sids = {}
        for cb, tab in self.sids.items():
            extra = np.zeros((m, tab.shape[1]), dtype=np.int64)
            if sids and cb in sids:
                codes = np.asarray(sids[cb], dtype=np.int64)
                _check_code_range(codes, self.sid_sizes[cb], cb, item_ids)
                extra = np.where(codes >= 0, codes + 1, 0)
            new_sids[cb] = np.concatenate([tab, extra])
        new_content = {}
        for mod, X in self.content.items():
            extra = np.zeros((m, X.shape[1]), dtype=np.float32)
            if content and mod in content:
                extra = np.asarray(content[mod], dtype=np.float32).reshape(m, X.shape[1])
            new_content[mod] = np.concatenate([X, extra])
        return ItemTables(
            item_ids=np.concatenate([self.item_ids, np.asarray(item_ids, dtype=object)]),
            item_to_id=np.concatenate([self.item_to_id, np.full(m, OOV, dtype=np.int64)]),
            n_ids=self.n_ids,
            sids=new_sids,
            sid_sizes=self.sid_sizes,
            content=new_content,
        )


def _check_code_range(
    codes: np.ndarray, sizes: list[int], codebook: str, item_ids: list[str]
) -> None:
    if codes.ndim != 2 or codes.shape[1] != len(sizes):
        raise InputError(
            f"semantic IDs of codebook {codebook!r} have shape {codes.shape}; the model expects {len(sizes)} levels"
        )
    too_big = codes >= np.asarray(sizes)[None, :]
    if too_big.any():
        row, level = (int(v[0]) for v in np.nonzero(too_big))
        raise ArtifactError(
            f"item {item_ids[row]!r}: code {int(codes[row, level])} at level {level} of codebook {codebook!r} "
            f"is outside the model's codebook of size {sizes[level]}: these SIDs come from another quantizer"
        )


def build_item_tables(
    train: Any,
    *,
    sids: tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[int]]] | None = None,
    content: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    min_id_count: int = 2,
    extra_items: Any = None,
) -> ItemTables:
    """Catalogue = items in the training samples (targets + histories) ∪ sids ∪ content ∪ extra.

    `train` is the training samples table (pyarrow). Items seen fewer than `min_id_count` times
    in it map to the shared OOV ID row.
    """
    import pyarrow.compute as pc

    check_samples_schema(train, "training samples")
    content = content or {}
    pools = [
        np.asarray(train.column("item_id").to_pylist(), dtype=object),
        np.asarray(
            pc.list_flatten(train.column("history").combine_chunks()).to_pylist(), dtype=object
        ),
    ]
    if sids is not None:
        pools.append(sids[0])
    pools += [ids for ids, _ in content.values()]
    if extra_items is not None:
        pools.append(np.asarray(list(extra_items), dtype=object))
    catalogue = np.unique(np.concatenate(pools).astype(str))
    clash = [r for r in RESERVED_ITEM_IDS if r in set(catalogue.tolist())]
    if clash:
        raise InputError(f"item_id {clash[0]!r} is reserved by psrq; rename that item")
    item_ids = np.concatenate(
        [np.asarray(RESERVED_ITEM_IDS, dtype=object), catalogue.astype(object)]
    )
    tables = ItemTables(item_ids=item_ids, item_to_id=np.zeros(len(item_ids), np.int64), n_ids=2)

    # ID vocabulary from training occurrences.
    counts = np.bincount(tables.rows_of(pools[0]), minlength=len(item_ids))
    counts += np.bincount(tables.rows_of(pools[1]), minlength=len(item_ids))
    counts[:2] = 0
    own = np.flatnonzero(counts >= max(1, int(min_id_count)))
    tables.item_to_id[1] = OOV
    tables.item_to_id[2:] = OOV
    tables.item_to_id[own] = np.arange(2, 2 + len(own))
    tables.n_ids = 2 + len(own)

    if sids is not None:
        sid_ids, codes, sizes = sids
        rows = tables.rows_of(sid_ids)
        for cb, mat in codes.items():
            tab = np.zeros((len(item_ids), mat.shape[1]), dtype=np.int64)
            tab[rows] = np.where(mat >= 0, mat + 1, 0)
            tables.sids[cb] = tab
            tables.sid_sizes[cb] = sizes[cb]
    for mod, (ids, X) in content.items():
        tab = np.zeros((len(item_ids), X.shape[1]), dtype=np.float32)
        tab[tables.rows_of(ids)] = X
        tables.content[mod] = tab
    return tables


def check_sids_match(tables: ItemTables, sids_path: str | os.PathLike[str]) -> None:
    """Fail clearly when `sids_path` disagrees with the SIDs the model was trained with.

    Items present in both must have identical codes in every codebook the model uses; the file
    must have every such codebook.
    """
    item_ids, codes, _ = read_sids(sids_path)
    rows = tables.rows_of(item_ids)
    known = rows != OOV
    for cb, tab in tables.sids.items():
        if cb not in codes:
            raise ArtifactError(
                f"{sids_path} has no column sid_{cb}, but the model was trained with it"
            )
        mine = tab[rows[known]] - 1
        theirs = codes[cb][known]
        if mine.shape[1] != theirs.shape[1]:
            raise ArtifactError(
                f"{sids_path}: sid_{cb} has {theirs.shape[1]} levels, but the model was trained with {mine.shape[1]}"
            )
        if (mine != theirs).any():
            diff = np.flatnonzero((mine != theirs).any(1))
            first = int(np.flatnonzero(known)[diff[0]])
            raise ArtifactError(
                f"{sids_path} does not match the model's semantic IDs: {len(diff)} of {int(known.sum())} shared items "
                f"differ in sid_{cb} (e.g. item {item_ids[first]!r}: model {mine[diff[0]].tolist()}, "
                f"file {theirs[diff[0]].tolist()}); the model was trained with SID fingerprint {tables.sid_fingerprint()}"
            )


# ---- splits -----------------------------------------------------------------------------------
@dataclass
class EncodedSplit:
    """One split as tensors. history: 0 = padding; rows keep the newest `max_history` items."""

    name: str
    target: torch.Tensor  # int64 [n]
    history: torch.Tensor  # int64 [n, L]
    label: torch.Tensor  # float32 [n]
    user: np.ndarray  # int64 [n] user codes (for GAUC)
    is_cold: np.ndarray | None  # bool [n], None when the file has no is_cold column
    n_unknown_targets: int = 0

    def __len__(self) -> int:
        return int(self.target.shape[0])


def check_labels(labels: np.ndarray, path: Any) -> np.ndarray:
    """labels must be 0/1 (no nulls); returns float32."""
    bad = np.flatnonzero(~np.isin(labels, (0, 1)))
    if len(bad):
        raise InputError(
            f"{path}: column 'label' must be 0 or 1, but row {int(bad[0])} has {labels[bad[0]]!r} "
            f"({len(bad)} bad row(s))"
        )
    return labels.astype(np.float32)


def pad_histories(history_col: Any, tables: ItemTables, max_history: int) -> np.ndarray:
    """list<string> column -> int64 [n, max_history] item rows, oldest first, newest kept, 0-padded."""
    import pyarrow.compute as pc

    col = history_col.combine_chunks() if hasattr(history_col, "combine_chunks") else history_col
    n = len(col)
    lens = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = tables.rows_of(pc.list_flatten(col))
    keep = np.minimum(lens, max_history)
    starts = np.cumsum(lens) - lens + (lens - keep)  # first kept element of each row in `flat`
    row = np.repeat(np.arange(n), keep)
    pos = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    out = np.zeros((n, max_history), dtype=np.int64)
    out[row, pos] = flat[np.repeat(starts, keep) + pos]
    return out


def encode_split(
    path: str | os.PathLike[str],
    tables: ItemTables,
    *,
    max_history: int = 20,
    name: str | None = None,
) -> EncodedSplit:
    """Read samples/<split>.parquet and map it to tensors (see module docstring)."""
    table = read_table(path)
    return encode_samples(
        table, tables, max_history=max_history, name=name or Path(path).stem, source=path
    )


def encode_samples(
    table: Any,
    tables: ItemTables,
    *,
    max_history: int = 20,
    name: str = "samples",
    source: Any = "samples",
) -> EncodedSplit:
    import pyarrow.compute as pc

    check_samples_schema(table, source)
    if max_history < 1:
        raise InputError(f"max_history must be >= 1, got {max_history}")
    label_col = table.column("label")
    if label_col.null_count:
        row = int(np.flatnonzero(label_col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{source}: column 'label' is null at row {row}")
    labels = check_labels(label_col.to_numpy(), source)
    target = tables.rows_of(table.column("item_id").combine_chunks())
    history = pad_histories(table.column("history"), tables, max_history)
    user = (
        pc.dictionary_encode(table.column("user_id").combine_chunks())
        .indices.to_numpy(zero_copy_only=False)
        .astype(np.int64)
    )
    is_cold = None
    if "is_cold" in table.column_names:
        is_cold = table.column("is_cold").fill_null(False).to_numpy().astype(bool)
    return EncodedSplit(
        name=name,
        target=torch.from_numpy(target),
        history=torch.from_numpy(history),
        label=torch.from_numpy(labels),
        user=user,
        is_cold=is_cold,
        n_unknown_targets=int((target == OOV).sum()),
    )


def iter_batches(split: EncodedSplit, batch_size: int, *, generator: torch.Generator | None = None):
    """Yield (batch_no, row_idx, target [b], history [b, L], label [b]); shuffled when a generator is given."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else None
    for b, start in enumerate(range(0, n, batch_size)):
        idx = (
            order[start : start + batch_size]
            if order is not None
            else torch.arange(start, min(start + batch_size, n))
        )
        yield b, idx, split.target[idx], split.history[idx], split.label[idx]


__all__ = [
    "OOV",
    "PAD",
    "EncodedSplit",
    "ItemTables",
    "build_item_tables",
    "check_sids_match",
    "encode_samples",
    "encode_split",
    "iter_batches",
    "pad_histories",
    "read_embeddings",
    "read_embeddings_dir",
    "read_sids",
    "sid_coverage",
]
