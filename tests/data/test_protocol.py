"""The sample protocol: leak-free history, ties, split chronology, negatives, cold items, determinism.

The random logs here are SYNTHETIC (seeded numpy draws), built to stress ties and repeats.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from psrq.data.labels import LabelRule
from psrq.data.protocol import ProtocolConfig, build_samples, sample_negatives
from psrq.data.schema import DataSet
from psrq.errors import ConfigError, InputError


def synthetic_log(n_users=40, n_items=60, n_events=1500, n_times=25, seed=0, labels=False) -> DataSet:
    """SYNTHETIC: few distinct timestamps so that same-time ties are everywhere; repeats allowed."""
    rng = np.random.default_rng(seed)
    pop = rng.pareto(1.2, n_items) + 0.1
    inter = {
        "user_id": [f"u{u}" for u in rng.integers(0, n_users, n_events)],
        "item_id": [f"i{i}" for i in rng.choice(n_items, n_events, p=pop / pop.sum())],
        "timestamp": (1_600_000_000 + rng.integers(0, n_times, n_events) * 86_400).astype(np.int64),
    }
    if labels:
        inter["label"] = rng.integers(0, 2, n_events).astype(np.int8)
    items = pa.table({"item_id": [f"i{i}" for i in range(n_items)], "text": ["SYNTHETIC"] * n_items})
    return DataSet(name="synthetic-test", items=items, interactions=pa.table(inter), synthetic=True,
                   default_label_rule="explicit" if labels else "implicit")


def _all_samples(samples) -> list[dict]:
    return [r for t in samples.tables.values() for r in t.to_pylist()]


def _reference_history(data: DataSet, labels: np.ndarray, user: str, t: int, k: int) -> list[str]:
    """Brute force: the user's positives strictly before t, newest k, oldest first (ties by item_id)."""
    rows = data.interactions.to_pylist()
    earlier = sorted((r["timestamp"], r["item_id"]) for r, y in zip(rows, labels, strict=True)
                     if y == 1 and r["user_id"] == user and r["timestamp"] < t)
    return [item for _, item in earlier[-k:]] if k else []


@pytest.mark.parametrize("explicit", [False, True])
def test_history_matches_brute_force_and_never_sees_itself_or_later(explicit):
    data = synthetic_log(labels=explicit)
    k = 5
    samples = build_samples(data, ProtocolConfig(max_history=k, label_rule=LabelRule("auto", n_negatives=2)))
    labels = (np.asarray(data.interactions.column("label")) if explicit else np.ones(data.interactions.num_rows, int))
    pos_time = {}
    for r, y in zip(data.interactions.to_pylist(), labels, strict=True):
        if y == 1:
            pos_time.setdefault((r["user_id"], r["item_id"]), []).append(r["timestamp"])
    rows = _all_samples(samples)
    for r in rows[::7]:  # brute force on every 7th sample keeps the test fast
        assert r["history"] == _reference_history(data, labels, r["user_id"], r["timestamp"], k)
    for r in rows:
        # every history entry is a positive of this user at a time strictly before the sample
        for item in r["history"]:
            assert min(pos_time[(r["user_id"], item)]) < r["timestamp"]


def test_same_timestamp_events_are_excluded_from_each_others_history():
    items = pa.table({"item_id": ["a", "b", "c", "d"], "text": ["x"] * 4})
    inter = pa.table({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"],
                      "timestamp": [100, 200, 200, 300]})
    data = DataSet(name="t", items=items, interactions=inter)
    samples = build_samples(data, ProtocolConfig(split=(1.0, 0.0, 0.0), label_rule=LabelRule("implicit", n_negatives=0)))
    hist = {r["item_id"]: r["history"] for r in samples.tables["train"].to_pylist()}
    assert hist == {"a": [], "b": ["a"], "c": ["a"], "d": ["a", "b", "c"]}


def test_negatives_share_timestamp_and_history_and_are_never_interacted():
    data = synthetic_log()
    samples = build_samples(data, ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=3), seed=7))
    interacted = set(zip(data.interactions.column("user_id").to_pylist(), data.interactions.column("item_id").to_pylist(), strict=True))
    rows = _all_samples(samples)
    negatives = [r for r in rows if r["label"] == 0]
    assert len(negatives) == 3 * sum(r["label"] for r in rows)
    assert all((r["user_id"], r["item_id"]) not in interacted for r in negatives)
    # each positive is followed by its negatives, which copy its user, timestamp and history
    for k, r in enumerate(rows):
        if r["label"] == 1:
            group = rows[k + 1 : k + 4]
            assert {(g["user_id"], g["timestamp"], tuple(g["history"]), g["label"]) for g in group} == {
                (r["user_id"], r["timestamp"], tuple(r["history"]), 0)}
            assert len({g["item_id"] for g in group}) == 3  # no repeated negative for one positive


