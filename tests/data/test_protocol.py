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


def synthetic_log(
    n_users=40, n_items=60, n_events=1500, n_times=25, seed=0, labels=False
) -> DataSet:
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
    items = pa.table(
        {"item_id": [f"i{i}" for i in range(n_items)], "text": ["SYNTHETIC"] * n_items}
    )
    return DataSet(
        name="synthetic-test",
        items=items,
        interactions=pa.table(inter),
        synthetic=True,
        default_label_rule="explicit" if labels else "implicit",
    )


def _all_samples(samples) -> list[dict]:
    return [r for t in samples.tables.values() for r in t.to_pylist()]


def _reference_history(data: DataSet, labels: np.ndarray, user: str, t: int, k: int) -> list[str]:
    """Brute force: the user's positives strictly before t, newest k, oldest first (ties by item_id)."""
    rows = data.interactions.to_pylist()
    earlier = sorted(
        (r["timestamp"], r["item_id"])
        for r, y in zip(rows, labels, strict=True)
        if y == 1 and r["user_id"] == user and r["timestamp"] < t
    )
    return [item for _, item in earlier[-k:]] if k else []


@pytest.mark.parametrize("explicit", [False, True])
def test_history_matches_brute_force_and_never_sees_itself_or_later(explicit):
    data = synthetic_log(labels=explicit)
    k = 5
    samples = build_samples(
        data, ProtocolConfig(max_history=k, label_rule=LabelRule("auto", n_negatives=2))
    )
    labels = (
        np.asarray(data.interactions.column("label"))
        if explicit
        else np.ones(data.interactions.num_rows, int)
    )
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
    inter = pa.table(
        {"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "timestamp": [100, 200, 200, 300]}
    )
    data = DataSet(name="t", items=items, interactions=inter)
    samples = build_samples(
        data, ProtocolConfig(split=(1.0, 0.0, 0.0), label_rule=LabelRule("implicit", n_negatives=0))
    )
    hist = {r["item_id"]: r["history"] for r in samples.tables["train"].to_pylist()}
    assert hist == {"a": [], "b": ["a"], "c": ["a"], "d": ["a", "b", "c"]}


def test_negatives_share_timestamp_and_history_and_are_never_interacted():
    data = synthetic_log()
    samples = build_samples(
        data, ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=3), seed=7)
    )
    interacted = set(
        zip(
            data.interactions.column("user_id").to_pylist(),
            data.interactions.column("item_id").to_pylist(),
            strict=True,
        )
    )
    rows = _all_samples(samples)
    negatives = [r for r in rows if r["label"] == 0]
    assert len(negatives) == 3 * sum(r["label"] for r in rows)
    assert all((r["user_id"], r["item_id"]) not in interacted for r in negatives)
    # each positive is followed by its negatives, which copy its user, timestamp and history
    for k, r in enumerate(rows):
        if r["label"] == 1:
            group = rows[k + 1 : k + 4]
            assert {
                (g["user_id"], g["timestamp"], tuple(g["history"]), g["label"]) for g in group
            } == {(r["user_id"], r["timestamp"], tuple(r["history"]), 0)}
            assert len({g["item_id"] for g in group}) == 3  # no repeated negative for one positive


def test_negative_sampling_is_deterministic_and_seed_dependent():
    data = synthetic_log()
    cfg = ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=2), seed=3)
    a = build_samples(data, cfg).tables["train"]
    b = build_samples(data, cfg).tables["train"]
    c = build_samples(
        data, ProtocolConfig(label_rule=LabelRule("implicit", n_negatives=2), seed=4)
    ).tables["train"]
    assert a.equals(b)
    assert not a.equals(c)


def test_result_does_not_depend_on_input_row_order():
    data = synthetic_log()
    perm = np.random.default_rng(1).permutation(data.interactions.num_rows)
    shuffled = DataSet(name=data.name, items=data.items, interactions=data.interactions.take(perm))
    cfg = ProtocolConfig(seed=5)
    for split in ("train", "valid", "test"):
        assert (
            build_samples(data, cfg)
            .tables[split]
            .equals(build_samples(shuffled, cfg).tables[split])
        )


