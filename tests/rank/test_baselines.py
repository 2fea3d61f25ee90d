"""SimTier+MAKE and QARM: histogram and codes on hand-computed cases, MAKE's schedule, masking,
save/load/score. Data: the SYNTHETIC ranking fixture (tests/rank/conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from psrq.errors import ConfigError
from psrq.rank.qarm import alignment_pairs, residual_codes, topk_codes
from psrq.rank.simtier import simtier_histogram
from psrq.rank.train import (
    TrainConfig,
    make_model,
    make_optimizer,
    predict_logits,
    prepare_model,
    train_model,
    train_one_epoch,
)
from psrq.serve.ranker import Ranker

QARM_SMALL = {"rq_codebook_size": 8, "vq_k": 5, "align_epochs": 2}


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


# ---- SimTier ------------------------------------------------------------------------------------
def test_simtier_histogram_hand_case():
    # target along x; cosines 1, -1, 0.5, -0.3; one padded position and one item without content.
    target = torch.tensor([[2.0, 0.0]])
    cos_m03 = [-0.3, math.sqrt(1 - 0.09)]
    history = torch.tensor([[[1.0, 0.0], [-3.0, 0.0], _unit(60), cos_m03, [1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, True, True, False, True]])
    hist = simtier_histogram(target, history, mask, 10)
    # tiers of width 0.2 from -1: 1 -> 9, -1 -> 0, 0.5 -> 7, -0.3 -> 3; padded and empty: none
    expected = torch.zeros(1, 10)
    expected[0, [0, 3, 7, 9]] = 1
    torch.testing.assert_close(hist, expected)
    torch.testing.assert_close(
        simtier_histogram(target, history, mask, 10, normalize=True), expected / 4
    )


def test_simtier_histogram_matches_numpy_histogram_and_broadcasts():
    g = torch.Generator().manual_seed(0)
    target, history = torch.randn(5, 8, generator=g), torch.randn(5, 7, 8, generator=g)
    mask = torch.rand(5, 7, generator=g) > 0.3
    hist = simtier_histogram(target, history, mask, 6)
    cos = torch.nn.functional.cosine_similarity(target.unsqueeze(1), history, dim=-1)
    for b in range(5):
        ref, _ = np.histogram(cos[b][mask[b]].numpy(), bins=np.linspace(-1, 1, 7))
        np.testing.assert_array_equal(hist[b].numpy(), ref)
    # one history [1, L] shared by B targets (Ranker.score) equals the expanded batch
    one = simtier_histogram(target, history[:1], mask[:1], 6)
    torch.testing.assert_close(
        one, simtier_histogram(target, history[:1].expand(5, -1, -1), mask[:1].expand(5, -1), 6)
    )


# ---- QARM codes -----------------------------------------------------------------------------------
def test_qarm_vq_codes_hand_case():
    pool = torch.tensor([_unit(0), _unit(90), _unit(180), _unit(30)])
    pool_ids = torch.tensor([2, 3, 4, 5])
    queries = torch.tensor([_unit(10), _unit(100), [0.0, 0.0]])
    codes = topk_codes(queries, pool, pool_ids, 3)
    # 10°: 0° (id 2, 10° away), 30° (5, 20°), 90° (3, 80°); 100°: 90° (3, 10°), 30° (5, 70°), 180° (4, 80°)
    assert codes.tolist() == [[2, 5, 3], [3, 5, 4], [0, 0, 0]]
    # k beyond the pool: the rest of the row is 0 (missing)
    assert topk_codes(queries[:1], pool[:2], pool_ids[:2], 3).tolist() == [[2, 3, 0]]


def test_qarm_rq_codes_hand_case():
    centroids = torch.tensor([[[0.0, 0.0], [10.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    x = torch.tensor([[10.9, 0.1], [0.2, 0.8]])
    # level 0: 10.9 -> centroid 1 (residual 0.9, 0.1) -> level 1: (1, 0) -> code 0
    #          0.2  -> centroid 0 (residual 0.2, 0.8) -> level 1: (0, 1) -> code 1
    assert residual_codes(x, centroids).tolist() == [[1, 0], [0, 1]]


def test_qarm_alignment_pairs_pick_the_most_similar_earlier_positive():
    content = torch.tensor(
        [[0.0, 0.0], [0.0, 0.0], _unit(0), _unit(20), _unit(80), _unit(5), [0.0, 0.0]]
    )
    target = torch.tensor([2, 2, 4, 3])
    history = torch.tensor([[4, 3, 0], [3, 5, 0], [6, 0, 0], [2, 2, 3]])
    label = torch.tensor([1.0, 0.0, 1.0, 1.0])
    a, b = alignment_pairs(target, history, label, content)
    # sample 0: item 3 (20°) beats 4 (80°); sample 1 is a negative; sample 2's only history item
    # has no content; sample 3 skips itself (3) and takes 2
    assert a.tolist() == [2, 3]
    assert b.tolist() == [3, 2]


def test_qarm_codes_use_training_items_only(syn_data):
    from psrq.rank.train import load_ranking_data

    full = load_ranking_data(syn_data["samples"], embeddings=syn_data["embeddings"])
    train_only = load_ranking_data(
        syn_data["samples"], embeddings=syn_data["embeddings"], splits=("train",)
    )
    models = []
    for data in (full, train_only):
        model = make_model(TrainConfig(model="QARM", model_params=QARM_SMALL), data.tables)
        model.fit_item_features(data.splits["train"], seed=0)
        models.append(model)
    torch.testing.assert_close(models[0].codes_vq, models[1].codes_vq)
    torch.testing.assert_close(models[0].codes_rq, models[1].codes_rq)
    model = models[0]
    codes = model.codes_vq[model.codes_vq > 0]
    # every VQ code is the ID row of an item seen in training (the pool is the ID vocabulary)
    assert codes.min() >= 2 and codes.max() < model.shapes.n_ids
    assert (model.codes_rq[2:] > 0).all() and (model.codes_vq[:2] == 0).all()


def test_qarm_bad_option_names_it(syn_loaded):
    with pytest.raises(ConfigError, match="vq_k"):
        make_model(TrainConfig(model="QARM", model_params={"vq_k": 0}), syn_loaded.tables)
    with pytest.raises(ConfigError, match="n_tiers"):
        make_model(TrainConfig(model="SimTierMAKE", model_params={"n_tiers": 0}), syn_loaded.tables)


# ---- MAKE's schedule --------------------------------------------------------------------------------
def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


def test_make_trains_the_multimodal_module_first_then_only_the_id_model(syn_loaded):
    config = TrainConfig(model="SimTierMAKE", model_params={"make_epochs": 2}, epochs=1)
    model = make_model(config, syn_loaded.tables)
    train = syn_loaded.splits["train"]
    start = _snapshot(model)
    records = prepare_model(model, train, config, resuming=False, progress=False)
    assert [r["epoch"] for r in records] == [1, 2]
    moved = _moved(start, model)
    assert moved and all(k.startswith("mm.") for k in moved)  # phase 1: multimodal module only
    assert {k for k in start if k.startswith("mm.")} == moved  # ... all of it, head included
    after_make = _snapshot(model)
    train_one_epoch(model, make_optimizer(model, config), train, config, 0, progress=False)
    moved = _moved(after_make, model)
    assert moved and not any(k.startswith("mm.") for k in moved)  # phase 2: ID model only
    assert {"id_embedding.weight", "tower.net.0.weight"} <= moved


def test_without_make_the_multimodal_module_trains_with_the_id_model(syn_loaded):
    config = TrainConfig(model="SimTierMAKE", model_params={"make_epochs": 0}, epochs=1)
    model = make_model(config, syn_loaded.tables)
    assert (
        prepare_model(model, syn_loaded.splits["train"], config, resuming=False, progress=False)
        == []
    )
    before = _snapshot(model)
    train_one_epoch(
        model, make_optimizer(model, config), syn_loaded.splits["train"], config, 0, progress=False
    )
    assert "mm.proj.weight" in _moved(before, model) and "id_embedding.weight" in _moved(
        before, model
    )


# ---- both models: masking, shapes, save/load/score ---------------------------------------------------
BASELINES = [("SimTierMAKE", {"make_epochs": 1}), ("QARM", QARM_SMALL)]


def _fitted(syn_loaded, name, params):
    config = TrainConfig(model=name, model_params=params, epochs=1)
    model = make_model(config, syn_loaded.tables)
    prepare_model(model, syn_loaded.splits["train"], config, resuming=False, progress=False)
    return model.eval()


@pytest.mark.parametrize(("name", "params"), BASELINES)
def test_fitted_baselines_ignore_padded_positions(syn_loaded, name, params):
    model = _fitted(syn_loaded, name, params)
    g = torch.Generator().manual_seed(1)
    target = torch.randint(2, syn_loaded.tables.n_items, (8,), generator=g)
    history = torch.randint(2, syn_loaded.tables.n_items, (8, 20), generator=g)
    history[:, 9:] = 0
    with torch.no_grad():
        before = model(target, history)
        assert before.shape == (8,) and torch.isfinite(before).all()
        # give the padding row every feature of a real item: a model ignoring the mask changes
        model.item_to_id[0] = model.item_to_id[5]
        for m in model.content_modalities:
            getattr(model, f"content_{m}")[0] = getattr(model, f"content_{m}")[5]
        for buf in ("codes_vq", "codes_rq"):
            if hasattr(model, buf):
                getattr(model, buf)[0] = getattr(model, buf)[5]
        torch.testing.assert_close(model(target, history), before)


@pytest.mark.parametrize(("name", "params"), BASELINES)
def test_baselines_save_load_score(syn_loaded, tmp_path, name, params):
    res = train_model(
        syn_loaded,
        TrainConfig(model=name, model_params=params, epochs=1),
        out=tmp_path / "run",
        progress=False,
    )
    ranker = Ranker.load(tmp_path / "run")
    test = syn_loaded.splits["test"]
    np.testing.assert_array_equal(
        predict_logits(ranker.model, test), predict_logits(res.model, test)
    )
    items = syn_loaded.tables.item_ids[2:12].astype(str).tolist()
    ranked = ranker.score(items[:4], items[4:])
    assert sorted(r["item_id"] for r in ranked) == sorted(items[4:])
    # a new item described by content only is coded from that content, then the tables go back
    n_rows = ranker.model.content_text.shape[0]
    content = {m: ranker.tables.content[m][5] for m in ranker.tables.content}
    new = ranker.score(items[:4], ["brand-new", items[4]], new_content={"brand-new": content})
    assert {r["item_id"]: r["status"] for r in new}["brand-new"] == "new (SIDs/content)"
    assert ranker.model.content_text.shape[0] == n_rows
    if name == "QARM":
        assert ranker.model.codes_vq.shape[0] == n_rows
        # the same content gets the same codes as the item it was copied from (row 5)
        vq, rq = ranker.model.item_codes(torch.tensor([5]))
        torch.testing.assert_close(vq[0], ranker.model.codes_vq[5])
        torch.testing.assert_close(rq[0], ranker.model.codes_rq[5])


def test_run_config_and_experiment_accept_both_baselines():
    from psrq.config import ExperimentConfig, load_config
    from psrq.pipeline import RANKERS, ranking_runs
    from psrq.rank.experiment import plan_runs
    from psrq.rank.models import registered_models

    config = load_config(overrides={"rank": {"models": ["simtier_make", "qarm"]}})
    assert ranking_runs(config) == [("simtier_make", None), ("qarm", None)]
    assert {RANKERS[r][0] for r, _ in ranking_runs(config)} <= set(registered_models())
    with pytest.raises(ConfigError, match=r"rank\.models"):
        load_config(overrides={"rank": {"models": ["simtier"]}})
    spec = ExperimentConfig(samples="s", embeddings="e", models=["SimTier+MAKE", "QARM"])
    assert [(r.name, r.model) for r in plan_runs(spec, ["text"])] == [
        ("SimTier+MAKE", "SimTierMAKE"),
        ("QARM", "QARM"),
    ]


@pytest.mark.parametrize(("name", "params"), BASELINES)
def test_same_seed_same_model(syn_loaded, name, params):
    runs = [
        train_model(
            syn_loaded,
            TrainConfig(model=name, model_params=params, epochs=1, seed=3),
            progress=False,
        )
        for _ in range(2)
    ]
    for key, value in runs[0].model.state_dict().items():
        torch.testing.assert_close(value, runs[1].model.state_dict()[key], rtol=0, atol=0, msg=key)
    assert runs[0].metrics == runs[1].metrics


@pytest.mark.parametrize(("name", "params"), BASELINES)
def test_baselines_take_the_configured_tower_dropout(syn_loaded, name, params):
    """--dropout reaches the towers of SimTier+MAKE and QARM (as for MCCA and DIN)."""
    model = make_model(
        TrainConfig(model=name, model_params=params, dropout=0.25), syn_loaded.tables
    )
    drops = [m.p for m in model.tower.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(p == 0.25 for p in drops)
    assert model.model_kwargs()["dropout"] == 0.25
