"""Issue 9.3: results that were silently wrong now fail, warn, or are defined and documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest


def _strict_json(path: Path):
    def no_nan(token: str):
        raise AssertionError(f"{path} holds a bare {token}")

    return json.loads(Path(path).read_text(), parse_constant=no_nan)


# ---- --new-sids from another quantizer --------------------------------------------------------
@pytest.mark.parametrize("other", ["RQKMeans-0", "PSRQ-1"])
def test_score_refuses_new_sids_from_another_quantizer(cli, sid_run, other):
    path = sid_run["new_sids"](other, ["new-track"], f"new-{other}.parquet")
    res = cli("score", "--model", sid_run["run"], "--candidates", "new-track", "--new-sids", path)
    assert res.code == 2, res.out
    assert "another quantizer" in res.err and path in res.err
    what = "method" if other.startswith("RQ") else "quantizer fingerprint"
    assert what in res.err


def test_score_accepts_new_sids_from_the_training_quantizer(cli, sid_run, tmp_path):
    path = sid_run["new_sids"]("PSRQ-0", ["new-track"], "new-same.parquet")
    res = cli(
        "score",
        "--model",
        sid_run["run"],
        "--candidates",
        "new-track,syn_item_3",
        "--new-sids",
        path,
        "--out",
        tmp_path / "s.json",
    )
    assert res.code == 0, res.err
    status = {r["item_id"]: r["status"] for r in _strict_json(tmp_path / "s.json")["ranked"]}
    assert status == {"new-track": "new (SIDs/content)", "syn_item_3": "known"}


# ---- SID coverage in train --------------------------------------------------------------------
def test_train_refuses_sids_that_cover_few_sample_items(cli, sid_run, emb_files, tmp_path):
    from psrq.formats.embeddings import read_embedding_parquet
    from psrq.quantize.multimodal import MultimodalQuantizer

    # SIDs of another catalogue (items it000...): none of the training samples' items.
    foreign = MultimodalQuantizer(method="PSRQ", params={"n_levels": 2, "codebook_size": 4})
    foreign.fit_transform({"text": read_embedding_parquet(emb_files["text"], "text")}).write(
        tmp_path / "f.parquet"
    )
    args = (
        "train",
        "--samples",
        sid_run["samples"],
        "--sids",
        tmp_path / "f.parquet",
        "--epochs",
        "1",
    )
    res = cli(*args, "--out", tmp_path / "a")
    assert res.code == 2 and "covers only 0.0%" in res.err and "--min-sid-coverage" in res.err
    assert not (tmp_path / "a").exists()
    res = cli(*args, "--out", tmp_path / "b", "--min-sid-coverage", "0")
    assert res.code == 0, res.err
    assert "coverage: 0.0%" in res.err + res.out


def test_train_reports_full_coverage(cli, sid_run, tmp_path):
    res = cli(
        "train",
        "--samples",
        sid_run["samples"],
        "--sids",
        sid_run["sids"],
        "--epochs",
        "1",
        "--out",
        tmp_path / "t",
    )
    assert res.code == 0 and "coverage: 100.0%" in res.err + res.out


# ---- IDs on the command line and in files -----------------------------------------------------
def test_ids_with_commas_need_a_file_and_then_score(cli, sid_run, tmp_path):
    path = sid_run["new_sids"]("PSRQ-0", ["Track, the remix", " padded"], "new-commas.parquet")
    res = cli(
        "score", "--model", sid_run["run"], "--candidates", "Track, the remix", "--new-sids", path
    )
    assert res.code == 2 and "--candidates-file" in res.err and "ambiguous" in res.err
    cands = tmp_path / "c.txt"
    cands.write_text("Track, the remix\n padded\nsyn_item_3\n")
    pq.write_table(pa.table({"item_id": ["syn_item_1", "syn_item_2"]}), tmp_path / "h.parquet")
    res = cli(
        "score",
        "--model",
        sid_run["run"],
        "--candidates-file",
        cands,
        "--history-file",
        tmp_path / "h.parquet",
        "--new-sids",
        path,
        "--out",
        tmp_path / "s.json",
    )
    assert res.code == 0, res.err
    out = _strict_json(tmp_path / "s.json")
    assert out["history"] == ["syn_item_1", "syn_item_2"]
    status = {r["item_id"]: r["status"] for r in out["ranked"]}
    assert status == {
        "Track, the remix": "new (SIDs/content)",
        " padded": "new (SIDs/content)",
        "syn_item_3": "known",
    }


def test_inline_empty_id_is_refused(cli, sid_run):
    res = cli("score", "--model", sid_run["run"], "--candidates", "syn_item_1,,syn_item_2")
    assert res.code == 2 and "empty item ID" in res.err


def test_ten_thousand_candidates_are_scoreable(cli, sid_run, tmp_path):
    known = [f"syn_item_{i}" for i in range(80)]
    ids = known + [f"new_{i}" for i in range(10_000 - len(known))]
    (tmp_path / "c.txt").write_text("\n".join(ids) + "\n")
    res = cli(
        "score",
        "--model",
        sid_run["run"],
        "--history",
        "syn_item_1",
        "--candidates-file",
        tmp_path / "c.txt",
        "--top",
        "3",
        "--out",
        tmp_path / "s.json",
    )
    assert res.code == 0, res.err
    ranked = _strict_json(tmp_path / "s.json")["ranked"]
    assert len(ranked) == 10_000 and {r["item_id"] for r in ranked} == set(ids)
    # Items known by nothing are listed after every ranked item, with a warning.
    statuses = [r["status"] for r in ranked]
    assert set(statuses[: len(known)]) <= {"known"} and set(statuses[len(known) :]) == {
        "unknown (OOV only)"
    }
    assert "9920 candidate(s) unknown" in res.out.replace("\n", " ")


def test_duplicates_top_and_unknown_candidates_are_defined(cli, sid_run, tmp_path):
    base = ("score", "--model", sid_run["run"], "--history", "syn_item_1")
    res = cli(
        *base, "--candidates", "syn_item_3,syn_item_3,syn_item_4", "--out", tmp_path / "d.json"
    )
    assert res.code == 0 and "1 duplicate candidate(s) dropped" in res.out
    d = _strict_json(tmp_path / "d.json")
    assert [r["item_id"] for r in d["ranked"]].count("syn_item_3") == 1 and d[
        "duplicates_dropped"
    ] == 1

    res = cli(*base, "--candidates", "syn_item_3,syn_item_4", "--top", "-1")
    assert res.code == 2 and "--top" in res.err
    res = cli(*base, "--candidates", ",".join(f"syn_item_{i}" for i in range(30)), "--top", "0")
    assert res.code == 0 and "│   30 │" in res.out  # --top 0 prints every row

    res = cli(
        *base, "--candidates", "unknown_x,syn_item_3,syn_item_4", "--out", tmp_path / "u.json"
    )
    assert res.code == 0 and "unknown to the model" in res.out and "listed last" in res.out
    u = _strict_json(tmp_path / "u.json")
    assert u["ranked"][-1]["item_id"] == "unknown_x" and u["unknown_candidates"] == ["unknown_x"]
    res = cli(
        *base,
        "--candidates",
        "unknown_x,syn_item_3,syn_item_4",
        "--rank-unknown",
        "--out",
        tmp_path / "r.json",
    )
    scores = [r["score"] for r in _strict_json(tmp_path / "r.json")["ranked"]]
    assert res.code == 0 and scores == sorted(scores, reverse=True)


# ---- one-class labels, undefined metrics, --epochs 0 -------------------------------------------
def test_all_positive_labels_are_reported_and_metrics_are_null(cli, sid_run, tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    for split in ("train", "valid", "test"):
        t = pq.read_table(Path(sid_run["samples"]) / f"{split}.parquet")
        ones = pc.cast(pa.array(np.ones(t.num_rows, dtype=np.int8)), t.schema.field("label").type)
        pq.write_table(
            t.set_column(t.schema.get_field_index("label"), "label", ones),
            samples / f"{split}.parquet",
        )
    res = cli(
        "train",
        "--samples",
        samples,
        "--sids",
        sid_run["sids"],
        "--epochs",
        "1",
        "--out",
        tmp_path / "run",
    )
    assert res.code == 0, res.err
    assert "labels are positive" in res.err and "AUC and GAUC are undefined" in res.err
    metrics = _strict_json(tmp_path / "run" / "metrics.json")
    assert (
        metrics["metrics"]["test"]["auc"] is None
        and metrics["metrics"]["test"]["logloss"] is not None
    )
    res = cli(
        "evaluate",
        "--model",
        tmp_path / "run",
        "--samples",
        samples / "test.parquet",
        "--out",
        tmp_path / "e.json",
    )
    assert res.code == 0 and "undefined" in res.out
    assert _strict_json(tmp_path / "e.json")[str(samples / "test.parquet")]["gauc"] is None


def test_data_prepare_reports_one_class_labels(cli, tmp_path):
    rng = np.random.default_rng(0)  # SYNTHETIC interactions
    n = 400
    items = {"item_id": [f"i{k}" for k in range(20)], "text": [f"song {k}" for k in range(20)]}
    inter = {
        "user_id": [f"u{k % 20}" for k in range(n)],
        "item_id": [f"i{int(k)}" for k in rng.integers(0, 20, n)],
        "timestamp": (1_300_000_000 + np.arange(n) * 60).tolist(),
        "label": [1] * n,
    }
    pq.write_table(pa.table(items), tmp_path / "items.parquet")
    pq.write_table(pa.table(inter), tmp_path / "inter.parquet")
    res = cli(
        "data",
        "prepare",
        "parquet",
        "--items",
        tmp_path / "items.parquet",
        "--interactions",
        tmp_path / "inter.parquet",
        "--label-rule",
        "explicit",
        "--out",
        tmp_path / "out",
    )
    assert res.code == 0, res.err
    assert "train.parquet: all" in res.out and "labels are positive" in res.out


def test_epochs_zero_is_refused(cli, sid_run, tmp_path):
    res = cli(
        "train",
        "--samples",
        sid_run["samples"],
        "--sids",
        sid_run["sids"],
        "--epochs",
        "0",
        "--out",
        tmp_path / "z",
    )
    assert res.code == 2 and "--epochs" in res.err
    assert not (tmp_path / "z").exists()