def test_negative_sampling_is_deterministic_and_seed_dependent():
    data = synthetic_log()
    cfg = ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=2), seed=3)
    a = build_samples(data, cfg).tables["train"]
    b = build_samples(data, cfg).tables["train"]
    c = build_samples(data, ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=2), seed=4)).tables["train"]
    assert a.equals(b)
    assert not a.equals(c)


def test_result_does_not_depend_on_input_row_order():
    data = synthetic_log()
    perm = np.random.default_rng(1).permutation(data.interactions.num_rows)
    shuffled = DataSet(name=data.name, items=data.items, interactions=data.interactions.take(perm))
    cfg = ProtocolConfig(seed=5)
    for split in ("train", "valid", "test"):
        assert build_samples(data, cfg).tables[split].equals(build_samples(shuffled, cfg).tables[split])


def test_sample_negatives_follows_popularity_and_rejects_seen_pairs():
    rng = np.random.default_rng(0)
    popularity = np.array([0, 1, 1, 8, 90], dtype=np.int64)  # item 4 dominates, item 0 is never drawn
    users = np.array([0, 1])
    seen_users, seen_items = np.array([0, 1]), np.array([4, 1])  # user 0 has seen 4, user 1 has seen 1
    neg, missing = sample_negatives(np.repeat(users, 5000), seen_users, seen_items, popularity=popularity,
                                    n_negatives=1, rng=rng)
    assert missing == 0
    u0, u1 = neg[:5000, 0], neg[5000:, 0]
    assert not (u0 == 4).any() and not (u1 == 1).any() and not (neg == 0).any()
    assert abs((u1 == 4).mean() - 90 / 99) < 0.02  # popularity-proportional among the allowed items


def test_unsampleable_negatives_are_counted_not_invented():
    neg, missing = sample_negatives(np.array([0]), np.array([0, 0]), np.array([0, 1]),
                                    popularity=np.array([1, 1]), n_negatives=1, rng=np.random.default_rng(0))
    assert missing == 1 and neg[0, 0] == -1


def test_split_is_chronological_with_requested_fractions():
    data = synthetic_log(n_times=200, n_events=4000)
    samples = build_samples(data, ProtocolConfig(split=(0.7, 0.2, 0.1)))
    t = {s: np.asarray(tab.column("timestamp")) for s, tab in samples.tables.items()}
    assert t["train"].max() < t["valid"].min() and t["valid"].max() < t["test"].min()
    n = {s: int((np.asarray(tab.column("label")) == 1).sum()) for s, tab in samples.tables.items()}
    total = sum(n.values())
    assert abs(n["train"] / total - 0.7) < 0.02 and abs(n["valid"] / total - 0.2) < 0.02
    assert all((np.asarray(tab.column("split").to_pylist()) == s).all() for s, tab in samples.tables.items())


def test_cold_counts_are_training_positives():
    data = synthetic_log()
    samples = build_samples(data, ProtocolConfig(cold_threshold=10))
    train = samples.tables["train"].to_pylist()
    counts: dict[str, int] = {}
    for r in train:
        counts[r["item_id"]] = counts.get(r["item_id"], 0) + r["label"]
    for r in _all_samples(samples):
        assert r["item_train_count"] == counts.get(r["item_id"], 0)
        assert r["is_cold"] == (r["item_train_count"] < 10)
    stats = samples.stats["splits"]
    assert 0 < stats["test"]["cold_share"] <= 1 and stats["train"]["new_items"] == 0


def test_explicit_labels_keep_data_negatives_and_sample_none():
    data = synthetic_log(labels=True)
    samples = build_samples(data, ProtocolConfig())
    assert samples.label_rule.kind == "explicit"
    assert sum(t.num_rows for t in samples.tables.values()) == data.interactions.num_rows


@pytest.mark.parametrize("kwargs", [{"split": (0.5, 0.5, 0.5)}, {"split": (0.0, 0.5, 0.5)}, {"max_history": -1}])
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        ProtocolConfig(**kwargs)


def test_bad_label_rule_and_missing_rule_column():
    with pytest.raises(ConfigError, match="label rule 'stars' is unknown"):
        LabelRule("stars")
    with pytest.raises(InputError, match="needs column 'rating'"):
        build_samples(synthetic_log(), ProtocolConfig(label_rule=LabelRule("rating")))
