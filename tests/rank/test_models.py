"""Model wiring: masking, the shared query, ablation switches, empty histories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psrq.errors import ConfigError
from psrq.rank.layers import SIDEmbedding
from psrq.rank.models import DIN, MCCA, TableShapes, build_model, identical_codebooks
from psrq.rank.train import TrainConfig, make_model

MODELS = [
    ("MCCA", {}),
    ("MCCA", {"use_msc": False}),
    ("MCCA", {"use_mjc": False}),
    ("DIN", {}),
    ("DIN", {"sid_codebook": "text"}),
    ("MCCA", {"dot": True}),
    ("MCCA", {"content": True, "dot": True}),
    ("MCCA", {"use_mjc": False, "content": True, "dot": True}),
    ("DIN", {"sid_codebook": "text", "content": True, "dot": True}),
    ("VBPR", {}),
    ("ContentConcat", {}),
    ("SimTierMAKE", {}),
    (
        "QARM",
        {},
    ),  # unfitted codes (all 0) here; tests/rank/test_baselines.py checks the fitted model
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
    target = torch.tensor(
        [t for t in range(2, syn_loaded.tables.n_items) if t not in history_items][:8]
    )
    for params, should_change in (({}, False), ({"use_mjc": False}, True)):
        model = make_model(TrainConfig(model="MCCA", model_params=params), syn_loaded.tables).eval()
        with torch.no_grad():
            before = model(target, history)
            _perturb_target_codebook(model, target, "text")
            after = model(target, history)
        assert (not torch.allclose(before, after)) == should_change, params


def test_mcca_query_hook_sees_the_joint_embedding(syn_loaded, monkeypatch):
    import psrq.rank.models as models

    model = make_model(TrainConfig(model="MCCA"), syn_loaded.tables).eval()
    target, history = _batch(syn_loaded.tables)
    seen = {}
    real = models.pool_stacked

    def spy(poolings, keys, queries, mask):
        names = {id(p): cb for cb, p in model.sid_poolings.items()}
        for p, q in zip(poolings, queries, strict=True):
            if id(p) in names:
                seen[names[id(p)]] = q.clone()
        return real(poolings, keys, queries, mask)

    monkeypatch.setattr(models, "pool_stacked", spy)
    with torch.no_grad():
        model(target, history)
        joint_query = model.target_query(target)
    assert set(seen) == {"text", "audio", "joint"}
    for q in seen.values():
        torch.testing.assert_close(q, joint_query)


BATCHED_VARIANTS = [
    {},
    {"use_msc": False},
    {"use_mjc": False},
    {"dot": True},
    {"content": True, "dot": True},
    {"use_mjc": False, "content": True},
    {"attention_product": False},
]


@pytest.mark.parametrize("modalities", [("text",), ("text", "audio")])
@pytest.mark.parametrize("params", BATCHED_VARIANTS)
def test_batched_poolings_equal_one_call_per_pooling(params, modalities, monkeypatch):
    """MCCA runs all its poolings as one batched op (`pool_stacked`); with the same weights the
    logits and every parameter's gradient equal the reference path (one call per pooling module)
    to 1e-6, in training (per-sample histories) and in scoring (one history, many targets)."""
    torch.manual_seed(0)
    mods = list(modalities)
    sizes = {m: [8, 8, 8] for m in [*mods, "joint"]}
    aliases = {"joint": "text"} if len(mods) == 1 else {}
    shapes = TableShapes(
        n_items=50,
        n_ids=50,
        sid_sizes=sizes,
        content_dims={m: 12 for m in mods},
        sid_aliases=aliases,
    )
    model = MCCA(shapes, dim=16, attention_hidden=(24, 8), sparse_embeddings=False, **params)
    with torch.no_grad():
        for cb in model.codebooks:
            getattr(model, f"sids_{cb}").copy_(torch.randint(0, 9, (50, 3)))  # 0 = missing code
        for m in model.content_modalities:
            getattr(model, f"content_{m}").normal_()
        model.item_to_id.copy_(torch.arange(50))
    target, history = torch.randint(2, 50, (16,)), torch.randint(0, 50, (16, 7))
    history[:, 5:] = 0
    history[3] = 0  # an empty history

    def run(batched: bool):
        monkeypatch.setattr(MCCA, "batched_poolings", batched)
        model.zero_grad()
        out = model(target, history)
        (out * torch.linspace(-1, 1, len(out))).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        with torch.no_grad():
            shared = model.eval()(target, history[:1])  # scoring: one history broadcast
            per_sample = model(target, history[:1].expand(len(target), -1))
        model.train()
        return out.detach(), grads, shared, per_sample

    out, grads, shared, per_sample = run(True)
    ref_out, ref_grads, ref_shared, _ = run(False)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(shared, ref_shared, rtol=0, atol=1e-6)
    torch.testing.assert_close(shared, per_sample, rtol=0, atol=1e-6)
    # The dense form used while tracing (ONNX / TorchScript export) equals the packed one.
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    dense_out, dense_grads, _, _ = run(True)
    torch.testing.assert_close(dense_out, ref_out, rtol=0, atol=1e-6)
    for name in grads:
        torch.testing.assert_close(dense_grads[name], ref_grads[name], rtol=0, atol=1e-6, msg=name)


def test_batched_poolings_keep_the_state_dict_layout(syn_loaded):
    """The stacked weights are built on the fly: the parameters (and so saved weights.pt files)
    stay per pooling module, as before batching."""
    model = make_model(TrainConfig(model="MCCA", model_params={"content": True}), syn_loaded.tables)
    keys = set(model.state_dict())
    for prefix in (
        "id_pooling",
        "sid_poolings.text",
        "sid_poolings.audio",
        "sid_poolings.joint",
        "content_pooling",
    ):
        assert {
            f"{prefix}.unit.key_proj.weight",
            f"{prefix}.unit.query_proj.weight",
            f"{prefix}.unit.product_proj.weight",
        } <= keys


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
    model = make_model(
        TrainConfig(model="MCCA", model_params={"use_msc": False}), syn_loaded.tables
    ).eval()
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


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_identical_codebooks_are_detected():
    rng = np.random.default_rng(0)
    text = rng.integers(0, 9, size=(30, 3))
    sizes = {"text": [8, 8, 8], "audio": [8, 8, 8], "joint": [8, 8, 8]}
    # joint equal to text (one modality): joint is text, whatever the column order
    assert identical_codebooks({"joint": text.copy(), "text": text}, sizes) == {"joint": "text"}
    other = text.copy()
    other[17, 2] = (other[17, 2] + 1) % 8  # one code of one item differs: not identical
    assert identical_codebooks({"text": text, "joint": other}, sizes) == {}
    assert identical_codebooks({"text": text, "joint": text}, {**sizes, "joint": [8, 8, 16]}) == {}
    assert identical_codebooks({"text": text, "audio": text.copy(), "joint": other}, sizes) == {
        "audio": "text"
    }


def test_single_modality_loads_with_joint_aliased(tmp_path):
    import pyarrow.parquet as pq

    from psrq.rank.synthetic import make_synthetic_ranking_data
    from psrq.rank.train import load_ranking_data

    paths = make_synthetic_ranking_data(
        tmp_path, n_users=20, n_items=60, events_per_user=8, modalities=("text",)
    )
    # One modality, as MultimodalQuantizer writes it: no sid_joint column (SYNTHETIC data).
    sids = tmp_path / "text-only-sids.parquet"
    pq.write_table(pq.read_table(paths["sids"]).drop_columns(["sid_joint"]), sids)
    data = load_ranking_data(paths["samples"], sids=sids)
    assert data.tables.shapes().sid_aliases == {"joint": "text"}
    model = make_model(TrainConfig(model="MCCA"), data.tables)
    assert model.codebooks == ["text"] and not hasattr(model, "sids_joint")
    assert "modal-specific and modal-joint are the same codebook" in model.describe()


def test_single_modality_mcca_builds_one_table_and_one_pooling():
    sizes = {"text": [8, 8, 8], "joint": [8, 8, 8]}
    aliased = TableShapes(n_items=20, n_ids=20, sid_sizes=sizes, sid_aliases={"joint": "text"})
    distinct = TableShapes(n_items=20, n_ids=20, sid_sizes=sizes)
    full = MCCA(aliased)
    d = full.dim
    assert (
        full.codebooks == ["text"] and full.attended == ["text"] and full.query_codebook == "text"
    )
    assert list(full.sid_embeddings) == ["text"] and list(full.sid_poolings) == ["text"]
    assert full.tower.net[0].in_features == d * (1 + 2 + 1)  # [h^t (= h^o), h^r, e^r_t, e^o_t]
    # With one modality the two ablations are the same network as the full model.
    assert (
        _n_params(full)
        == _n_params(MCCA(aliased, use_msc=False))
        == _n_params(MCCA(aliased, use_mjc=False))
    )
    # Built twice (no alias), MCCA pays one more SID table, one more pooling and d more tower inputs.
    twice = MCCA(distinct)
    extra = (
        _n_params(SIDEmbedding(sizes["text"], d))
        + _n_params(full._pooling())
        + d * full.tower_hidden[0]
    )
    assert _n_params(twice) - _n_params(full) == extra
    # The query is the target's joint embedding, which is its text embedding.
    target = torch.tensor([2, 3, 4])
    torch.testing.assert_close(
        full.target_query(target), full.sid_embeddings["text"](full.sid_codes("joint", target))
    )
    with torch.no_grad():
        assert full.eval()(target, torch.tensor([[5, 6], [0, 0], [7, 0]])).shape == (3,)


def test_din_on_an_aliased_codebook_reads_the_shared_table():
    sizes = {"text": [8, 8], "joint": [8, 8]}
    model = DIN(
        TableShapes(n_items=20, n_ids=20, sid_sizes=sizes, sid_aliases={"joint": "text"}),
        sid_codebook="joint",
    )
    assert model.codebooks == ["text"]


def test_dot_head_adds_the_vbpr_interactions(syn_loaded):
    """With the tower silenced (last layer zero), +dot's logit is exactly the sum over branches
    (item IDs, each SID codebook with the target's own SID, projected content) of
    <masked mean of the history's embeddings, the target's embedding>."""
    model = make_model(
        TrainConfig(model="MCCA", model_params={"dot": True, "content": True}), syn_loaded.tables
    ).eval()
    last = model.tower.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    target, history = _batch(syn_loaded.tables)
    mask = (history != 0).unsqueeze(-1).float()

    def mean_dot(h, t):
        return ((h * mask).sum(1) / mask.sum(1) * t).sum(-1)

    with torch.no_grad():
        got = model(target, history)
        ids = model.id_embedding
        want = mean_dot(ids(model.item_to_id[history]), ids(model.item_to_id[target]))
        for cb in model.attended:
            emb = model.sid_embeddings[cb]
            want = want + mean_dot(
                emb(model.sid_codes(cb, history)), emb(model.sid_codes(cb, target))
            )
        proj = model.content_proj
        want = want + mean_dot(proj(model.content(history)), proj(model.content(target)))
    torch.testing.assert_close(got, want)
    plain = make_model(TrainConfig(model="MCCA"), syn_loaded.tables)
    with_content = make_model(
        TrainConfig(model="MCCA", model_params={"content": True}), syn_loaded.tables
    )
    d = plain.dim
    assert with_content.tower.net[0].in_features == plain.tower.net[0].in_features + 2 * d
    assert (
        sorted(with_content.content_modalities) == ["audio", "text"]
        and plain.content_modalities == []
    )
