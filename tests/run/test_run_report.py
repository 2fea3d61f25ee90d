"""report/run_report.py on a small hand-built run directory (SYNTHETIC embeddings and metrics).

The end-to-end test renders the report of a real run; these pin each section's content.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq.config import RunConfig
from psrq.report import run_report
from psrq.report.id_report import code_points, write_code_points
from psrq.run_layout import RunPaths
from psrq.stages import StageResult

META = {
    "dataset": "synth",
    "synthetic": True,
    "items": 1200,
    "interactions": 34567,
    "label_rule": {"kind": "implicit", "n_negatives": 1, "rating_threshold": None},
    "protocol": {"split": [0.8, 0.1, 0.1], "max_history": 20, "cold_threshold": 30},
    "boundaries": {"train_until": "2010-05-31", "valid_until": "2010-10-31"},
    "skipped": {"duplicate_events": 12},
    "splits": {
        "train": {
            "rows": 1000,
            "positives": 500,
            "users": 40,
            "first_day": "2009-01-01",
            "last_day": "2010-05-31",
        }
    },
}


def _metrics(path: Path, test_auc: float, cold_auc: float, best_epoch: int) -> None:
    path.mkdir(parents=True)
    path.joinpath("metrics.json").write_text(
        json.dumps(
            {
                "metrics": {
                    "test": {"auc": test_auc, "cold_auc": cold_auc, "gauc": 0.6, "logloss": 0.65},
                    "valid": {
                        "auc": test_auc - 0.01,
                        "cold_auc": cold_auc,
                        "gauc": 0.6,
                        "logloss": 0.66,
                    },
                },
                "best_epoch": best_epoch,
                "history": [{"valid": {"auc": 0.55}}, {"valid": {"auc": test_auc - 0.01}}],
            }
        )
    )


def _write_embeddings(path: Path, ids: list[str], x: np.ndarray) -> None:
    emb = pa.FixedSizeListArray.from_arrays(
        pa.array(x.astype(np.float32).ravel(), pa.float32()), x.shape[1]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"item_id": pa.array(ids, pa.string()), "embedding": emb})
    pq.write_table(table.replace_schema_metadata({"psrq.synthetic": "true"}), path)


@pytest.fixture(scope="module")
def rank_paths(tmp_path_factory) -> RunPaths:
    """metrics.json of three training runs, as the rank stages leave them."""
    paths = RunPaths(tmp_path_factory.mktemp("rank-run"))
    _metrics(paths.ranker("mcca-psrq", 0), 0.70, 0.60, 3)
    _metrics(paths.ranker("mcca-psrq", 1), 0.72, 0.64, 4)
    _metrics(paths.ranker("din", 0), 0.65, 0.50, 2)
    return paths


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[RunConfig, RunPaths]:
    """A run directory as the stages leave it: meta.json, embeddings, one quantizer, metrics."""
    from psrq.formats.embeddings import read_embedding_parquet
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.quantize.quality import evaluate_ids

    root = tmp_path_factory.mktemp("run")
    config = RunConfig.model_validate(
        {
            "out": str(root),
            "quantize": {
                "methods": [{"name": "psrq", "method": "PSRQ", "n_levels": 2, "codebook_size": 4}]
            },
        }
    )
    paths = RunPaths(root)
    paths.samples.mkdir(parents=True)
    (paths.samples / "meta.json").write_text(json.dumps(META))
    rng = np.random.default_rng(0)  # SYNTHETIC: 200 items, 8-d text and 6-d audio blobs
    ids = [f"synthetic-{i}" for i in range(200)]
    _write_embeddings(
        paths.embedding("text"),
        ids,
        rng.normal(size=(6, 8))[rng.integers(0, 6, 200)] + rng.normal(size=(200, 8)) * 0.3,
    )
    _write_embeddings(paths.embedding("audio"), ids, rng.normal(size=(200, 6)))
    inputs = {m: read_embedding_parquet(paths.embedding(m), m) for m in ("audio", "text")}
    mq = MultimodalQuantizer(params={"n_levels": 2, "codebook_size": 4})
    sids = mq.fit_transform(inputs)
    mq.save(paths.quantizer("psrq"))
    sids.write(paths.sids("psrq"))
    quality = {
        cb: evaluate_ids(X, sids.codes[cb], mq.quantizers_[cb], seed=0)
        for cb, (_, X) in mq.quantizer_inputs(inputs).items()
    }
    paths.quality("psrq").parent.mkdir(parents=True)
    paths.quality("psrq").write_text(json.dumps({"codebooks": quality}, default=float))
    write_code_points(
        paths.quality_points("psrq"),
        {cb: code_points(X, sids.codes[cb]) for cb, (_, X) in mq.quantizer_inputs(inputs).items()},
    )
    _metrics(paths.ranker("mcca-psrq", 0), 0.70, 0.60, 3)
    _metrics(paths.ranker("mcca-psrq", 1), 0.72, 0.64, 4)
    _metrics(paths.ranker("din", 0), 0.65, 0.50, 2)
    return config, paths


RANK_RUNS = [
    ("mcca", "psrq", 0),
    ("mcca", "psrq", 1),
    ("din", None, 0),
    ("din", None, 1),
]  # din seed 1 never ran


def test_mean_std_and_format_skip_missing_values():
    assert run_report._mean_std([0.5, 0.7, math.nan, None]) == pytest.approx((0.6, 0.1))  # type: ignore[list-item]
    assert run_report._mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in run_report._mean_std([math.nan]))
    assert run_report._fmt(0.6, 0.1, 2) == "0.6000 ± 0.1000"
    assert run_report._fmt(0.6, 0.0, 1) == "0.6000"
    assert run_report._fmt(math.nan, math.nan, 2) == "–"


def test_data_section_states_the_protocol_and_synthetic_label():
    html = run_report.data_section(META)
    for text in [
        "synth (SYNTHETIC data): 1,200 items, 34,567 interactions",
        "implicit",
        "2010-05-31 / 2010-10-31",
        "newest 20 positives",
        "fewer than 30",
        "duplicate_events = 12",
        "2009-01-01 … 2010-05-31",
    ]:
        assert text in html, text


def test_rank_metrics_are_collected_per_ranker_over_seeds(rank_paths):
    paths = rank_paths
    by_model = run_report.collect_rank_metrics(paths, RANK_RUNS)
    assert {k: len(v) for k, v in by_model.items()} == {
        "mcca-psrq": 2,
        "din": 1,
    }  # a missing seed is skipped
    rows = {r["model"]: r for r in run_report.rank_rows(by_model, "test")}
    assert rows["mcca-psrq"]["seeds"] == 2 and rows["mcca-psrq"]["All AUC"] == "0.7100 ± 0.0100"
    assert (
        rows["mcca-psrq"]["Cold AUC"] == "0.6200 ± 0.0200"
        and rows["mcca-psrq"]["best epoch"] == "3, 4"
    )
    assert rows["din"]["All AUC"] == "0.6500"
    assert run_report.rank_rows(by_model, "valid")[0]["All AUC"] == "0.7000 ± 0.0100"


def test_rank_section_says_when_nothing_was_trained(rank_paths):
    paths = rank_paths
    assert "No ranking models were trained" in run_report.rank_section(paths, [])
    html = run_report.rank_section(paths, RANK_RUNS)
    assert "0.7100 ± 0.0100" in html and html.count("<img") == 2  # AUC bars + training curves


def test_provenance_lists_config_stages_and_versions():
    stages = [
        StageResult("embed text", "f1", True, 0.0),
        StageResult("quantize psrq", "f2", False, 12.34),
    ]
    html = run_report.provenance_section(RunConfig(), {"numpy": "9.9.9"}, stages)
    assert "max_history: 20" in html and "reused" in html and "12.3" in html and "9.9.9" in html


@pytest.mark.slow
def test_write_run_report_writes_one_self_contained_page(run):
    config, paths = run
    path = run_report.write_run_report(config, paths, RANK_RUNS, [], versions={"psrq": "0"})
    assert path == paths.report
    html = path.read_text()
    for text in [
        "psrq run: synth (SYNTHETIC data)",
        "Data and split",
        "Semantic-ID quality",
        "psrq / text",
        "psrq / audio",
        "psrq / joint",
        "Ranking",
        "0.7100 ± 0.0100",
        "Provenance",
    ]:
        assert text in html, text
    assert 'src="http' not in html and "<img" in html