def test_sample_negatives_follows_popularity_and_rejects_seen_pairs():
    rng = np.random.default_rng(0)
    popularity = np.array(
        [0, 1, 1, 8, 90], dtype=np.int64
    )  # item 4 dominates, item 0 is never drawn
    users = np.array([0, 1])
    seen_users, seen_items = (
        np.array([0, 1]),
        np.array([4, 1]),
    )  # user 0 has seen 4, user 1 has seen 1
    neg, missing = sample_negatives(
        np.repeat(users, 5000),
        seen_users,
        seen_items,
        popularity=popularity,
        n_negatives=1,
        rng=rng,
    )
    assert missing == 0
    u0, u1 = neg[:5000, 0], neg[5000:, 0]
    assert not (u0 == 4).any() and not (u1 == 1).any() and not (neg == 0).any()
    assert abs((u1 == 4).mean() - 90 / 99) < 0.02  # popularity-proportional among the allowed items


def test_unsampleable_negatives_are_counted_not_invented():
    neg, missing = sample_negatives(
        np.array([0]),
        np.array([0, 0]),
        np.array([0, 1]),
        popularity=np.array([1, 1]),
        n_negatives=1,
        rng=np.random.default_rng(0),
    )
    assert missing == 1 and neg[0, 0] == -1


def test_split_is_chronological_with_requested_fractions():
    data = synthetic_log(n_times=200, n_events=4000)
    samples = build_samples(data, ProtocolConfig(split=(0.7, 0.2, 0.1)))
    t = {s: np.asarray(tab.column("timestamp")) for s, tab in samples.tables.items()}
    assert t["train"].max() < t["valid"].min() and t["valid"].max() < t["test"].min()
    n = {s: int((np.asarray(tab.column("label")) == 1).sum()) for s, tab in samples.tables.items()}
    total = sum(n.values())
    assert abs(n["train"] / total - 0.7) < 0.02 and abs(n["valid"] / total - 0.2) < 0.02
    assert all(
        (np.asarray(tab.column("split").to_pylist()) == s).all()
        for s, tab in samples.tables.items()
    )


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


@pytest.mark.parametrize(
    "kwargs", [{"split": (0.5, 0.5, 0.5)}, {"split": (0.0, 0.5, 0.5)}, {"max_history": -1}]
)
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        ProtocolConfig(**kwargs)


def test_bad_label_rule_and_missing_rule_column():
    with pytest.raises(ConfigError, match="label rule 'stars' is unknown"):
        LabelRule("stars")
    with pytest.raises(InputError, match="needs column 'rating'"):
        build_samples(synthetic_log(), ProtocolConfig(label_rule=LabelRule("rating")))


# ---- protocol 3: negatives from the sample's own window, and the popularity probe ----------------


def _positive_times(samples) -> dict[str, list[tuple[int, str]]]:
    """item -> [(timestamp, split)] of its positive samples."""
    out: dict[str, list[tuple[int, str]]] = {}
    for r in _all_samples(samples):
        if r["label"] == 1:
            out.setdefault(r["item_id"], []).append((r["timestamp"], r["split"]))
    return out


@pytest.mark.parametrize("window", [None, 40])
def test_negatives_come_from_positives_of_the_same_split_never_later(window):
    data = synthetic_log(n_times=60, n_events=3000)
    samples = build_samples(
        data,
        ProtocolConfig(
            label_rule=LabelRule("implicit", n_negatives=2), negative_window=window, seed=1
        ),
    )
    pos = [r for r in _all_samples(samples) if r["label"] == 1]
    pos_times = _positive_times(samples)
    negatives = [r for r in _all_samples(samples) if r["label"] == 0]
    assert negatives
    for r in negatives:
        # the negative item was a positive in the same split at or before the sample's time
        assert any(t <= r["timestamp"] and s == r["split"] for t, s in pos_times[r["item_id"]]), r
    if window is not None:
        # ... and among the newest `window` positives of the split up to that time
        for r in negatives[::5]:
            pool = [
                p["item_id"]
                for p in pos
                if p["split"] == r["split"] and p["timestamp"] <= r["timestamp"]
            ]
            assert r["item_id"] in pool[-window:]


