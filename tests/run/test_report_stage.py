"""The `psrq run` report from hand-written stage outputs alone, and the report as a cached stage.

No quantizer, embedding or model is built here: the run directory holds only what the stages
write for the report (samples/meta.json, quality/<method>.json and .points.parquet, metrics.json),
so a report that still reached for a quantizer or the embeddings would fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from psrq.config import RunConfig
from psrq.errors import InputError
from psrq.report import run_report
from psrq.report.id_report import (
    code_points,
    id_quality_sections,
    read_code_points,
    write_code_points,
)
from psrq.run_layout import RunPaths
from psrq.stages import StageResult, StageRunner

META = {
    "dataset": "synth",
    "synthetic": True,
    "items": 12,
    "interactions": 345,
    "label_rule": {"kind": "implicit", "n_negatives": 1, "rating_threshold": None},
    "protocol": {"split": [0.8, 0.1, 0.1], "max_history": 20, "cold_threshold": 30},
    "boundaries": {"train_until": "2010-05-31", "valid_until": "2010-10-31"},
    "splits": {"train": {"rows": 100, "positives": 50, "users": 4}},
}

RANK_RUNS = [("mcca", "psrq", 0), ("mcca", "psrq", 1), ("din", None, 0), ("din", None, 1)]


def _quality_result(unique_ratio: float, recon_cos: float) -> dict:
    """An `evaluate_ids`-shaped result for 12 items and two levels of 3 codes (hand-written)."""
    level = {"k": 3, "used_codes": 3, "utilisation": 1.0, "perplexity": 2.9, "gini": 0.1}
    return {
        "n_items": 12,
        "dim": 4,
        "codebook_sizes": [3, 3],
        "codebook_sizes_source": "quantizer",
        "sample": {"n_items": 12, "seed": 0, "n_queries": 12, "n_neighbors": 10},
        "ids": {"unique_ratio": unique_ratio, "items_per_id_max": 2, "items_per_id_p99": 2},
        "levels": [
            {"level": 1, **level, "recon_cos": 0.5, "nmi_next": 0.25},
            {"level": 2, **level, "recon_cos": recon_cos, "nmi_next": None},
        ],
    }


def _points(shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    proj = np.column_stack([np.arange(12.0) + shift, np.sin(np.arange(12.0))])
    codes = np.column_stack([np.arange(12) % 3, np.arange(12) // 4])
    return proj, codes


def _metrics(path: Path, auc: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    split = {"auc": auc, "cold_auc": auc - 0.1, "gauc": 0.6, "logloss": 0.65}
    path.write_text(
        json.dumps(
            {
                "metrics": {"test": split, "valid": split},
                "best_epoch": 1,
                "history": [{"valid": {"auc": 0.55}}, {"valid": {"auc": auc}}],
            }
        )
    )


def _config(root: Path, **extra) -> RunConfig:
    methods = [{"name": "psrq", "method": "PSRQ", "n_levels": 2, "codebook_size": 3}]
    return RunConfig.model_validate({"out": str(root), "quantize": {"methods": methods}, **extra})


@pytest.fixture
def run(tmp_path: Path) -> tuple[RunConfig, RunPaths]:
    config = _config(tmp_path)
    paths = RunPaths(tmp_path)
    paths.meta.parent.mkdir(parents=True)
    paths.meta.write_text(json.dumps(META))
    paths.quality("psrq").parent.mkdir(parents=True)
    paths.quality("psrq").write_text(
        json.dumps(
            {
                "codebooks": {
                    "text": _quality_result(0.75, 0.875),
                    "joint": _quality_result(0.5, 0.625),
                }
            }
        )
    )
    write_code_points(paths.quality_points("psrq"), {"text": _points(), "joint": _points(1.0)})
    _metrics(paths.rank_metrics("mcca-psrq", 0), 0.70)
    _metrics(paths.rank_metrics("mcca-psrq", 1), 0.72)
    _metrics(paths.rank_metrics("din", 0), 0.65)
    return config, paths


def test_code_points_round_trip_exactly_in_order(tmp_path):
    rng = np.random.default_rng(0)
    points = {
        "text": (rng.normal(size=(7, 2)), rng.integers(0, 5, size=(7, 3))),
        "joint": (rng.normal(size=(4, 2)), rng.integers(0, 5, size=(4, 3))),
    }
    write_code_points(tmp_path / "p.parquet", points)
    back = read_code_points(tmp_path / "p.parquet")
    assert list(back) == ["text", "joint"]
    for name, (proj, codes) in points.items():
        np.testing.assert_array_equal(back[name][0], proj)  # exact: float64 stored as is
        np.testing.assert_array_equal(back[name][1], codes)
        assert back[name][1].dtype == np.int64


def test_code_points_reject_mismatched_rows(tmp_path):
    with pytest.raises(InputError, match="'text': projection"):
        write_code_points(tmp_path / "p.parquet", {"text": (np.zeros((3, 2)), np.zeros((2, 2)))})


def test_sections_from_stored_points_are_the_sections_from_the_embeddings():
    """The report draws from the stored 2-D points what it used to draw from X: same page."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5))
    codes = np.column_stack([rng.integers(0, 4, 60), rng.integers(0, 4, 60)])
    results = {"q": _quality_result(0.75, 0.875)}
    from_x = id_quality_sections(results, X_by_name={"q": X}, codes_by_name={"q": codes}, seed=3)
    proj, stored_codes = code_points(X, codes, seed=3)
    from_points = id_quality_sections(
        results, points_by_name={"q": proj}, codes_by_name={"q": stored_codes}, seed=3
    )
    assert from_points == from_x
    with pytest.raises(InputError, match="one of X_by_name and points_by_name"):
        id_quality_sections(results, codes_by_name={"q": codes})


