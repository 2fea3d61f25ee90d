"""Collisions of semantic-ID tuples, and the disambiguation suffix that makes IDs unique.

A *collision* is two or more items with the same code tuple in one codebook. PSRQ as the paper
writes it collides a lot (method.md: ~1-2% unique tuples on Last.fm text at k=64/128), which
is fine for ranking but not for generative retrieval, where an ID must name one item.

Definitions (per codebook, over the items that have codes in it):

- ``unique_ratio``   = distinct tuples / items (1.0 = no collisions);
- ``items_per_id_max`` / ``items_per_id_p99`` / ``items_per_id_mean``: the size of the groups
  of items sharing a tuple, over distinct tuples (p99 by the inverted-CDF rule, so it is an
  observed group size);
- ``colliding_items`` = items whose tuple is shared with at least one other item.

Suffix: within a tuple, items are ordered by item ID (string order: Unicode code points, so
"item10" < "item9") and numbered 0, 1, 2, ...;
(tuple, suffix) is then unique. `SuffixTable` records, per tuple, the first suffix still free,
so items encoded later (``psrq assign``) continue the numbering instead of reusing a suffix
already taken by a training item.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psrq.errors import ArtifactError, InputError

# Radix keys are used while the product of the per-level radices stays safely inside int64.
_MAX_RADIX_PRODUCT = 2**62


def _as_codes(codes: Any) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise InputError(
            f"codes must be an integer matrix [n_items, n_levels], got {codes.dtype} {codes.shape}"
        )
    if codes.size and codes.min() < 0:
        raise InputError("codes must be non-negative")
    return codes


def group_tuples(codes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group index int64 [n], distinct tuples [g, n_levels], group sizes int64 [g]).

    Groups are numbered in lexicographic order of their tuples. Rows are packed into one int64
    key (mixed radix) when that fits, which is ~10x faster than `np.unique(axis=0)`.
    """
    codes = _as_codes(codes)
    n, n_levels = codes.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, n_levels), codes.dtype), np.zeros(0, np.int64)
    key = _radix_keys(codes)
    if key is not None:
        _, first, inverse, counts = np.unique(
            key, return_index=True, return_inverse=True, return_counts=True
        )
        return inverse.reshape(-1).astype(np.int64), codes[first], counts.astype(np.int64)
    tuples, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1).astype(np.int64), tuples, counts.astype(np.int64)


def _radix_keys(codes: np.ndarray) -> np.ndarray | None:
    """One int64 per row, equal iff the rows are equal (mixed radix); None if it would overflow."""
    radix = codes.max(axis=0).astype(np.int64) + 1
    if float(np.prod(radix.astype(np.float64))) >= _MAX_RADIX_PRODUCT:
        return None
    key = np.zeros(len(codes), dtype=np.int64)
    for level in range(codes.shape[1]):
        key = key * radix[level] + codes[:, level]
    return key


def _group_sizes(codes: np.ndarray) -> np.ndarray:
    """Sizes int64 [g] of the groups of equal rows (cheaper than group_tuples: one sort)."""
    if len(codes) == 0:
        return np.zeros(0, np.int64)
    key = _radix_keys(codes)
    if key is None:
        return group_tuples(codes)[2]
    key.sort()
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return np.diff(np.r_[starts, len(key)]).astype(np.int64)


def collision_stats(codes: Any) -> dict[str, Any]:
    """Collision summary of a code matrix [n_items, n_levels] (see the module docstring)."""
    codes = _as_codes(codes)
    sizes = _group_sizes(codes)
    n = int(codes.shape[0])
    if n == 0:
        # None, not NaN, for the undefined ratios: the stats go into JSON manifests.
        return {
            "items": 0,
            "distinct_ids": 0,
            "unique_ratio": None,
            "items_per_id_max": 0,
            "items_per_id_p99": 0,
            "items_per_id_mean": None,
            "colliding_items": 0,
        }
    return {
        "items": n,
        "distinct_ids": len(sizes),
        "unique_ratio": len(sizes) / n,
        "items_per_id_max": int(sizes.max()),
        "items_per_id_p99": int(np.percentile(sizes, 99, method="inverted_cdf")),
        "items_per_id_mean": n / len(sizes),
        "colliding_items": int(sizes[sizes > 1].sum()),
    }


def sid_collisions(sids: Any) -> dict[str, dict[str, Any]]:
    """Per codebook of a `psrq.formats.sids.SemanticIDs`: collision_stats over the items that
    have codes, plus ``unique_with_suffix`` when the IDs carry suffixes."""
    out = {}
    for cb, codes in sids.codes.items():
        pres = sids.present[cb]
        stats = collision_stats(codes[pres])
        if sids.suffixes is not None:
            full = np.concatenate([codes[pres], sids.suffixes[cb][pres, None]], axis=1)
            stats["unique_with_suffix"] = collision_stats(full)["colliding_items"] == 0
        out[cb] = stats
    return out


