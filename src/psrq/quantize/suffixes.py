"""Disambiguation suffixes of semantic IDs: which suffix each item gets per codebook.

Training items are numbered by item ID within their tuple (`psrq.quantize.collisions`); items
encoded later keep the suffix they had (same ID, same tuple) or continue after the suffixes
already taken by the training items and by earlier outputs.
"""

from __future__ import annotations

import numpy as np

from psrq.errors import InputError
from psrq.formats.sids import SemanticIDs
from psrq.quantize.collisions import SuffixTable, assign_suffixes


def suffixes_after_training(
    sids: SemanticIDs,
    cb: str,
    train_sids: SemanticIDs,
    table: SuffixTable,
    taken: list[SemanticIDs],
    id_rank: np.ndarray,
) -> np.ndarray:
    """Suffixes int32 [n] of codebook `cb` for items encoded after training: training items
    (`train_sids`) and those of the `taken` tables keep theirs; the others continue after the
    suffixes `table` (the model's tuple -> next free suffix) and `taken` have used."""
    known = [train_sids, *taken]
    for other in taken:
        if other.suffixes is None or cb not in other.codes:
            raise InputError(f"a taken semantic-ID table has no sid_{cb}_suffix column")
        if other.codes[cb].shape[1] != table.n_levels:
            raise InputError(
                f"a taken semantic-ID table has {other.codes[cb].shape[1]} levels in sid_{cb}, the model {table.n_levels}"
            )
        p = other.present[cb]
        table = table.merge(SuffixTable.from_codes(other.codes[cb][p], other.suffixes[cb][p]))
    return suffixes_for(sids, cb, taken=table, known=known, id_rank=id_rank)


def suffixes_for(
    sids: SemanticIDs,
    cb: str,
    *,
    taken: SuffixTable | None,
    id_rank: np.ndarray,
    known: list[SemanticIDs] | None = None,
) -> np.ndarray:
    """Suffix int32 [n] for one codebook (-1 where absent).

    Items found in `known` tables (same ID, same tuple, with a suffix) keep that suffix; the
    others are numbered by item ID within their tuple, starting at `taken`'s first free suffix.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    codes, present = sids.codes[cb], sids.present[cb]
    suffix = np.full(len(sids), -1, dtype=np.int32)
    todo = present.copy()
    ids = pa.array(sids.item_ids, type=pa.string())
    for other in known or []:
        if other.suffixes is None or cb not in other.codes or not todo.any():
            continue
        pos = pc.index_in(ids, value_set=pa.array(other.item_ids, type=pa.string()))
        pos = pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        cand = np.flatnonzero(todo & (pos >= 0))
        src = pos[cand]
        same = (
            other.present[cb][src]
            & (other.codes[cb][src] == codes[cand]).all(axis=1)
            & (other.suffixes[cb][src] >= 0)
        )
        suffix[cand[same]] = other.suffixes[cb][src[same]]
        todo[cand[same]] = False
    rows = np.flatnonzero(todo)
    suffix[rows] = assign_suffixes(
        sids.item_ids[rows], codes[rows], taken=taken, id_rank=id_rank[rows]
    )
    return suffix
