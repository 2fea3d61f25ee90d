"""The sample protocol: labels, sampled negatives, leak-free history, chronological split, cold items.

Rules (docs/protocol.md states them in full):

* Labels come from a `LabelRule`. Under `implicit`, each positive gets `n_negatives` items drawn
  with probability proportional to popularity *in the positive's own time window*: the
  positives of the same split up to the sample's timestamp (its trailing `negative_window`
  positives), never a later event and never another split. Never an item the user interacted
  with at any time (any label), never twice for one positive. Popularity drawn this way matches
  the positives' own popularity within each split, so an item's popularity carries no label
  signal (checked by `popularity_probe`, printed with the split statistics).
* A sampled negative shares its positive's user, timestamp and history.
* History: the user's positive items with a timestamp *strictly* earlier than the sample's,
  newest `max_history`, listed oldest first (ties among earlier events by item_id). Events on the
  same timestamp never see each other, so no sample sees itself or a later event.
* Split: global time quantiles of the labelled events: train = ts < q(0.8), valid = q(0.8) <= ts <
  q(0.9), test = the rest (fractions settable). A timestamp never straddles two splits. Users and
  items unseen in training may appear in valid/test.
* Cold: `item_train_count` = positive training samples of the target item; `is_cold` =
  item_train_count < cold_threshold (default 30).
* Data without timestamps that brings its own split (TikTok): `build_given_split_samples`.
* Popularity probe: `popularity_probe`, the AUC of a user-blind per-item score; must be ~0.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psrq.errors import ConfigError, InputError
from psrq.formats.samples import SAMPLE_SCHEMA, SPLITS

from .labels import LabelRule, apply_label_rule
from .schema import DataSet

# 2: item text derived from interactions (Last.fm tags) counts only the training period.
# 3: negatives drawn by the popularity of the positives of the same split up to the sample's time
#    (protocol 2 drew them by whole-log popularity, which flipped the per-item label rate between
#    train and test: docs/protocol.md §3).
PROTOCOL_VERSION = 3
# Where sampled negatives come from: "window" (protocol 3) or "whole_log" (protocol 2's flawed
# sampler, kept only to reproduce old samples and to show that the popularity probe catches it).
NEGATIVE_POOLS = ("window", "whole_log")
# The popularity probe must lie within 0.5 +- this on valid and test (docs/protocol.md).
PROBE_TOLERANCE = 0.03


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything that decides the samples; recorded in samples/meta.json and in the cache key."""

    label_rule: LabelRule = field(default_factory=LabelRule)
    max_history: int = 20
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    cold_threshold: int = 30
    seed: int = 0
    # implicit rule: negatives of a positive are drawn from the newest `negative_window` positives
    # of its split with timestamp <= its own (None: all of the split's positives up to then).
    negative_window: int | None = 10_000
    negative_pool: str = "window"

    def __post_init__(self) -> None:
        if self.max_history < 0:
            raise ConfigError(f"max_history must be >= 0, got {self.max_history}")
        if (
            len(self.split) != 3
            or any(f < 0 for f in self.split)
            or not math.isclose(sum(self.split), 1.0, abs_tol=1e-6)
        ):
            raise ConfigError(
                f"split must be three non-negative fractions (train, valid, test) summing to 1, got {self.split}"
            )
        if self.split[0] <= 0:
            raise ConfigError("split: the train fraction must be > 0")
        if self.cold_threshold < 0:
            raise ConfigError(f"cold_threshold must be >= 0, got {self.cold_threshold}")
        if self.negative_window is not None and self.negative_window < 1:
            raise ConfigError(
                f"negative_window must be >= 1 (or None for the whole split so far), got {self.negative_window}"
            )
        if self.negative_pool not in NEGATIVE_POOLS:
            raise ConfigError(
                f"negative_pool must be one of {', '.join(NEGATIVE_POOLS)}, got {self.negative_pool!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_rule": self.label_rule.to_dict(),
            "max_history": self.max_history,
            "split": list(self.split),
            "cold_threshold": self.cold_threshold,
            "seed": self.seed,
            "negative_window": self.negative_window,
            "negative_pool": self.negative_pool,
            "protocol_version": PROTOCOL_VERSION if self.negative_pool == "window" else 2,
        }


@dataclass
class Samples:
    """samples per split (pyarrow Tables with SAMPLE_SCHEMA) and the statistics of the split."""

    tables: dict[str, pa.Table]
    stats: dict[str, Any]
    label_rule: LabelRule