def test_report_inputs_are_the_stage_files(run):
    config, paths = run
    assert [
        str(p.relative_to(paths.root)) for p in run_report.report_inputs(config, paths, RANK_RUNS)
    ] == [
        "data/samples/meta.json",
        "quality/psrq.json",
        "quality/psrq.points.parquet",
        "rank/mcca-psrq/seed0/metrics.json",
        "rank/mcca-psrq/seed1/metrics.json",
        "rank/din/seed0/metrics.json",
        "rank/din/seed1/metrics.json",
    ]


@pytest.mark.slow
def test_the_report_renders_from_the_stage_files_alone(run):
    config, paths = run
    stages = [StageResult("quantize psrq", "f", False, 2.25)]
    path = run_report.write_run_report(config, paths, RANK_RUNS, stages, versions={"numpy": "9"})
    assert sorted(p.name for p in paths.root.iterdir()) == [
        "data",
        "quality",
        "rank",
        "report.html",
    ]
    html = path.read_text()
    for text in [
        "psrq run: synth (SYNTHETIC data)",
        "psrq / text",
        "psrq / joint",
        "0.750",  # text's unique IDs, from quality/psrq.json
        "0.625",  # joint's reconstruction cosine
        "0.7100 ± 0.0100",  # mcca-psrq over its two seeds
        "quantize psrq",
        "2.2",
    ]:
        assert text in html, text
    # metrics by level, cluster sizes, one drift PCA per codebook, AUC bars, training curves
    assert html.count("<img") == 6


@pytest.fixture
def fake_writer(monkeypatch) -> list[int]:
    """write_run_report replaced by a cheap one that counts its calls."""
    calls: list[int] = []

    def write(config, paths, rank_runs, stages, *, versions):
        calls.append(1)
        paths.report.write_text(f"report {len(calls)}")
        return paths.report

    monkeypatch.setattr(run_report, "write_run_report", write)
    return calls


def _run_report_stage(config, paths, versions=None, stages=()):
    stage = run_report.report_stage(
        config, paths, RANK_RUNS, list(stages), versions or {"numpy": "1"}
    )
    return StageRunner(paths.root).run(stage)


def test_the_report_stage_is_reused_when_nothing_changed(run, fake_writer):
    config, paths = run
    assert not _run_report_stage(config, paths).skipped
    assert _run_report_stage(config, paths).skipped
    assert fake_writer == [1] and paths.report.read_text() == "report 1"


@pytest.mark.parametrize(
    "change",
    [
        "meta.json",
        "quality json",
        "quality points",
        "a metrics.json",
        "a missing seed's metrics appear",
        "config",
        "versions",
        "a stage ran",
        "report deleted",
    ],
)
def test_the_report_stage_reruns_when_an_input_changed(run, fake_writer, change):
    config, paths = run
    _run_report_stage(config, paths)
    versions, stages = None, ()
    if change == "meta.json":
        paths.meta.write_text(json.dumps({**META, "items": 13}))
    elif change == "quality json":
        quality = json.loads(paths.quality("psrq").read_text())
        quality["codebooks"]["text"]["ids"]["unique_ratio"] = 0.8
        paths.quality("psrq").write_text(json.dumps(quality))
    elif change == "quality points":
        write_code_points(paths.quality_points("psrq"), {"text": _points(2.0), "joint": _points()})
    elif change == "a metrics.json":
        _metrics(paths.rank_metrics("din", 0), 0.66)
    elif change == "a missing seed's metrics appear":
        _metrics(paths.rank_metrics("din", 1), 0.66)
    elif change == "config":
        config = _config(paths.root, rank={"seeds": 2})
    elif change == "versions":
        versions = {"numpy": "2"}
    elif change == "a stage ran":
        stages = [StageResult("quantize psrq", "f", False, 1.0)]
    else:
        paths.report.unlink()
    result = _run_report_stage(config, paths, versions, stages)
    assert not result.skipped and fake_writer == [1, 1]