def test_window_negatives_follow_the_windows_popularity():
    # SYNTHETIC: every window holds item 0 three times and item 1 once (item 2 never)
    from psrq.data.protocol import sample_window_negatives

    n = 20_000
    items = np.array([0, 0, 0, 1] * (n // 4))
    lo = np.arange(n) // 4 * 4
    users = np.arange(n) + 10
    neg, missing = sample_window_negatives(
        users,
        items,
        lo,
        lo + 4,
        np.array([10]),
        np.array([0]),
        n_items=3,
        n_negatives=1,
        rng=np.random.default_rng(0),
    )
    assert missing == 0 and not (neg == 2).any()
    assert neg[0, 0] == 1  # user 10 has seen item 0: only item 1 is allowed
    assert abs((neg[1:, 0] == 0).mean() - 0.75) < 0.02


def test_whole_log_pool_reproduces_protocol_2_and_records_its_version():
    data = synthetic_log()
    old = build_samples(data, ProtocolConfig(negative_pool="whole_log"))
    new = build_samples(data, ProtocolConfig())
    assert old.stats["protocol"]["protocol_version"] == 2
    assert new.stats["protocol"]["protocol_version"] == 3
    assert not old.tables["train"].equals(new.tables["train"])
    with pytest.raises(ConfigError, match="negative_pool"):
        ProtocolConfig(negative_pool="future")
    with pytest.raises(ConfigError, match="negative_window"):
        ProtocolConfig(negative_window=0)


def test_popularity_probe_scores_the_training_label_rate():
    from psrq.data.protocol import popularity_probe

    def table(items, labels, cold=None):
        n = len(items)
        return pa.table(
            {
                "item_id": items,
                "label": pa.array(labels, pa.int8()),
                "is_cold": cold if cold is not None else [False] * n,
            }
        )

    # item a: always positive in train, b: always negative; valid repeats that, test reverses it
    train = table(["a", "a", "b", "b"], [1, 1, 0, 0])
    probe = popularity_probe(
        {"train": train, "valid": table(["a", "b"], [1, 0]), "test": table(["a", "b"], [0, 1])}
    )
    assert probe["train"] == 1.0 and probe["valid"] == 1.0 and probe["test"] == 0.0
    assert not probe["ok"] and probe["valid_cold"] is None  # no cold rows: no AUC, not NaN in JSON
    # items unseen in training score 0 (a tie): AUC 0.5
    probe = popularity_probe(
        {"train": train, "valid": table(["c", "d"], [1, 0]), "test": table(["c", "d"], [0, 1])}
    )
    assert probe["valid"] == 0.5 and probe["test"] == 0.5 and probe["ok"]


@pytest.fixture(scope="module")
def lastfm2k():
    from psrq.data.lastfm2k import load_lastfm2k

    return load_lastfm2k()


def test_popularity_probe_is_near_one_half_on_builtin_lastfm2k(lastfm2k):
    from psrq.data.protocol import PROBE_TOLERANCE

    probe = build_samples(lastfm2k, ProtocolConfig()).stats["popularity_probe"]
    assert abs(probe["valid"] - 0.5) <= PROBE_TOLERANCE, probe
    assert abs(probe["test"] - 0.5) <= PROBE_TOLERANCE, probe
    assert probe["ok"]


def test_protocol_2_sampler_fails_the_popularity_probe_on_builtin_lastfm2k(lastfm2k):
    """Whole-log popularity (valid/test included) makes training-popular items look negative later."""
    from psrq.data.protocol import probe_warning

    stats = build_samples(lastfm2k, ProtocolConfig(negative_pool="whole_log")).stats
    probe = stats["popularity_probe"]
    assert probe["valid"] < 0.45 and probe["test"] < 0.45, probe
    assert not probe["ok"]
    assert "popularity probe outside 0.5" in probe_warning(probe, stats["label_rule"]["kind"])