def id_ranks(item_ids: np.ndarray) -> np.ndarray:
    """Rank int64 [n] of each item ID in string order (Unicode code points; Arrow's string sort).

    Compute it once and pass it to `assign_suffixes` for several codebooks over the same items:
    the string sort is the expensive part, the rest are integer sorts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pc.sort_indices(pa.array(item_ids, type=pa.string())).to_numpy()
    rank = np.empty(len(item_ids), dtype=np.int64)
    rank[order] = np.arange(len(item_ids))
    return rank


@dataclass
class SuffixTable:
    """The first free suffix of each tuple: tuples int32 [g, n_levels], next_free int64 [g]."""

    tuples: np.ndarray
    next_free: np.ndarray

    @classmethod
    def empty(cls, n_levels: int) -> SuffixTable:
        return cls(np.zeros((0, n_levels), np.int32), np.zeros(0, np.int64))

    @classmethod
    def from_codes(cls, codes: Any, suffixes: Any | None = None) -> SuffixTable:
        """Tuples taken by items with these codes (and suffixes; None = numbered 0..count-1)."""
        codes = _as_codes(codes)
        inverse, tuples, sizes = group_tuples(codes)
        if suffixes is None:
            return cls(tuples.astype(np.int32), sizes)
        next_free = np.zeros(len(tuples), dtype=np.int64)
        np.maximum.at(next_free, inverse, np.asarray(suffixes, dtype=np.int64) + 1)
        return cls(tuples.astype(np.int32), next_free)

    @property
    def n_levels(self) -> int:
        return int(self.tuples.shape[1])

    def merge(self, other: SuffixTable) -> SuffixTable:
        """Per tuple, the larger first-free suffix of the two tables."""
        if other.n_levels != self.n_levels:
            raise InputError(
                f"cannot merge suffix tables of {self.n_levels} and {other.n_levels} levels"
            )
        inverse, tuples, _ = group_tuples(np.concatenate([self.tuples, other.tuples]))
        next_free = np.zeros(len(tuples), dtype=np.int64)
        np.maximum.at(next_free, inverse, np.concatenate([self.next_free, other.next_free]))
        return SuffixTable(tuples.astype(np.int32), next_free)

    def lookup(self, codes: Any) -> np.ndarray:
        """First free suffix int64 [n] for each row's tuple (0 for tuples not in the table)."""
        codes = _as_codes(codes)
        if len(self.tuples) == 0 or len(codes) == 0:
            return np.zeros(len(codes), dtype=np.int64)
        both = np.concatenate([self.tuples.astype(np.int64), codes.astype(np.int64)])
        inverse, tuples, _ = group_tuples(both)
        start = np.zeros(len(tuples), dtype=np.int64)
        start[inverse[: len(self.tuples)]] = self.next_free
        return start[inverse[len(self.tuples) :]]

    # ---- persistence (inside a model directory, so written by its atomic staging) -----------
    def write(self, path: str | os.PathLike[str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {
            f"level_{i}": pa.array(self.tuples[:, i], pa.int32()) for i in range(self.n_levels)
        }
        columns["next_free"] = pa.array(self.next_free, pa.int64())
        pq.write_table(pa.table(columns), path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> SuffixTable:
        import pyarrow.parquet as pq

        path = Path(path)
        try:
            table = pq.read_table(path)
        except Exception as e:  # a missing or damaged file inside a model dir
            raise ArtifactError(f"{path}: cannot read the suffix table ({e})") from e
        levels = sorted(
            (c for c in table.column_names if c.startswith("level_")), key=lambda c: int(c[6:])
        )
        if "next_free" not in table.column_names or not levels:
            raise ArtifactError(f"{path}: not a suffix table (columns {table.column_names})")
        tuples = np.stack([table.column(c).to_numpy() for c in levels], axis=1).astype(np.int32)
        return cls(tuples, table.column("next_free").to_numpy().astype(np.int64))


def assign_suffixes(
    item_ids: np.ndarray,
    codes: Any,
    *,
    taken: SuffixTable | None = None,
    id_rank: np.ndarray | None = None,
) -> np.ndarray:
    """Disambiguation suffix int32 [n]: rank by item ID within each tuple, after `taken`'s suffixes.

    Deterministic: it depends on the set of (item ID, tuple) pairs only, not on row order.
    `id_rank` (int [n], e.g. from `id_ranks`, or any order-preserving subset of it) saves the
    string sort when several codebooks number the same items.
    """
    codes = _as_codes(codes)
    if len(item_ids) != len(codes) or (id_rank is not None and len(id_rank) != len(codes)):
        raise InputError(f"{len(item_ids)} item IDs but {len(codes)} code rows")
    n = len(codes)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    key = _radix_keys(codes)
    if key is None:
        key = group_tuples(codes)[0]
    rank = id_ranks(item_ids) if id_rank is None else np.asarray(id_rank, dtype=np.int64)
    order = np.lexsort((rank, key))  # by tuple, then by item ID
    sorted_key = key[order]
    run_start = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    run_lengths = np.diff(np.r_[run_start, n])
    suffix = np.empty(n, dtype=np.int64)
    suffix[order] = np.arange(n) - np.repeat(run_start, run_lengths)
    if taken is not None:
        suffix += taken.lookup(codes)
    if suffix.max() > np.iinfo(np.int32).max:
        raise InputError("a suffix exceeds int32; this code tuple holds more than 2^31 items")
    return suffix.astype(np.int32)
