"""The end-to-end report of `psrq run`: one self-contained HTML file to send to a colleague.

Sections: the data set and split statistics, ID quality per quantizer (tables + plots), ranking
results with the cold-start breakdown and training curves, configuration, versions, timings.

It reads only what the other stages wrote (`report_inputs`: samples/meta.json, quality/<method>.json
and .points.parquet, rank/*/seed*/metrics.json) plus the config, versions and the stage
table, and is itself a cached stage (`report_stage`): a rerun that changed none of them reuses it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from psrq.artifacts import sha256_file, write_text
from psrq.report import html, plots
from psrq.report.id_report import id_quality_sections, read_code_points
from psrq.run_layout import RunPaths, ranker_name
from psrq.stages import Stage, StageResult

if TYPE_CHECKING:
    from psrq.config import RunConfig

# (ranker, quantizer or None, seed): one training run, as psrq.pipeline.ranking_runs x seeds.
RankRun = tuple[str, str | None, int]

METRICS = [("auc", "All AUC"), ("cold_auc", "Cold AUC"), ("gauc", "GAUC"), ("logloss", "Logloss")]


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    return float(np.mean(finite)), float(np.std(finite)) if len(finite) > 1 else 0.0


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


# ---- data ---------------------------------------------------------------------------------------
def data_section(meta: dict[str, Any]) -> str:
    splits = meta.get("splits", {})
    rows = []
    for name, s in splits.items():
        rows.append(
            {
                "split": name,
                "rows": s.get("rows"),
                "positives": s.get("positives"),
                "positive rate": s.get("positive_rate"),
                "users": s.get("users"),
                "items": s.get("items"),
                "new users": s.get("new_users"),
                "new items": s.get("new_items"),
                "cold share": s.get("cold_share"),
                "mean history": s.get("mean_history"),
                "days": f"{s.get('first_day')} … {s.get('last_day')}"
                if s.get("first_day")
                else "–",
            }
        )
    synthetic = " (SYNTHETIC data)" if meta.get("synthetic") else ""
    rule = meta.get("label_rule", {})
    protocol = meta.get("protocol", {})
    facts = [
        (
            "data set",
            f"{meta.get('dataset')}{synthetic}: {meta.get('items', 0):,} items, {meta.get('interactions', 0):,} interactions",
        ),
        (
            "label rule",
            f"{rule.get('kind')} (negatives per positive: {rule.get('n_negatives')}, rating threshold {rule.get('rating_threshold')})",
        ),
        ("split", _split_fact(meta)),
        (
            "history",
            protocol.get("history")
            or f"newest {protocol.get('max_history')} positives strictly before the sample",
        ),
        ("negatives", _negatives_fact(rule, protocol)),
        (
            "cold items",
            f"fewer than {protocol.get('cold_threshold')} positive training interactions",
        ),
        (
            "skipped",
            ", ".join(f"{k} = {v:,}" for k, v in meta.get("skipped", {}).items()) or "nothing",
        ),
    ]
    return (
        html.definitions(facts)
        + html.table(rows, caption="Samples per split (docs/protocol.md)")
        + probe_section(meta.get("popularity_probe"), rule.get("kind", ""))
    )


def _negatives_fact(rule: dict[str, Any], protocol: dict[str, Any]) -> str:
    version = f"protocol version {protocol.get('protocol_version')}"
    if rule.get("kind") != "implicit" or not rule.get("n_negatives"):
        return f"none sampled: the data's own labels; {version}"
    if protocol.get("negative_pool") == "whole_log":
        return (
            f"drawn by whole-log popularity (protocol 2's flawed sampler, see the probe); {version}"
        )
    return (
        f"drawn by the popularity of the positives of the sample's own split up to its time "
        f"(window: {protocol.get('negative_window')}); {version}"
    )


def _split_fact(meta: dict[str, Any]) -> str:
    protocol, bounds = meta.get("protocol", {}), meta.get("boundaries") or {}
    if protocol.get("split") == "given":
        return "as given by the data set (it has no timestamps; docs/protocol.md, 'Data without timestamps')"
    return f"chronological {protocol.get('split')}; boundaries {bounds.get('train_until')} / {bounds.get('valid_until')}"


def probe_section(probe: dict[str, Any] | None, label_rule: str) -> str:
    """The popularity probe beside the split table, with a warning when it strays from 0.5."""
    # Imported here: psrq.data.protocol loads pyarrow, which `psrq run --help` does not need.
    from psrq.data.protocol import format_probe, probe_warning

    if not probe:
        return html.paragraph(
            "popularity probe: not recorded (data prepared before protocol 3; "
            "rerun `psrq data prepare`)",
            css_class="warning",
        )
    text = html.paragraph(format_probe(probe) + f". Score: {probe['score']}.", css_class="note")
    warning = probe_warning(probe, label_rule)
    return text + (html.paragraph(f"WARNING: {warning}", css_class="warning") if warning else "")


# ---- ID quality ---------------------------------------------------------------------------------
def quality_section(config: RunConfig, paths: RunPaths) -> str:
    """Headline ID metrics and plots for every quantizer x codebook, from what the ID-quality
    stage wrote (quality/<method>.json and quality/<method>.points.parquet)."""
    results: dict[str, dict[str, Any]] = {}
    points_by_name: dict[str, np.ndarray] = {}
    codes_by_name: dict[str, np.ndarray] = {}
    for spec in config.quantize.methods:
        quality = json.loads(paths.quality(spec.name).read_text())
        points = read_code_points(paths.quality_points(spec.name))
        for codebook, result in quality["codebooks"].items():
            name = f"{spec.name} / {codebook}"
            results[name] = result
            points_by_name[name], codes_by_name[name] = points[codebook]
    parts = id_quality_sections(
        results,
        points_by_name=points_by_name,
        codes_by_name=codes_by_name,
        seed=config.quantize.seed,
    )
    return "".join(html.section(title, body, intro=intro, level=3) for title, body, intro in parts)


# ---- ranking ------------------------------------------------------------------------------------
def collect_rank_metrics(
    paths: RunPaths, rank_runs: list[RankRun]
) -> dict[str, list[dict[str, Any]]]:
    """ranker name -> one metrics.json per seed."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ranker, method, seed in rank_runs:
        name = ranker_name(ranker, method)
        f = paths.rank_metrics(name, seed)
        if f.is_file():
            out[name].append(json.loads(f.read_text()))
    return dict(out)


