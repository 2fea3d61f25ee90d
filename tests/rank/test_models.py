"""Model wiring: masking, the shared query, ablation switches, empty histories."""

from __future__ import annotations

import pytest
import torch

from psrq.errors import ConfigError
from psrq.rank.models import MCCA, TableShapes, build_model
from psrq.rank.train import TrainConfig, make_model

MODELS = [
    ("MCCA", {}),
    ("MCCA", {"use_msc": False}),
    ("MCCA", {"use_mjc": False}),
    ("DIN", {}),
    ("DIN", {"sid_codebook": "text"}),
    ("VBPR", {}),
    ("ContentConcat", {}),
    ("SimTierMAKE", {}),
    ("QARM", {}),  # unfitted codes (all 0) here; tests/rank/test_baselines.py checks the fitted model
]


def _batch(tables, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(2, tables.n_items, (n,), generator=g)
    history = torch.randint(2, tables.n_items, (n, 20), generator=g)
    history[:, 12:] = 0  # padded tail
    return target, history


@pytest.mark.parametrize(("name", "params"), MODELS)
def test_padded_positions_change_nothing(syn_loaded, name, params):
    model = make_model(TrainConfig(model=name, model_params=params), syn_loaded.tables).eval()
    target, history = _batch(syn_loaded.tables)
    mask = history != 0
    with torch.no_grad():
        before = model(target, history)
        # Give padded positions the ids of real items: a model that ignores the mask would change.
        # (Padding is id 0 by contract; we swap the *features* of row 0 instead of the ids.)
        for cb in model.codebooks:
            getattr(model, f"sids_{cb}")[0] = getattr(model, f"sids_{cb}")[5]
        for m in model.content_modalities:
            getattr(model, f"content_{m}")[0] = getattr(model, f"content_{m}")[5]
        model.item_to_id[0] = model.item_to_id[5]
        after = model(target, history)
    assert mask.sum() < mask.numel()
    torch.testing.assert_close(before, after)


@pytest.mark.parametrize(("name", "params"), MODELS)
def test_empty_history_gives_finite_logits(syn_loaded, name, params):
    model = make_model(TrainConfig(model=name, model_params=params), syn_loaded.tables).eval()
    target, history = _batch(syn_loaded.tables)
    history[:] = 0
    with torch.no_grad():
        out = model(target, history)
    assert out.shape == (8,)
    assert torch.isfinite(out).all()


def _perturb_target_codebook(model, target, codebook):
    tab = getattr(model, f"sids_{codebook}")
    tab[target] = (tab[target] % 3) + 1  # other valid codes for the targets only


def test_mcca_modal_poolings_use_the_shared_joint_query(syn_loaded):
    """Full MCCA reads the target only through its joint SID and ID: changing the target's
    text SID changes nothing. Without MJC, the text SID is the text pooling's query: it matters."""
    target, history = _batch(syn_loaded.tables)
    history_items = set(history.flatten().tolist())
    target = torch.tensor([t for t in range(2, syn_loaded.tables.n_items) if t not in history_items][:8])
    for params, should_change in (({}, False), ({"use_mjc": False}, True)):
        model = make_model(TrainConfig(model="MCCA", model_params=params), syn_loaded.tables).eval()
        with torch.no_grad():
            before = model(target, history)
            _perturb_target_codebook(model, target, "text")
            after = model(target, history)
        assert (not torch.allclose(before, after)) == should_change, params


def test_mcca_query_hook_sees_the_joint_embedding(syn_loaded):
    model = make_model(TrainConfig(model="MCCA"), syn_loaded.tables).eval()
    target, history = _batch(syn_loaded.tables)
    seen = {}
    for cb, pooling in model.sid_poolings.items():
        pooling.register_forward_hook(lambda mod, args, out, cb=cb: seen.__setitem__(cb, args[1].clone()))
    with torch.no_grad():
        model(target, history)
        joint_query = model.target_query(target)
    assert set(seen) == {"text", "audio", "joint"}
    for q in seen.values():
        torch.testing.assert_close(q, joint_query)


def test_ablation_switches_select_codebooks(syn_loaded):
    shapes = syn_loaded.tables.shapes()
    full = MCCA(shapes)
    no_msc = MCCA(shapes, use_msc=False)
    no_mjc = MCCA(shapes, use_mjc=False)
    assert full.attended == ["text", "audio", "joint"]
    assert no_msc.attended == ["joint"] and set(no_msc.codebooks) == {"joint"}
    assert no_mjc.attended == ["text", "audio"] and "joint" not in no_mjc.codebooks
    d = full.dim
    assert full.tower.net[0].in_features == d * (3 + 2 + 1)
    assert no_msc.tower.net[0].in_features == d * (1 + 2 + 1)
    assert no_mjc.tower.net[0].in_features == d * (2 + 2 + 2)
    with pytest.raises(ConfigError):
        MCCA(shapes, use_msc=False, use_mjc=False)


def test_w_o_msc_ignores_modal_sids(syn_loaded):
    model = make_model(TrainConfig(model="MCCA", model_params={"use_msc": False}), syn_loaded.tables).eval()
    assert not hasattr(model, "sids_text")


def test_missing_codebook_is_a_clear_error():
    shapes = TableShapes(n_items=10, n_ids=10, sid_sizes={"text": [4, 4]})
    with pytest.raises(ConfigError, match=r"sid_joint|joint"):
        build_model("MCCA", shapes)
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("Transformer", shapes)
    with pytest.raises(ConfigError, match="content"):
        build_model("VBPR", shapes)


def test_any_number_of_modalities():
    for mods in (["text"], ["text", "audio"], ["image", "text"]):
        sizes = {m: [8, 8, 8] for m in [*mods, "joint"]}
        model = MCCA(TableShapes(n_items=20, n_ids=20, sid_sizes=sizes)).eval()
        with torch.no_grad():
            out = model(torch.tensor([2, 3]), torch.tensor([[4, 5, 0], [0, 0, 0]]))
        assert out.shape == (2,)
