"""ID-quality metrics on SYNTHETIC cases whose answers are known in advance."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from psrq.errors import InputError
from psrq.quantize.quality import (
    evaluate_ids,
    gini,
    group_coherence,
    pairwise_cosine_baseline,
    prefix_groups,
    usage_stats,
)


@pytest.fixture
def synthetic_labelled_blobs() -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC: 1,200 x 16 points in 12 well separated Gaussian blobs, with the true labels."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(12, 16)) * 4
    labels = np.repeat(np.arange(12), 100)
    X = centers[labels] + rng.normal(size=(1200, 16)) * 0.3
    return X.astype(np.float32), labels


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# ---- small building blocks ---------------------------------------------------------------------
def test_gini_known_values() -> None:
    assert gini(np.full(7, 13)) == pytest.approx(0.0, abs=1e-12)
    # one of n slots holds everything: (n - 1) / n
    assert gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # mean abs difference 1 / (2 * mean 2)


def test_usage_stats_counts_dead_codes() -> None:
    stats = usage_stats(np.array([0, 0, 1, 1]), k=4)
    assert stats["used_codes"] == 2
    assert stats["utilisation"] == 0.5
    assert stats["entropy_bits"] == pytest.approx(1.0)
    assert stats["perplexity"] == pytest.approx(2.0)
    assert stats["largest_code_share"] == 0.5
    assert stats["gini"] == pytest.approx(0.5)  # sizes [0, 0, 2, 2]


def test_prefix_groups_are_tuples() -> None:
    codes = np.array([[0, 1], [0, 1], [0, 2], [1, 1]])
    level1, level2 = prefix_groups(codes)
    assert len(np.unique(level1)) == 2
    assert level2[0] == level2[1] and len(np.unique(level2)) == 3
    assert level2[3] != level2[0]  # (1, 1) differs from (0, 1) though the level-2 code is equal


def test_group_coherence_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    unit = _unit(rng.normal(size=(40, 5)))
    groups = rng.integers(0, 6, size=40)
    groups[0] = 99  # a singleton: skipped
    per_item = []
    for i in range(40):
        mates = [j for j in range(40) if groups[j] == groups[i] and j != i]
        if mates:
            per_item.append(np.mean([unit[i] @ unit[j] for j in mates]))
    value, scored = group_coherence(
        unit.astype(np.float32), np.unique(groups, return_inverse=True)[1]
    )
    assert scored == len(per_item) == 39
    assert value == pytest.approx(np.mean(per_item), abs=1e-6)


def test_baseline_is_the_expectation_of_random_groupings() -> None:
    rng = np.random.default_rng(4)
    unit = _unit(rng.normal(size=(60, 4)) + 0.7).astype(np.float32)  # off-centre: baseline > 0
    exact = np.mean([unit[i] @ unit[j] for i, j in itertools.permutations(range(60), 2)])
    assert pairwise_cosine_baseline(unit) == pytest.approx(exact, abs=1e-6)
    groups = np.repeat(np.arange(6), [25, 15, 10, 5, 3, 2])
    draws = [group_coherence(unit, rng.permutation(groups))[0] for _ in range(300)]
    assert np.mean(draws) == pytest.approx(exact, abs=0.02)


# ---- evaluate_ids on cases with known answers -----------------------------------------------------
def test_true_labels_are_coherent_and_identical_levels_have_nmi_one(
    synthetic_labelled_blobs,
) -> None:
    X, labels = synthetic_labelled_blobs
    codes = np.stack([labels, labels], axis=1)
    result = evaluate_ids(X, codes)
    level1, level2 = result["levels"]
    assert level1["coherence_code_lift"] > 0.9
    assert level1["neighbor_prefix_recall"] == 1.0
    assert level1["nmi_next"] == pytest.approx(1.0)
    assert level2["nmi_next"] is None
    assert level1["utilisation"] == 1.0 and level1["gini"] == pytest.approx(0.0)
    assert result["ids"]["unique_ratio"] == pytest.approx(12 / 1200)
    assert result["ids"]["items_per_id_max"] == 100
    assert level1["recon_cos"] is None  # no quantizer: reconstruction is skipped
    json.dumps(result, allow_nan=False)


def test_random_codes_score_at_chance(synthetic_labelled_blobs) -> None:
    X, labels = synthetic_labelled_blobs
    rng = np.random.default_rng(5)
    codes = np.stack([labels, rng.integers(0, 12, size=len(labels))], axis=1)
    level1, level2 = evaluate_ids(X, codes)["levels"]
    assert abs(level2["coherence_code_lift"]) < 0.03
    assert level2["coherence_baseline"] == pytest.approx(level2["coherence_code"], abs=0.03)
    assert level1["nmi_next"] < 0.05
    # the prefix (label, random) is still inside one blob: coherent, but neighbours rarely match
    assert level2["coherence_prefix_lift"] > 0.9
    assert level2["neighbor_prefix_recall"] == pytest.approx(1 / 12, abs=0.03)


def test_hand_made_code_matrix_collisions() -> None:
    codes = np.array([[0, 0], [0, 0], [0, 0], [0, 1], [1, 0], [1, 1]])
    X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    ids = evaluate_ids(X, codes)["ids"]
    assert ids["n_distinct_ids"] == 4
    assert ids["unique_ratio"] == pytest.approx(4 / 6)
    assert ids["collided_item_share"] == pytest.approx(3 / 6)
    assert ids["items_per_id_max"] == 3
    assert ids["items_per_id_mean"] == pytest.approx(1.5)
    assert ids["items_per_id_p99"] == pytest.approx(np.percentile([3, 1, 1, 1], 99))


def test_neighbor_recall_is_perfect_for_exact_duplicates() -> None:
    rng = np.random.default_rng(6)
    prototypes = rng.normal(size=(30, 8)).astype(np.float32)
    X = np.repeat(prototypes, 11, axis=0)  # each item has exactly 10 identical twins
    group = np.repeat(np.arange(30), 11)
    codes = np.stack([group % 5, group], axis=1)
    result = evaluate_ids(X, codes, n_neighbors=10)
    assert result["ids"]["neighbor_recall"] == 1.0
    assert result["levels"][1]["coherence_prefix"] == pytest.approx(1.0, abs=1e-5)
    assert result["levels"][1]["coherence_prefix_lift"] == pytest.approx(1.0, abs=1e-5)


def test_reconstruction_improves_with_levels(synthetic_blobs) -> None:
    from psrq.quantize.rq_kmeans import RQKMeans

    q = RQKMeans(n_levels=3, codebook_size=16, seed=0).fit(synthetic_blobs)
    result = evaluate_ids(synthetic_blobs, q.transform(synthetic_blobs), q)
    cos = [lv["recon_cos"] for lv in result["levels"]]
    err = [lv["recon_rel_error"] for lv in result["levels"]]
    assert cos[0] < cos[1] < cos[2] <= 1.0
    assert err[0] > err[1] > err[2] >= 0.0
    assert (
        result["codebook_sizes"] == [16, 16, 16] and result["codebook_sizes_source"] == "quantizer"
    )
    assert result["quantizer"]["kind"] == "RQKMeans"


def test_deterministic_and_sampled(synthetic_blobs) -> None:
    codes = np.random.default_rng(7).integers(0, 8, size=(len(synthetic_blobs), 3))
    a = evaluate_ids(synthetic_blobs, codes, seed=3, max_items=500, n_queries=200)
    b = evaluate_ids(synthetic_blobs, codes, seed=3, max_items=500, n_queries=200)
    c = evaluate_ids(synthetic_blobs, codes, seed=4, max_items=500, n_queries=200)
    assert json.dumps(a) == json.dumps(b)
    assert a["sample"]["n_items"] == 500 and a["sample"]["n_queries"] == 200
    assert a["levels"][0]["coherence_code"] != c["levels"][0]["coherence_code"]  # other sample
    # counting metrics use every item, not the sample
    counting = ["n_distinct_ids", "unique_ratio", "items_per_id_max", "items_per_id_p99"]
    assert [a["ids"][k] for k in counting] == [c["ids"][k] for k in counting]
    assert a["levels"][1]["gini"] == c["levels"][1]["gini"]


# ---- errors name what is wrong --------------------------------------------------------------------
def test_errors_name_the_problem() -> None:
    X = np.zeros((4, 3), dtype=np.float32) + 1
    with pytest.raises(InputError, match="3 rows but X has 4"):
        evaluate_ids(X, np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(InputError, match="row 2, level 1 is negative"):
        evaluate_ids(X, np.array([[0, 0], [0, 0], [0, -1], [0, 0]]))
    with pytest.raises(InputError, match="integers"):
        evaluate_ids(X, np.zeros((4, 2)))
    with pytest.raises(InputError, match="code 5 at row 1, level 0 is outside"):
        evaluate_ids(X, np.array([[0], [5], [1], [1]]), codebook_sizes=[4])
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match="row 2"):
        evaluate_ids(bad, np.zeros((4, 1), dtype=np.int64))


def test_quantizer_dimension_mismatch(synthetic_blobs) -> None:
    from psrq.quantize.rq_kmeans import RQKMeans

    q = RQKMeans(n_levels=2, codebook_size=4, seed=0).fit(synthetic_blobs)
    with pytest.raises(InputError, match="fitted on 32"):
        evaluate_ids(synthetic_blobs[:, :8], np.zeros((len(synthetic_blobs), 2), dtype=np.int64), q)