def _sorted_vocab(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    uniq = pc.unique(values)
    return uniq.take(pc.array_sort_indices(uniq))


def _codes(
    values: pa.ChunkedArray | pa.Array, vocab: pa.Array, source: str, column: str
) -> np.ndarray:
    codes = pc.index_in(values, value_set=vocab)
    if codes.null_count:
        row = int(np.flatnonzero(codes.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(
            f"{source}: {column} {values[row].as_py()!r} at row {row} is not in the items table"
        )
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class _Events:
    """The labelled log as integer codes, in canonical order (time, user, item, label)."""

    users: np.ndarray  # int64 [n] index into user_vocab
    items: np.ndarray  # int64 [n] index into item_vocab
    ts: np.ndarray  # int64 [n]
    labels: np.ndarray  # int8 [n]
    user_vocab: pa.Array
    item_vocab: pa.Array


def _encode_events(data: DataSet, rule: LabelRule, source: str) -> _Events:
    inter = data.interactions
    if inter.num_rows == 0:
        raise InputError(f"{source}: there are no interactions")
    labels = apply_label_rule(inter, rule, source)
    item_vocab = _sorted_vocab(data.items.column("item_id"))
    user_vocab = _sorted_vocab(inter.column("user_id"))
    users = _codes(inter.column("user_id"), user_vocab, source, "user_id")
    items = _codes(inter.column("item_id"), item_vocab, source, "item_id")
    ts = inter.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64)
    # canonical order: the result cannot depend on the input's row order
    order = np.lexsort((-labels, items, users, ts))
    if not (labels == 1).any():
        raise InputError(f"{source}: the label rule {rule.kind!r} leaves no positive interaction")
    return _Events(users[order], items[order], ts[order], labels[order], user_vocab, item_vocab)


def _with_sampled_negatives(
    ev: _Events, n_negatives: int, seed: int, event_split: np.ndarray, config: ProtocolConfig
) -> tuple[dict[str, np.ndarray], int]:
    """Sample rows (user, item, ts, label, event) with each positive followed by its negatives."""
    pos = np.flatnonzero(ev.labels == 1)
    rng = np.random.default_rng(seed)
    if config.negative_pool == "whole_log":  # protocol 2, bit for bit
        negatives, n_unsampled = sample_negatives(
            ev.users[pos],
            ev.users,
            ev.items,
            popularity=np.bincount(ev.items[pos], minlength=len(ev.item_vocab)),
            n_negatives=n_negatives,
            rng=rng,
        )
    else:
        lo, hi = negative_windows(ev.ts[pos], event_split[pos], config.negative_window)
        negatives, n_unsampled = sample_window_negatives(
            ev.users[pos],
            ev.items[pos],
            lo,
            hi,
            ev.users,
            ev.items,
            n_items=len(ev.item_vocab),
            n_negatives=n_negatives,
            rng=rng,
        )
    # event order is time order; a positive's negatives follow it
    return _interleave_negatives(ev, pos, negatives, n_negatives), n_unsampled


def negative_windows(
    pos_ts: np.ndarray, pos_split: np.ndarray, window: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The pool of each positive's negatives, as index ranges [lo, hi) into the positives.

    pos_ts, pos_split: [n_pos] timestamps and split codes of the positives, in time order.
    The pool of a positive at time t in split s is the positives of split s with timestamp <= t
    (those sharing t happened at the same time, not later), newest `window` of them
    (None: all). So a negative never reflects a later event or another split's popularity.
    """
    if len(pos_ts) and np.any(np.diff(pos_ts) < 0):
        raise AssertionError("positives must be in time order")
    hi = np.searchsorted(pos_ts, pos_ts, side="right")  # end of the sample's timestamp group
    split_start = np.searchsorted(
        pos_split, pos_split, side="left"
    )  # splits are contiguous in time
    lo = split_start if window is None else np.maximum(split_start, hi - window)
    return lo.astype(np.int64), hi.astype(np.int64)


def sample_window_negatives(
    pos_users: np.ndarray,
    pos_items: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    all_users: np.ndarray,
    all_items: np.ndarray,
    *,
    n_items: int,
    n_negatives: int,
    rng: np.random.Generator,
    max_rounds: int = 20,
) -> tuple[np.ndarray, int]:
    """Negatives drawn by popularity within each positive's window, by vectorised rejection sampling.

    pos_users, pos_items: [n_pos] the positives; lo, hi: [n_pos] the window of each positive as
    a range of positives (`negative_windows`). Drawing a uniformly random positive of the window
    and taking its item *is* drawing an item with probability proportional to its popularity in
    the window. (all_users, all_items): every interaction of the log (any label, any time) -
    these pairs are never drawn. Returns (int64 [n_pos, n_negatives] item indices, -1 where no
    item of the window is allowed; the number of such slots).
    """
    size = hi - lo

    def draw(rows: np.ndarray) -> np.ndarray:
        pick = lo[rows] + np.floor(rng.random(len(rows)) * size[rows]).astype(np.int64)
        return pos_items[np.minimum(pick, hi[rows] - 1)]

    def popularity_of(row: int) -> np.ndarray:
        return np.bincount(pos_items[lo[row] : hi[row]], minlength=n_items)

    return _rejection_sample(
        draw,
        popularity_of,
        pos_users,
        all_users,
        all_items,
        n_items=n_items,
        n_negatives=n_negatives,
        rng=rng,
        max_rounds=max_rounds,
    )


def build_samples(data: DataSet, config: ProtocolConfig) -> Samples:
    """Turn a DataSet into train/valid/test samples under `config`."""
    if data.given_split:
        return build_given_split_samples(data, config)
    source = f"{data.name} interactions"
    rule = config.label_rule.resolve(data.interactions, data.default_label_rule)
    ev = _encode_events(data, rule, source)
    bounds = chronological_split(ev.ts, config.split, source)
    n_unsampled = 0
    if rule.kind == "implicit" and rule.n_negatives > 0:
        event_split = np.searchsorted(bounds, ev.ts, side="left")
        rows, n_unsampled = _with_sampled_negatives(
            ev, rule.n_negatives, config.seed, event_split, config
        )
    else:
        rows = _event_rows(ev)
    # histories are computed once per event; sampled negatives point at their positive's event
    hist_offsets, hist_items = history_indices(
        ev.users, ev.items, ev.ts, ev.labels, config.max_history
    )
    split = np.searchsorted(bounds, rows["ts"], side="left")  # 0 train, 1 valid, 2 test
    return _samples(
        data, ev, rows, split, hist_offsets, hist_items, config, rule, bounds, n_unsampled
    )


def _event_rows(ev: _Events) -> dict[str, np.ndarray]:
    """Sample rows when no negatives are sampled: one per event."""
    return {
        "user": ev.users,
        "item": ev.items,
        "ts": ev.ts,
        "label": ev.labels,
        "event": np.arange(len(ev.ts)),
    }


def _samples(
    data: DataSet,
    ev: _Events,
    rows: dict[str, np.ndarray],
    split: np.ndarray,
    hist_offsets: np.ndarray,
    hist_items: np.ndarray,
    config: ProtocolConfig,
    rule: LabelRule,
    bounds: np.ndarray | None,
    n_unsampled: int,
) -> Samples:
    """The split tables (cold by training count), their statistics and the popularity probe."""
    train_pos = (split == 0) & (rows["label"] == 1)
    train_count = np.bincount(rows["item"][train_pos], minlength=len(ev.item_vocab)).astype(
        np.int32
    )
    tables = {
        name: _samples_table(
            np.flatnonzero(split == k),
            rows,
            hist_offsets,
            hist_items,
            ev,
            train_count,
            config.cold_threshold,
            name,
        )
        for k, name in enumerate(SPLITS)
    }
    stats = split_statistics(tables, bounds, config, rule)
    stats["popularity_probe"] = popularity_probe(tables)
    stats["skipped"] = {**data.skipped, "negatives_unsampleable": int(n_unsampled)}
    return Samples(tables=tables, stats=stats, label_rule=rule)


# ---- data without timestamps, with its own split (TikTok) ------------------------------------------
GIVEN_SPLIT_HISTORY = (
    "the user's training positives other than the target, in a seeded random order "
    "(the same for every sample of the user), the last max_history of that order"
)


def build_given_split_samples(data: DataSet, config: ProtocolConfig) -> Samples:
    """Samples for data without timestamps that comes with its own train/valid/test split.

    docs/protocol.md, "Data without timestamps": the split as given; history = the user's
    training positives other than the target, in a seeded order, the last `max_history` of it;
    negatives (implicit rule) by the popularity of the positives of the same split, never an
    item the user interacted with; cold by training count. Timestamps in the samples are 0.
    """
    source = f"{data.name} interactions"
    inter = data.interactions
    if inter.num_rows == 0:
        raise InputError(f"{source}: there are no interactions")
    rule = config.label_rule.resolve(inter, data.default_label_rule)
    labels = apply_label_rule(inter, rule, source)
    item_vocab = _sorted_vocab(data.items.column("item_id"))
    user_vocab = _sorted_vocab(inter.column("user_id"))
    users = _codes(inter.column("user_id"), user_vocab, source, "user_id")
    items = _codes(inter.column("item_id"), item_vocab, source, "item_id")
    split_of = pc.index_in(inter.column("split"), value_set=pa.array(SPLITS)).to_numpy(
        zero_copy_only=False
    )
    split_of = split_of.astype(np.int64)
    # canonical order (split, user, item, label): the result cannot depend on the input's row order
    order = np.lexsort((-labels, items, users, split_of))
    ev = _Events(
        users[order],
        items[order],
        np.zeros(len(order), np.int64),
        labels[order],
        user_vocab,
        item_vocab,
    )
    split_of = split_of[order]
    if not (ev.labels == 1).any():
        raise InputError(f"{source}: the label rule {rule.kind!r} leaves no positive interaction")
    if not ((split_of == 0) & (ev.labels == 1)).any():
        raise InputError(f"{source}: the training split has no positive interaction")
    rng = np.random.default_rng(config.seed)
    n_unsampled = 0
    if rule.kind == "implicit" and rule.n_negatives > 0:
        pos = np.flatnonzero(ev.labels == 1)
        # positives are grouped by split (canonical order), so a split is one range of them
        lo = np.searchsorted(split_of[pos], split_of[pos], side="left")
        hi = np.searchsorted(split_of[pos], split_of[pos], side="right")
        if config.negative_pool == "whole_log":  # protocol 2's rule, for comparison only
            lo, hi = np.zeros_like(lo), np.full_like(hi, len(pos))
        negatives, n_unsampled = sample_window_negatives(
            ev.users[pos],
            ev.items[pos],
            lo,
            hi,
            ev.users,
            ev.items,
            n_items=len(item_vocab),
            n_negatives=rule.n_negatives,
            rng=rng,
        )
        rows = _interleave_negatives(ev, pos, negatives, rule.n_negatives)
    else:
        rows = _event_rows(ev)
    hist_offsets, hist_items = given_split_histories(
        ev.users, ev.items, split_of == 0, ev.labels, config.max_history, rng
    )
    samples = _samples(
        data,
        ev,
        rows,
        split_of[rows["event"]],
        hist_offsets,
        hist_items,
        config,
        rule,
        None,
        n_unsampled,
    )
    protocol = samples.stats["protocol"]
    protocol["split"] = "given"
    protocol["history"] = GIVEN_SPLIT_HISTORY
    if config.negative_pool == "window":
        protocol["negative_window"] = "the whole split (no timestamps)"
    return samples


def _interleave_negatives(
    ev: _Events, pos: np.ndarray, negatives: np.ndarray, n_negatives: int
) -> dict[str, np.ndarray]:
    """Sample rows with each positive event followed by its negatives (-1 slots dropped)."""
    keep = (negatives >= 0).ravel()
    neg_event = np.repeat(pos, n_negatives)[keep]
    event = np.concatenate([np.arange(len(ev.ts)), neg_event])
    slot = np.concatenate([np.zeros(len(ev.ts), np.int64), np.ones(len(neg_event), np.int64)])
    o = np.lexsort((slot, event))
    return {
        "user": ev.users[event][o],
        "item": np.concatenate([ev.items, negatives.ravel()[keep]])[o],
        "ts": ev.ts[event][o],
        "label": np.concatenate([ev.labels, np.zeros(len(neg_event), np.int8)])[o],
        "event": event[o],
    }


def given_split_histories(
    users: np.ndarray,
    items: np.ndarray,
    is_train: np.ndarray,
    labels: np.ndarray,
    max_history: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Histories (CSR: offsets int64 [n_events + 1], item indices) for data without timestamps.

    Each user's distinct training positives get one seeded random order; the history of an
    event (u, i) is that order without i, its last `max_history` items.
    """
    n_items = int(items.max()) + 1 if len(items) else 0
    train_keys = sorted_unique(
        users[is_train & (labels == 1)].astype(np.int64) * n_items + items[is_train & (labels == 1)]
    )
    t_users, t_items = train_keys // max(n_items, 1), train_keys % max(n_items, 1)
    shuffled = np.lexsort((rng.random(len(train_keys)), t_users))  # per user, a seeded order
    t_users, t_items = t_users[shuffled], t_items[shuffled]
    position = np.empty(len(train_keys), np.int64)
    position[shuffled] = np.arange(len(train_keys))  # sorted key -> index in the user's order
    u_start = np.searchsorted(t_users, users, side="left")
    u_end = np.searchsorted(t_users, users, side="right")
    keys = users.astype(np.int64) * n_items + items
    at = np.searchsorted(train_keys, keys).clip(0, max(len(train_keys) - 1, 0))
    has = (train_keys[at] == keys) if len(train_keys) else np.zeros(len(keys), bool)
    target_pos = np.where(has, position[at] if len(train_keys) else 0, -1)
    k = np.minimum(max_history, u_end - u_start - has)  # history length
    start = u_end - k
    # the target inside the window: reach one further back and skip it
    inside = has & (target_pos >= start)
    start = start - inside
    span = u_end - start
    offsets_span = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(span, out=offsets_span[1:])
    flat = np.repeat(start - offsets_span[:-1], span) + np.arange(offsets_span[-1])
    drop = flat == np.repeat(np.where(inside, target_pos, -1), span)
    lengths = span - inside
    offsets = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, t_items[flat[~drop]]


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique for 1-D integers by sorting: numpy 2's hash-based np.unique is ~5x slower here."""
    s = np.sort(x)
    return s[np.concatenate([[True], s[1:] != s[:-1]])] if len(s) else s


def sample_negatives(
    pos_users: np.ndarray,
    all_users: np.ndarray,
    all_items: np.ndarray,
    *,
    popularity: np.ndarray,
    n_negatives: int,
    rng: np.random.Generator,
    max_rounds: int = 20,
) -> tuple[np.ndarray, int]:
    """Popularity-proportional negatives per positive, by vectorised rejection sampling.

    pos_users: [n_pos] user index of each positive; (all_users, all_items): every interaction of
    the log (any label, any time) - these pairs are never drawn. After `max_rounds` of bulk
    rejection the few slots left (users who saw the most popular items) are drawn exactly from
    their own allowed distribution. Returns (int64 [n_pos, n_negatives] item indices, -1 where
    the user has interacted with every item of non-zero popularity; the number of such slots).
    """
    n_items = len(popularity)
    if popularity.sum() <= 0:
        raise InputError("no item has a positive interaction to sample negatives from")
    cdf = np.cumsum(popularity, dtype=np.float64)
    cdf /= cdf[-1]

    def draw(rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(cdf, rng.random(len(rows)), side="right").clip(0, n_items - 1)

    return _rejection_sample(
        draw,
        lambda row: popularity,
        pos_users,
        all_users,
        all_items,
        n_items=n_items,
        n_negatives=n_negatives,
        rng=rng,
        max_rounds=max_rounds,
    )


def _rejection_sample(
    draw: Callable[[np.ndarray], np.ndarray],
    popularity_of: Callable[[int], np.ndarray],
    pos_users: np.ndarray,
    all_users: np.ndarray,
    all_items: np.ndarray,
    *,
    n_items: int,
    n_negatives: int,
    rng: np.random.Generator,
    max_rounds: int,
) -> tuple[np.ndarray, int]:
    """The rejection loop of both samplers: `draw(rows)` gives one item per open slot of those rows.

    A draw is rejected when the user has interacted with the item or the row already holds it.
    After `max_rounds` the few slots left are filled one at a time, exactly, from
    `popularity_of(row)` restricted to the allowed items (a Python loop: only rare leftovers get
    here). Returns (int64 [n_pos, n_negatives] item indices, -1 where no item is allowed; the
    number of such slots).
    """
    seen = sorted_unique(all_users.astype(np.int64) * n_items + all_items)
    out = np.full((len(pos_users), n_negatives), -1, dtype=np.int64)
    todo = np.ones(out.shape, dtype=bool)
    for _ in range(max_rounds):
        rows, cols = np.nonzero(todo)
        if len(rows) == 0:
            break
        items = draw(rows)
        out[rows, cols] = items
        keys = pos_users[rows].astype(np.int64) * n_items + items
        at = np.searchsorted(seen, keys).clip(0, max(len(seen) - 1, 0))
        rejected = seen[at] == keys if len(seen) else np.zeros(len(keys), bool)
        todo[:] = False
        todo[rows[rejected], cols[rejected]] = True
        todo |= _duplicates_in_row(out)
    if todo.any():
        out[todo] = -1  # rejected draws must not block the items they landed on
        for row, col in zip(*np.nonzero(todo), strict=True):
            _fill_slot_exactly(out, todo, row, col, pos_users, seen, popularity_of(row), rng)
    out[todo] = -1
    return out, int(todo.sum())


def _fill_slot_exactly(
    out: np.ndarray,
    todo: np.ndarray,
    row: int,
    col: int,
    pos_users: np.ndarray,
    seen: np.ndarray,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Draw out[row, col] from `popularity` without the user's items and the row's other negatives."""
    n_items = len(popularity)
    user = int(pos_users[row])
    lo, hi = np.searchsorted(seen, [user * n_items, (user + 1) * n_items])
    p = popularity.astype(np.float64)
    p[seen[lo:hi] - user * n_items] = 0.0
    others = out[row][np.arange(out.shape[1]) != col]
    p[others[others >= 0]] = 0.0
    if p.sum() > 0:
        out[row, col] = rng.choice(n_items, p=p / p.sum())
        todo[row, col] = False


def _duplicates_in_row(x: np.ndarray) -> np.ndarray:
    """bool mask of entries equal to an earlier entry of the same row (the first copy is kept)."""
    if x.shape[1] < 2:
        return np.zeros(x.shape, dtype=bool)
    order = np.argsort(x, axis=1, kind="stable")
    sorted_x = np.take_along_axis(x, order, axis=1)
    dup_sorted = np.zeros(x.shape, dtype=bool)
    dup_sorted[:, 1:] = (sorted_x[:, 1:] == sorted_x[:, :-1]) & (sorted_x[:, 1:] >= 0)
    mask = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(mask, order, dup_sorted, axis=1)
    return mask


def history_indices(
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    labels: np.ndarray,
    max_history: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Histories of the events as a CSR list: (offsets int64 [n_events + 1], item indices).

    The history of event (u, t) is u's positives with timestamp < t (strict), newest
    `max_history`, oldest first; positives on the same timestamp are ordered by item index.
    Works in (user, time) order so every binary search gets sorted queries (~4x faster than
    random queries at millions of events), then maps back to the caller's event order.
    """
    n = len(ts)
    o = np.lexsort((items, ts, users))
    u, t, it = users[o], ts[o], items[o]
    starts_group = np.ones(n, dtype=bool)
    starts_group[1:] = (u[1:] != u[:-1]) | (t[1:] != t[:-1])
    group = np.cumsum(starts_group) - 1  # dense rank of (user, timestamp), increasing in this order
    pos = labels[o] == 1
    end_sorted = np.searchsorted(group[pos], group, side="left")  # positives strictly before (u, t)
    user_start_sorted = np.searchsorted(u[pos], u, side="left")
    end, start = np.empty(n, np.int64), np.empty(n, np.int64)
    end[o] = end_sorted
    start[o] = np.maximum(user_start_sorted, end_sorted - max_history)
    lengths = end - start
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])
    return offsets, it[pos][flat]


def chronological_split(
    ts: np.ndarray, fractions: tuple[float, float, float], source: str
) -> np.ndarray:
    """The two split boundaries (int64 [2]) from global time quantiles of the event times `ts`.

    Boundary b_k is the timestamp at the cumulative-fraction position of the sorted event times;
    events with ts < b_1 are train, b_1 <= ts < b_2 valid, the rest test. Returned boundaries are
    the *last timestamp included* in train / valid (split = searchsorted(bounds, ts, side='left')).
    """
    sorted_ts = np.sort(ts)
    n = len(sorted_ts)
    cum = np.cumsum(fractions)[:2]
    cut = [sorted_ts[min(math.floor(c * n), n - 1)] if c < 1 else sorted_ts[-1] + 1 for c in cum]
    bounds = np.array([cut[0] - 1, cut[1] - 1], dtype=np.int64)
    if not (ts <= bounds[0]).any():
        raise InputError(
            f"{source}: the training split is empty (all events share the first split timestamp)"
        )
    return bounds


def _samples_table(
    rows: np.ndarray,
    sample: dict[str, np.ndarray],
    hist_offsets: np.ndarray,
    hist_items: np.ndarray,
    ev: _Events,
    train_count: np.ndarray,
    cold_threshold: int,
    split: str,
) -> pa.Table:
    """The SAMPLE_SCHEMA table of the sample rows `rows` (one split)."""
    events = sample["event"][rows]
    starts, ends = hist_offsets[events], hist_offsets[events + 1]
    lengths = ends - starts
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    history = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), ev.item_vocab.take(pa.array(hist_items[flat]))
    )
    items = sample["item"][rows]
    counts = train_count[items]
    return pa.Table.from_arrays(
        [
            ev.user_vocab.take(pa.array(sample["user"][rows])),
            ev.item_vocab.take(pa.array(items)),
            pa.array(sample["label"][rows], pa.int8()),
            pa.array(sample["ts"][rows], pa.int64()),
            history,
            pa.array(np.full(len(rows), split, dtype=object), pa.string()),
            pa.array(counts, pa.int32()),
            pa.array(counts < cold_threshold, pa.bool_()),
        ],
        schema=SAMPLE_SCHEMA,
    )


def _iso(t: int) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%d")


def _n_new(values: pa.Array, known: pa.Array) -> int:
    """How many distinct `values` are not in `known`."""
    return (
        int(len(values) - pc.sum(pc.is_in(values, value_set=known)).as_py()) if len(values) else 0
    )


def split_statistics(
    tables: dict[str, pa.Table], bounds: np.ndarray | None, config: ProtocolConfig, rule: LabelRule
) -> dict[str, Any]:
    """Rows, positives, users, items, positive rate, cold shares and time range per split.

    new_users: users absent from train; new_items: positive targets never a positive target in train.
    bounds None: the data has no timestamps (its own split), so no boundaries and no days.
    """
    train = tables["train"]
    train_users = pc.unique(train.column("user_id"))
    train_items = pc.unique(pc.filter(train.column("item_id"), pc.equal(train.column("label"), 1)))
    per_split = {}
    for name, t in tables.items():
        n = t.num_rows
        label = t.column("label").to_numpy(zero_copy_only=False)
        cold = t.column("is_cold").to_numpy(zero_copy_only=False)
        tsv = t.column("timestamp").to_numpy(zero_copy_only=False)
        users = pc.unique(t.column("user_id"))
        pos_items = pc.unique(pc.filter(t.column("item_id"), pc.equal(t.column("label"), 1)))
        hist_len = (
            pc.list_value_length(t.column("history")).to_numpy(zero_copy_only=False)
            if n
            else np.zeros(0)
        )
        per_split[name] = {
            "rows": n,
            "positives": int(label.sum()),
            "positive_rate": float(label.mean()) if n else 0.0,
            "users": len(users),
            "items": len(pc.unique(t.column("item_id"))),
            "new_users": _n_new(users, train_users),
            "new_items": _n_new(pos_items, train_items),
            "cold_share": float(cold.mean()) if n else 0.0,
            "cold_share_positives": float(cold[label == 1].mean()) if label.sum() else 0.0,
            "mean_history": float(hist_len.mean()) if n else 0.0,
            "empty_history_share": float((hist_len == 0).mean()) if n else 0.0,
            "first_day": _iso(tsv.min()) if n and bounds is not None else None,
            "last_day": _iso(tsv.max()) if n and bounds is not None else None,
        }
    boundaries = (
        {}
        if bounds is None
        else {
            "train_until": _iso(bounds[0]),
            "valid_until": _iso(bounds[1]),
            "train_until_ts": int(bounds[0]),
            "valid_until_ts": int(bounds[1]),
        }
    )
    return {
        "label_rule": rule.to_dict(),
        "boundaries": boundaries,
        "splits": per_split,
        "protocol": config.to_dict(),
    }


PROBE_SCORE = "log((train positives + 1) / (train negatives + 1)) of the target item"


def popularity_probe(tables: dict[str, pa.Table]) -> dict[str, Any]:
    """AUC per split of a score that knows nothing but the item's training-period label rate.

    score(item) = log((p + 1) / (n + 1)) with p, n its positive and negative training samples
    (add-one smoothing; items without training samples score 0). A user-blind score like this
    should be useless (AUC 0.5) on valid and test when negatives are sampled; far from 0.5, the
    labels leak through the item alone (protocol 2's whole-log sampler gave ~0.38, see
    docs/protocol.md). `train` is in-sample and only for reference; `*_cold` restrict to cold
    targets. `ok` is whether valid and test lie within 0.5 +- PROBE_TOLERANCE (NaN counts as ok:
    a split with one class has no AUC).
    """
    from psrq.rank.metrics import auc

    train = tables["train"]
    vocab = pc.unique(
        pa.chunked_array(
            [t.column("item_id") for t in tables.values()], type=pa.string()
        ).combine_chunks()
    )
    idx = pc.index_in(train.column("item_id"), value_set=vocab).to_numpy(zero_copy_only=False)
    label = train.column("label").to_numpy(zero_copy_only=False).astype(np.int64)
    pos = np.bincount(idx, weights=label, minlength=len(vocab))
    neg = np.bincount(idx, weights=1 - label, minlength=len(vocab))
    score = np.log((pos + 1.0) / (neg + 1.0))
    out: dict[str, Any] = {"score": PROBE_SCORE, "tolerance": PROBE_TOLERANCE}
    for name, t in tables.items():
        y = t.column("label").to_numpy(zero_copy_only=False)
        s = (
            score[pc.index_in(t.column("item_id"), value_set=vocab).to_numpy(zero_copy_only=False)]
            if t.num_rows
            else np.zeros(0)
        )
        out[name] = _finite_or_none(auc(y, s))
        if name != "train":
            cold = t.column("is_cold").to_numpy(zero_copy_only=False)
            out[f"{name}_cold"] = _finite_or_none(auc(y[cold], s[cold]))
    out["ok"] = probe_ok(out)
    return out


def _finite_or_none(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)  # meta.json must stay valid JSON


def probe_ok(probe: dict[str, Any]) -> bool:
    """Whether the probe's valid and test AUC lie within 0.5 +- its tolerance (NaN: no AUC, ok)."""
    tol = probe.get("tolerance", PROBE_TOLERANCE)
    return all(abs(probe[s] - 0.5) <= tol for s in ("valid", "test") if probe.get(s) is not None)


def probe_warning(probe: dict[str, Any], label_rule: str) -> str | None:
    """A sentence for users when the probe strays outside 0.5 +- tolerance, else None."""
    if probe_ok(probe):
        return None
    vals = ", ".join(f"{s} {probe[s]:.3f}" for s in ("valid", "test") if probe.get(s) is not None)
    if label_rule == "implicit":
        why = (
            "the sampled negatives follow a different popularity than the positives, so the "
            "item alone predicts the label and ID/SID tables learn that instead of the user"
        )
    else:
        why = (
            "the data's own labels differ by item; a model can reach this AUC without knowing the "
            "user, so compare models against it"
        )
    return (
        f"popularity probe outside 0.5 +- {probe.get('tolerance', PROBE_TOLERANCE)} ({vals}): {why} "
        '(docs/protocol.md §3, "The popularity probe")'
    )


def print_split_statistics(stats: dict[str, Any], title: str = "samples") -> None:
    """Print the split statistics as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title}  (label rule: {stats['label_rule']['kind']})")
    cols = [
        ("split", "split"),
        ("rows", "rows"),
        ("pos", "positives"),
        ("pos rate", "positive_rate"),
        ("users", "users"),
        ("items", "items"),
        ("new users", "new_users"),
        ("new items", "new_items"),
        ("cold", "cold_share"),
        ("cold pos", "cold_share_positives"),
        ("hist", "mean_history"),
        ("days", None),
    ]
    for header, _ in cols:
        table.add_column(
            header,
            justify="left" if header in ("split", "days") else "right",
            no_wrap=header == "days",
        )
    for name, s in stats["splits"].items():
        cells = [name]
        for _, key in cols[1:]:
            if key is None:
                cells.append(
                    f"{s['first_day']} .. {s['last_day']}" if s["rows"] and s["first_day"] else "-"
                )
            elif isinstance(s[key], float):
                cells.append(
                    f"{s[key]:.3f}" if "share" in key or "rate" in key else f"{s[key]:.1f}"
                )
            else:
                cells.append(f"{s[key]:,}")
        table.add_row(*cells)
    console = Console()
    console.width = max(console.width, 132)  # a table this wide wraps into nonsense at 80 columns
    console.print(table)
    probe = stats.get("popularity_probe")
    if probe:
        console.print(format_probe(probe), highlight=False)
        warning = probe_warning(probe, stats["label_rule"]["kind"])
        if warning:
            console.print(f"[bold red]WARNING[/]: {warning}", highlight=False)


def format_probe(probe: dict[str, Any]) -> str:
    """One line: the popularity probe's AUC per split."""

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    return (
        f"popularity probe (AUC of the item's training label rate; should be 0.5 +- {probe['tolerance']}): "
        f"valid {f(probe['valid'])}, test {f(probe['test'])} "
        f"(cold: valid {f(probe.get('valid_cold'))}, test {f(probe.get('test_cold'))}; train, in-sample: {f(probe['train'])})"
    )