def rank_rows(by_model: dict[str, list[dict[str, Any]]], split: str) -> list[dict[str, Any]]:
    rows = []
    for name, runs in by_model.items():
        row: dict[str, Any] = {"model": name, "seeds": len(runs)}
        for key, label in METRICS:
            m, s = _mean_std([r["metrics"].get(split, {}).get(key, math.nan) for r in runs])
            row[label] = _fmt(m, s, len(runs))
        row["best epoch"] = ", ".join(str(r.get("best_epoch")) for r in runs)
        rows.append(row)
    return rows


def rank_section(paths: RunPaths, rank_runs: list[RankRun]) -> str:
    by_model = collect_rank_metrics(paths, rank_runs)
    if not by_model:
        return html.paragraph("No ranking models were trained in this run.", css_class="note")
    cols = ["model", "seeds", *(label for _, label in METRICS), "best epoch"]
    body = html.table(
        rank_rows(by_model, "test"), columns=cols, caption="Test split (mean ± std over seeds)"
    )
    body += html.table(
        rank_rows(by_model, "valid"),
        columns=cols,
        caption="Validation split (early stopping uses validation AUC)",
    )
    test_means = {
        name: {
            key: _mean_std([r["metrics"].get("test", {}).get(key, math.nan) for r in runs])[0]
            for key in ("auc", "cold_auc")
        }
        for name, runs in by_model.items()
    }
    body += html.figure(
        plots.grouped_bars_figure(
            test_means, [("auc", "All AUC"), ("cold_auc", "Cold AUC")], ylabel="test AUC"
        ),
        alt="All vs cold AUC per model",
        caption="Cold-start breakdown: AUC over all test samples vs. over samples whose target item is cold.",
    )
    curves = {
        name: [e.get("valid", {}).get("auc", math.nan) for e in runs[0].get("history", [])]
        for name, runs in by_model.items()
    }
    body += html.figure(
        plots.curves_figure(curves, xlabel="epoch", ylabel="validation AUC"),
        alt="validation AUC per epoch",
        caption="Validation AUC per epoch (first seed); the model of the best epoch is kept.",
    )
    return body


