"""Metrics against hand-computed cases and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from psrq.rank.metrics import auc, evaluate_predictions, gauc, logloss


def test_auc_hand_case():
    # positives score 0.8, 0.4; negatives 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert auc(np.array([1, 1, 0, 0]), np.array([0.8, 0.4, 0.5, 0.1])) == pytest.approx(0.75)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_logloss_hand_case():
    # logit 0 -> p = .5 -> ln 2 for either label; logit ln(3) with label 1 -> p=.75 -> -ln .75
    got = logloss(np.array([1, 0, 1]), np.array([0.0, 0.0, math.log(3)]))
    assert got == pytest.approx((2 * math.log(2) - math.log(0.75)) / 3)
    assert logloss(np.array([1]), np.array([1000.0])) == pytest.approx(0.0, abs=1e-12)  # stable


def test_gauc_hand_case_weights_by_samples_and_skips_one_class_users():
    users = np.array(["a", "a", "a", "b", "b", "c", "c"])
    labels = np.array([1, 0, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.5, 0.95, 0.1, 0.2, 0.3, 0.4])
    # user a: positive .9 beats .5, loses to .95 -> 1/2 (3 samples); b: 0 (2 samples); c: one class, skipped
    assert gauc(labels, scores, users) == pytest.approx((0.5 * 3 + 0.0 * 2) / 5)


def test_gauc_matches_sklearn_per_user_with_ties():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 600)
    labels = rng.integers(0, 2, 600)
    scores = np.round(rng.random(600), 1)  # many ties
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if labels[m].min() != labels[m].max():
            num += roc_auc_score(labels[m], scores[m]) * m.sum()
            den += m.sum()
    assert gauc(labels, scores, users) == pytest.approx(num / den)


def test_evaluate_predictions_cold_subset():
    labels = np.array([1, 0, 1, 0])
    logits = np.array([2.0, 1.0, -1.0, 0.0])
    cold = np.array([False, False, True, True])
    out = evaluate_predictions(labels, logits, np.array(["u", "u", "v", "v"]), cold)
    assert out["auc"] == pytest.approx(roc_auc_score(labels, logits))
    assert out["cold_auc"] == pytest.approx(0.0)  # cold positive -1 < cold negative 0
    assert out["n_cold"] == 2
    assert math.isnan(evaluate_predictions(labels, logits, np.zeros(4), None)["cold_auc"])
