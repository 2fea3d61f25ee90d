"""Ranking metrics: All AUC, Cold AUC, Logloss, GAUC.

- AUC: `sklearn.metrics.roc_auc_score` over all samples of a split (NaN if one class only).
- Cold AUC: the same over samples whose target is cold (`is_cold`: fewer than 30 training
  interactions by default, decided by the data stage).
- Logloss: mean per-sample binary cross-entropy of the predicted probability, in nats, computed
  from logits (stable). The paper's logloss is on another scale; compare ours only with ours.
- GAUC: per-user AUC averaged with weights = that user's number of samples, over users having
  both a positive and a negative sample (DIN's definition with impressions = samples).
  Computed for all users at once from tie-averaged ranks (Mann-Whitney U), equal to
  roc_auc_score per user (tested).
"""

from __future__ import annotations

import math

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN when `labels` has a single class (undefined)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        return math.nan
    return float(roc_auc_score(labels, scores))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of sigmoid(logits) against 0/1 labels."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(y) == 0:
        return math.nan
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def gauc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> float:
    """Sample-count-weighted mean of per-user AUC over users with both labels (NaN if none)."""
    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    _, u = np.unique(np.asarray(users), return_inverse=True)
    if len(y) == 0:
        return math.nan
    order = np.lexsort((s, u))
    u_s, s_s, y_s = u[order], s[order], y[order]
    n_users = int(u_s.max()) + 1
    size = np.bincount(u_s, minlength=n_users)
    first = np.cumsum(size) - size  # position of each user's first sample
    rank = np.arange(len(y_s)) - first[u_s] + 1.0  # 1-based rank within the user
    new_run = np.ones(len(y_s), dtype=bool)
    new_run[1:] = (u_s[1:] != u_s[:-1]) | (s_s[1:] != s_s[:-1])
    run = np.cumsum(new_run) - 1
    avg_rank = np.bincount(run, weights=rank) / np.bincount(run)  # ties share their mean rank
    rank = avg_rank[run]
    pos = np.bincount(u_s, weights=y_s, minlength=n_users)
    neg = size - pos
    rank_sum = np.bincount(u_s, weights=rank * y_s, minlength=n_users)
    ok = (pos > 0) & (neg > 0)
    if not ok.any():
        return math.nan
    user_auc = (rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    return float(np.average(user_auc, weights=size[ok]))


def evaluate_predictions(
    labels: np.ndarray,
    logits: np.ndarray,
    users: np.ndarray,
    is_cold: np.ndarray | None,
) -> dict[str, float]:
    """All four metrics plus counts, as plain floats (NaN where undefined)."""
    labels = np.asarray(labels)
    out = {
        "auc": auc(labels, logits),
        "cold_auc": math.nan,
        "logloss": logloss(labels, logits),
        "gauc": gauc(labels, logits, users),
        "n": len(labels),
        "n_cold": 0,
    }
    if is_cold is not None:
        cold = np.asarray(is_cold, dtype=bool)
        out["cold_auc"] = auc(labels[cold], np.asarray(logits)[cold])
        out["n_cold"] = int(cold.sum())
    return out


METRIC_NAMES = {"auc": "All AUC", "cold_auc": "Cold AUC", "logloss": "Logloss", "gauc": "GAUC"}