# ---- provenance ---------------------------------------------------------------------------------
def _stage_seconds(stage: StageResult) -> float:
    return round(stage.seconds, 1)


def provenance_section(
    config: RunConfig, versions: dict[str, str], stages: list[StageResult]
) -> str:
    cfg = yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False)
    stage_rows = [
        {
            "stage": s.name,
            "status": "reused" if s.skipped else "ran",
            "seconds": _stage_seconds(s),
        }
        for s in stages
    ]
    return (
        html.section("Configuration", f"<pre><code>{html.escape(cfg)}</code></pre>", level=3)
        + html.section("Stages", html.table(stage_rows), level=3)
        + html.section(
            "Versions",
            html.table([{"package": k, "version": v} for k, v in versions.items()]),
            level=3,
        )
    )


def write_run_report(
    config: RunConfig,
    paths: RunPaths,
    rank_runs: list[RankRun],
    stages: list[StageResult],
    *,
    versions: dict[str, str],
) -> Path:
    meta = json.loads(paths.meta.read_text())
    parts = [
        (
            "Data and split",
            data_section(meta),
            "Samples come from the protocol in docs/protocol.md; every metric below depends on it.",
        ),
        (
            "Semantic-ID quality",
            quality_section(config, paths),
            "Measured on the item embeddings alone, before any ranking model is trained.",
        ),
        (
            "Ranking",
            rank_section(paths, rank_runs),
            "All AUC, Cold AUC (target item has fewer than the cold threshold of training interactions), "
            "GAUC (user-weighted), Logloss (mean per-sample BCE; the paper's Logloss is on another scale).",
        ),
        ("Provenance", provenance_section(config, versions, stages), None),
    ]
    body = html.toc([t for t, _, _ in parts]) + "".join(
        html.section(t, b, intro=i) for t, b, i in parts
    )
    synthetic = " (SYNTHETIC data)" if meta.get("synthetic") else ""
    page = html.page(
        f"psrq run: {meta.get('dataset')}{synthetic}",
        body,
        subtitle=f"Semantic IDs and ranking, output in {paths.root}",
    )
    write_text(paths.report, page)
    return paths.report


# ---- the report as a stage ----------------------------------------------------------------------
def report_inputs(config: RunConfig, paths: RunPaths, rank_runs: list[RankRun]) -> list[Path]:
    """Every file `write_run_report` reads (a training run that wrote no metrics is listed too:
    the report says it is missing, and changes when it appears)."""
    files = [paths.meta]
    for spec in config.quantize.methods:
        files += [paths.quality(spec.name), paths.quality_points(spec.name)]
    files += [paths.rank_metrics(ranker_name(r, m), seed) for r, m, seed in rank_runs]
    return files


def report_stage(
    config: RunConfig,
    paths: RunPaths,
    rank_runs: list[RankRun],
    stages: list[StageResult],
    versions: dict[str, str],
) -> Stage:
    """The report as a cached stage, rebuilt exactly when something it shows changed. Its
    settings are everything it renders from: the content (sha256) of every input file
    (`report_inputs`), the config, the package versions and the stage table of this run (name,
    ran or reused, seconds as shown). A rerun that changes nothing reuses the report, except the
    first one after stages ran: its table now says "reused" (the provenance is of this run)."""
    stages = list(stages)
    inputs = {
        str(f.relative_to(paths.root)): sha256_file(f) if f.is_file() else None
        for f in report_inputs(config, paths, rank_runs)
    }
    settings = {
        "inputs": inputs,
        "config": json.loads(config.model_dump_json()),
        "versions": versions,
        "stages": [[s.name, s.skipped, _stage_seconds(s)] for s in stages],
    }
    return Stage(
        "report",
        settings,
        [paths.report],
        lambda: write_run_report(config, paths, rank_runs, stages, versions=versions),
    )
