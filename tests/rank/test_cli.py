"""The ranking commands end to end on SYNTHETIC data."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from psrq.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("cmd", ["train", "evaluate", "score", "experiment"])
def test_help_has_examples(cmd):
    out = _ok([cmd, "--help"]).output
    assert "Examples" in out and f"psrq {cmd}" in out


def test_train_evaluate_score(syn_data, tmp_path):
    out = tmp_path / "run"
    _ok(
        [
            "train",
            "--samples",
            str(syn_data["samples"]),
            "--sids",
            str(syn_data["sids"]),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "128",
            "--threads",
            "1",
        ]
    )
    assert (out / "model" / "manifest.json").is_file()
    res = _ok(
        [
            "evaluate",
            "--model",
            str(out),
            "--samples",
            str(syn_data["test"]),
            "--sids",
            str(syn_data["sids"]),
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    assert "All AUC" in res.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0.0 <= metrics[str(syn_data["test"])]["auc"] <= 1.0
    res = _ok(
        [
            "score",
            "--model",
            str(out),
            "--history",
            "syn_item_1,syn_item_2,nope",
            "--candidates",
            "syn_item_3,syn_item_4,unknown_x",
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    ranked = json.loads((tmp_path / "s.json").read_text())["ranked"]
    assert {r["item_id"] for r in ranked} == {"syn_item_3", "syn_item_4", "unknown_x"}
    assert "unknown to the model" in res.output


def test_evaluate_with_wrong_sids_fails(syn_data, tmp_path):
    from psrq.errors import ArtifactError
    from psrq.rank.synthetic import make_synthetic_ranking_data

    out = tmp_path / "run"
    _ok(
        [
            "train",
            "--samples",
            str(syn_data["samples"]),
            "--sids",
            str(syn_data["sids"]),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--threads",
            "1",
        ]
    )
    other = make_synthetic_ranking_data(
        tmp_path / "o", n_users=5, n_items=120, modalities=("text", "audio"), seed=5
    )
    with pytest.raises(ArtifactError):
        runner.invoke(
            app,
            [
                "evaluate",
                "--model",
                str(out),
                "--samples",
                str(syn_data["test"]),
                "--sids",
                str(other["sids"]),
            ],
            catch_exceptions=False,
        )


@pytest.mark.slow
def test_experiment_grid_writes_tables_and_resumes(syn_data, tmp_path):
    out = tmp_path / "exp"
    args = [
        "experiment",
        "--samples",
        str(syn_data["samples"]),
        "--embeddings",
        str(syn_data["embeddings"]),
        "--out",
        str(out),
        "--models",
        "DIN,DIN+SID,MCCA,MCCA w/o MJC,VBPR",
        "--quantizers",
        "VQ",
        "--main-quantizer",
        "RQKMeans",
        "--quantizer-params",
        '{"VQ": {"codebook_size": 8}, "RQKMeans": {"codebook_size": 8}}',
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--threads",
        "1",
    ]
    _ok(args)
    results = json.loads((out / "results.json").read_text())
    names = [r["name"] for r in results["runs"]]
    assert names == ["DIN", "DIN+VQ", "DIN+RQ", "MCCA", "MCCA w/o MJC", "VBPR"]
    for r in results["runs"]:
        assert r["summary"]["test"]["auc"]["n"] == 2
    md = (out / "results.md").read_text()
    assert "paper Table 3" in md and "±" in md
    assert "<table>" in (out / "results.html").read_text()
    assert len(list((out / "cache" / "sids").glob("*.parquet"))) == 2
    # A rerun reuses every finished (run, seed): nothing is retrained, results identical.
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    _ok(args)
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    # --report-only trains nothing: a model never run is simply absent from the tables.
    _ok([*args[:8], "DIN,ContentConcat", *args[9:], "--report-only"])
    assert [r["name"] for r in json.loads((out / "results.json").read_text())["runs"]] == ["DIN"]


def test_score_new_item_from_sids_file(syn_data, tmp_path):
    """A new artist absent from training, with SIDs from the (frozen) quantizer, scored via the CLI."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "run"
    _ok(
        [
            "train",
            "--samples",
            str(syn_data["samples"]),
            "--sids",
            str(syn_data["sids"]),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--threads",
            "1",
        ]
    )
    codes = pa.FixedSizeListArray.from_arrays(pa.array(np.array([1, 2, 3], np.int32)), 3)
    table = pa.table(
        {"item_id": ["brand_new"], "sid_text": codes, "sid_audio": codes, "sid_joint": codes}
    )
    pq.write_table(table, tmp_path / "new.parquet")
    _ok(
        [
            "score",
            "--model",
            str(out),
            "--history",
            "syn_item_1",
            "--candidates",
            "syn_item_3,brand_new",
            "--new-sids",
            str(tmp_path / "new.parquet"),
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    status = {
        r["item_id"]: r["status"] for r in json.loads((tmp_path / "s.json").read_text())["ranked"]
    }
    assert status == {"syn_item_3": "known", "brand_new": "new (SIDs/content)"}


def test_experiment_plans_the_named_variants_beside_the_paper_rows():
    from psrq.config import ExperimentConfig
    from psrq.errors import ConfigError
    from psrq.rank.experiment import plan_runs

    spec = ExperimentConfig(
        samples="s",
        embeddings="e",
        models=["DIN+SID", "MCCA", "DIN+SID+dot", "MCCA+content", "MCCA+content+dot"],
        quantizers=["RQKMeans"],
        main_quantizer="PSRQ",
    )
    runs = {r.name: r for r in plan_runs(spec, ["text"])}
    assert list(runs) == [
        "DIN+RQ",
        "DIN+PSRQ",
        "MCCA",
        "DIN+PSRQ+dot",
        "MCCA+content",
        "MCCA+content+dot",
    ]
    assert runs["DIN+PSRQ+dot"].model == "DIN" and runs["DIN+PSRQ+dot"].model_params == {
        "sid_codebook": "text",
        "dot": True,
    }
    assert runs["DIN+PSRQ+dot"].quantizer == "PSRQ"
    assert runs["MCCA+content+dot"].model_params == {"content": True, "dot": True}
    assert runs["MCCA"].model_params == {}
    with pytest.raises(ConfigError, match="MCCA\\+dot"):
        ExperimentConfig(samples="s", embeddings="e", models=["MCCA+fancy"])


def test_experiment_sid_codebook_picks_the_din_sid_codebook_and_rejects_unknown_ones():
    from psrq.config import ExperimentConfig
    from psrq.errors import ConfigError, InputError
    from psrq.rank.experiment import plan_runs

    def din_codebooks(**kw):
        spec = ExperimentConfig(
            samples="s", embeddings="e", models=["DIN+SID"], quantizers=["PSRQ"], **kw
        )
        return [r.model_params["sid_codebook"] for r in plan_runs(spec, ["audio", "image"])]

    assert din_codebooks() == ["audio"]  # the first modality
    assert din_codebooks(sid_codebook="joint") == ["joint"]
    assert din_codebooks(sid_codebook="image") == ["image"]
    with pytest.raises(InputError, match=r"'text'.*audio.*joint"):
        din_codebooks(sid_codebook="text")
    with pytest.raises(ConfigError, match="sid_codebook"):  # the old key names the new one
        ExperimentConfig(samples="s", embeddings="e", sid_modality="joint")


def test_variants_get_their_own_table_beside_the_paper_rows():
    from psrq.rank.experiment import render_markdown, table_rows

    stat = {"mean": 0.6, "std": 0.01, "n": 2}
    summary = {
        s: {m: stat for m in ("auc", "cold_auc", "logloss", "gauc")} for s in ("valid", "test")
    }
    results = {
        "spec": {
            "main_quantizer": "PSRQ",
            "samples": "s",
            "embeddings": "e",
            "seeds": [0, 1],
            "preset": "default",
            "train_overrides": {},
        },
        "modalities": ["text"],
        "quantizer_params": {},
        "runs": [
            {"name": n, "summary": summary}
            for n in ["DIN+PSRQ", "MCCA", "MCCA+dot", "DIN+PSRQ+content", "VBPR"]
        ],
    }
    tables = {k: [r["name"] for r in rows] for k, rows in table_rows(results).items()}
    assert tables["main"] == [
        "VBPR",
        "DIN+PSRQ",
        "MCCA",
    ]  # the paper's table keeps only the paper's rows
    assert tables["variants"] == ["DIN+PSRQ", "DIN+PSRQ+content", "MCCA", "MCCA+dot", "VBPR"]
    assert "Beyond the paper" in render_markdown(results)
    results["runs"] = results["runs"][:2]
    assert table_rows(results)["variants"] == []


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("SimTierMAKE", '{"make_epochs": 1, "n_tiers": 5}'),
        ("QARM", '{"vq_k": 4, "rq_codebook_size": 8}'),
    ],
)
def test_train_and_score_the_paper_baselines(syn_data, tmp_path, model, params):
    out = tmp_path / "run"
    _ok(
        [
            "train",
            "--samples",
            str(syn_data["samples"]),
            "--embeddings",
            str(syn_data["embeddings"]),
            "--model",
            model,
            "--model-params",
            params,
            "--out",
            str(out),
            "--epochs",
            "1",
            "--threads",
            "1",
        ]
    )
    spec = json.loads((out / "model" / "spec.json").read_text())
    assert spec["model"] == model and all(
        spec["model_kwargs"][k] == v for k, v in json.loads(params).items()
    )
    _ok(
        [
            "score",
            "--model",
            str(out),
            "--history",
            "syn_item_1,syn_item_2",
            "--candidates",
            "syn_item_3,syn_item_4",
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    assert len(json.loads((tmp_path / "s.json").read_text())["ranked"]) == 2


def test_bad_model_params_name_the_option(syn_data, tmp_path):
    from psrq.errors import ConfigError

    for bad in ("{not json", "[1, 2]"):
        with pytest.raises(ConfigError, match="--model-params"):
            runner.invoke(
                app,
                [
                    "train",
                    "--samples",
                    str(syn_data["samples"]),
                    "--out",
                    str(tmp_path / "x"),
                    "--model-params",
                    bad,
                ],
                catch_exceptions=False,
            )


def test_precision_is_checked_before_training(syn_data, tmp_path):
    from psrq.errors import ConfigError

    base = ["train", "--samples", str(syn_data["samples"]), "--out", str(tmp_path / "x")]
    for bad, message in (("fp8", "--precision must be one of"), ("fp16", "CUDA only")):
        for nproc in ("1", "2"):
            if bad == "fp16" and nproc == "2" and torch.cuda.is_available():
                continue  # fp16 is allowed there
            with pytest.raises(ConfigError, match=message):
                runner.invoke(
                    app, [*base, "--precision", bad, "--nproc", nproc], catch_exceptions=False
                )
    assert not (tmp_path / "x" / "model").exists()
    ok = runner.invoke(
        app,
        [*base, "--sids", str(syn_data["sids"]), "--epochs", "1", "--precision", "bf16"],
        catch_exceptions=False,
    )
    assert ok.exit_code == 0, ok.output
    config = json.loads((tmp_path / "x" / "model" / "manifest.json").read_text())
    assert config["params"]["precision"] == "bf16"
