"""Scoring one user's candidates: the fused shared-history attention and the thread-safe Ranker.score,
pinned to the reference (per-sample, table-swapping) path. SYNTHETIC data (psrq.rank.synthetic)."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from psrq.rank.layers import ActivationUnit, TargetAttentionPooling
from psrq.rank.train import TrainConfig, load_item_tables, train_model
from psrq.serve.ranker import Ranker

FAST = {"epochs": 1, "batch_size": 64, "dim": 16, "eval_batch_size": 256}


def test_shared_history_unit_equals_per_sample_unit():
    torch.manual_seed(0)
    unit = ActivationUnit(16, (24, 8))
    keys, query = torch.randn(1, 7, 16), torch.randn(50, 16)
    fused = unit(keys, query)  # one history, many queries: the fused path
    reference = unit(keys.expand(50, -1, -1).contiguous(), query)  # per-sample path
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-6)


def test_shared_history_pooling_drops_padding_exactly():
    torch.manual_seed(1)
    pool = TargetAttentionPooling(16, (24, 8))
    keys, query = torch.randn(1, 9, 16), torch.randn(30, 16)
    mask = torch.tensor([[True, True, False, True, False, False, True, True, False]])
    fused = pool(keys, query, mask)
    reference = pool(keys.expand(30, -1, -1).contiguous(), query, mask.expand(30, -1))
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-6)
    empty = pool(keys, query, torch.zeros(1, 9, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros(30, 16))


def whole_tables_with(ranker: Ranker, items, new_sids, new_content):
    """The model's whole item tables plus rows for the described unknown items (the old way)."""
    uniq = list(dict.fromkeys(items))
    unseen = ranker.tables.rows_of(uniq) == 1
    unknown = [
        i for i, u in zip(uniq, unseen, strict=True) if u and (i in new_sids or i in new_content)
    ]
    if not unknown:
        return ranker.tables
    sids = {
        cb: np.stack(
            [
                np.asarray(new_sids.get(i, {}).get(cb, [-1] * len(sizes)), dtype=np.int64)
                for i in unknown
            ]
        )
        for cb, sizes in ranker.tables.sid_sizes.items()
    }
    content = {
        m: np.stack(
            [
                np.asarray(new_content.get(i, {}).get(m, np.zeros(x.shape[1])), dtype=np.float32)
                for i in unknown
            ]
        )
        for m, x in ranker.tables.content.items()
    }
    return ranker.tables.with_new_items(unknown, sids, content)


def reference_logits(
    ranker: Ranker, history, candidates, new_sids=None, new_content=None
) -> np.ndarray:
    """The path Ranker.score used before: whole tables + new rows swapped into a model copy,
    history repeated per candidate (the training-time forward)."""
    tables = whole_tables_with(
        ranker, list(history) + list(candidates), new_sids or {}, new_content or {}
    )
    model = copy.deepcopy(ranker.model)
    load_item_tables(model, tables)
    rows_c = tables.rows_of(list(candidates))
    rows_h = (
        tables.rows_of(list(history))[-ranker.max_history :] if history else np.zeros(0, np.int64)
    )
    hist = np.zeros((len(candidates), ranker.max_history), dtype=np.int64)
    hist[:, : len(rows_h)] = rows_h
    with torch.no_grad():
        return model(torch.from_numpy(rows_c), torch.from_numpy(hist)).numpy()


def logits_by_item(ranked) -> dict[str, float]:
    return {r["item_id"]: r["logit"] for r in ranked}


MODELS = [
    ("MCCA", {}),
    ("MCCA", {"dot": True, "content": True}),
    ("DIN", {"sid_codebook": "text"}),
    ("VBPR", {}),
    ("ContentConcat", {}),
]


@pytest.fixture(scope="module")
def rankers(syn_loaded, tmp_path_factory):
    out = {}
    for i, (name, params) in enumerate(MODELS):
        path = tmp_path_factory.mktemp(f"scoring_{i}")
        train_model(
            syn_loaded,
            TrainConfig(model=name, model_params=params, **FAST),
            out=path,
            progress=False,
        )
        out[i] = Ranker.load(path)
    return out


def requests(ranker: Ranker) -> list[tuple]:
    ids = [str(i) for i in ranker.tables.item_ids[2:]]
    donor = {cb: ranker.tables.sids[cb][5] - 1 for cb in ranker.tables.sids}
    content = {m: np.full(x.shape[1], 0.3, np.float32) for m, x in ranker.tables.content.items()}
    return [
        (ids[:12], ids[20:70], None, None),
        ([], ids[:5], None, None),
        (ids[:40], ids[50:60], None, None),  # longer than max_history: newest kept
        (
            [*ids[3:9], "new_h"],
            ["new_a", *ids[30:40], "new_b", "nobody"],
            {"new_a": donor, "new_h": donor},
            {"new_b": content},
        ),
    ]


@pytest.mark.parametrize("which", range(len(MODELS)))
def test_score_equals_reference_path(rankers, which):
    ranker = rankers[which]
    for history, candidates, new_sids, new_content in requests(ranker):
        got = logits_by_item(
            ranker.score(history, candidates, new_sids=new_sids, new_content=new_content)
        )
        want = reference_logits(ranker, history, candidates, new_sids, new_content)
        np.testing.assert_allclose([got[c] for c in candidates], want, rtol=0, atol=1e-6)


def test_concurrent_scoring_matches_sequential(rankers):
    ranker = rankers[0]
    reqs = requests(ranker) * 6
    sequential = [
        logits_by_item(ranker.score(h, c, new_sids=s, new_content=n)) for h, c, s, n in reqs
    ]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(
            pool.map(
                lambda r: logits_by_item(ranker.score(r[0], r[1], new_sids=r[2], new_content=r[3])),
                reqs,
            )
        )
    assert concurrent == sequential
    assert (
        ranker.model.item_to_id.shape[0] == ranker.tables.n_items
    )  # nothing swapped into the shared model
