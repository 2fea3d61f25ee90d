"""`psrq experiment`: a grid of models x quantizers x seeds on one prepared data set.

    spec = ExperimentConfig(samples="runs/lastfm2k/data/samples", embeddings="runs/lastfm2k/embeddings")
    results = run_experiment(spec, out="runs/exp")     # results.json, results.md, results.html

Runs (the rows of the paper's tables 2-4):
- main table: VBPR, SimTier+MAKE, ContentConcat, DIN, QARM, DIN + <main quantizer> SIDs, MCCA;
- quantizer table: DIN, and DIN + SIDs of each quantizer (VQ, PQ, RQKMeans, RQVAE, PSRQ);
- ablation table: MCCA, MCCA w/o MSC, MCCA w/o MJC (all with the main quantizer's SIDs);
- beyond the paper (only when asked for): DIN+SID and MCCA with "+dot", "+content" or
  "+content+dot" (main quantizer), in their own table beside the paper-faithful rows.
Semantic IDs are computed with `psrq.quantize.multimodal.MultimodalQuantizer` once per
(quantizer, params, seed, embedding files) and cached under `<out>/cache/sids/`; every finished
(run, seed) is stored in `<out>/runs/<run>/seed<k>.json`, so an interrupted grid resumes where it
stopped and adding seeds reuses the finished ones.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psrq.artifacts import fingerprint_files, fingerprint_obj, write_json, write_text
from psrq.config import (
    QUANTIZER_LABELS,
    VARIANT_MODELS,
    VARIANTS,
    ExperimentConfig,
    TrainingSettings,
    default_quantizer_params,
)
from psrq.errors import InputError
from psrq.quantize.registry import KINDS
from psrq.rank.metrics import METRIC_NAMES

# The experiment's settings (ExperimentConfig), its model rows (PAPER_MODELS, VARIANT_MODELS) and
# the "+dot" / "+content" variants (VARIANTS) are part of the one configuration tree, psrq.config.

ALL_QUANTIZERS = list(KINDS)
# Experiment row name -> registered model name, where they differ.
MODEL_OF_RUN = {"SimTier+MAKE": "SimTierMAKE"}
# Defaults per quantizer: the library's (3 levels of k=64, VQ one level); override with
# ExperimentConfig.quantizer_params.
DEFAULT_QUANTIZER_PARAMS: dict[str, dict[str, Any]] = {
    q: default_quantizer_params(q) for q in ALL_QUANTIZERS
}


@dataclass
class RunSpec:
    name: str
    model: str
    model_params: dict[str, Any]
    quantizer: str | None  # whose SIDs the run uses (None: no SIDs)


def plan_runs(spec: ExperimentConfig, modalities: list[str]) -> list[RunSpec]:
    """The (deduplicated) list of runs the grid needs, in table order."""
    sid_mod = spec.sid_modality or modalities[0]
    runs: list[RunSpec] = []
    for m in spec.models:
        if m == "DIN+SID":
            qs = list(dict.fromkeys([*spec.quantizers, spec.main_quantizer]))
            runs += [
                RunSpec(f"DIN+{QUANTIZER_LABELS[q]}", "DIN", {"sid_codebook": sid_mod}, q)
                for q in qs
            ]
        elif m == "MCCA":
            runs.append(RunSpec("MCCA", "MCCA", {}, spec.main_quantizer))
        elif m == "MCCA w/o MSC":
            runs.append(RunSpec(m, "MCCA", {"use_msc": False}, spec.main_quantizer))
        elif m == "MCCA w/o MJC":
            runs.append(RunSpec(m, "MCCA", {"use_mjc": False}, spec.main_quantizer))
        elif m in VARIANT_MODELS:
            runs.append(_variant_run(m, sid_mod, spec.main_quantizer))
        else:
            runs.append(RunSpec(m, MODEL_OF_RUN.get(m, m), {}, None))
    return runs


def _variant_run(name: str, sid_modality: str, quantizer: str) -> RunSpec:
    """ "DIN+SID+dot" -> "DIN+PSRQ+dot" (main quantizer's SIDs); "MCCA+content" -> MCCA(content=True)."""
    base, suffix = (
        ("DIN+SID", name[len("DIN+SID") :])
        if name.startswith("DIN+SID")
        else ("MCCA", name[len("MCCA") :])
    )
    params = dict(VARIANTS[suffix])
    if base == "DIN+SID":
        return RunSpec(
            f"DIN+{QUANTIZER_LABELS[quantizer]}{suffix}",
            "DIN",
            {"sid_codebook": sid_modality, **params},
            quantizer,
        )
    return RunSpec(name, "MCCA", params, quantizer)


# ---- semantic IDs -----------------------------------------------------------------------------
def embedding_files(
    directory: str | os.PathLike[str], modalities: list[str] | None
) -> dict[str, Path]:
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"embeddings directory not found: {d}")
    found = {p.stem: p for p in sorted(d.glob("*.parquet"))}
    if not found:
        raise InputError(f"{d} holds no <modality>.parquet embedding files")
    mods = list(found) if modalities is None else modalities
    missing = [m for m in mods if m not in found]
    if missing:
        raise InputError(f"{d}: no embeddings for modality {missing} (found {sorted(found)})")
    return {m: found[m] for m in mods}


def sids_cache_path(
    kind: str, params: dict[str, Any], seed: int, files: dict[str, Path], cache_dir: Path
) -> Path:
    """Where the SIDs of (quantizer kind, params, seed, embedding file contents) are cached."""
    key = fingerprint_obj(
        {
            "kind": kind,
            "params": params,
            "seed": seed,
            "files": fingerprint_files(list(files.values())),
            "mods": list(files),
        }
    )
    return cache_dir / f"{kind}-{key}.parquet"


def cached_sids(
    kind: str, params: dict[str, Any], seed: int, files: dict[str, Path], cache_dir: Path
) -> Path:
    """sids.parquet for (quantizer kind, params, seed, embedding files), computed once and cached."""
    from psrq.quantize.multimodal import MultimodalQuantizer
    from psrq.rank.batches import read_embeddings

    path = sids_cache_path(kind, params, seed, files, cache_dir)
    if path.is_file():
        return path
    inputs = {m: read_embeddings(p) for m, p in files.items()}
    mq = MultimodalQuantizer(method=kind, params=params, seed=seed)
    sids = mq.fit_transform(inputs)
    sids.write(path)
    return path


# ---- running ----------------------------------------------------------------------------------
def _summarise(per_seed: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("valid", "test"):
        out[split] = {}
        for metric in METRIC_NAMES:
            vals = np.array(
                [r["metrics"][split][metric] for r in per_seed.values() if split in r["metrics"]],
                dtype=float,
            )
            vals = vals[~np.isnan(vals)]
            out[split][metric] = {
                "mean": float(vals.mean()) if len(vals) else math.nan,
                "std": float(vals.std(ddof=1))
                if len(vals) > 1
                else (0.0 if len(vals) else math.nan),
                "n": len(vals),
            }
    return out


def run_experiment(
    spec: ExperimentConfig,
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    threads: int | None = None,
    train_missing: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the grid and write results.json, results.md and results.html into `out`.

    With ``train_missing=False`` nothing is trained: the tables are built from the (run, seed)
    pairs already finished (e.g. to look at a grid that is still running in another process).
    """
    import torch
    from rich.console import Console

    from psrq.rank.train import load_ranking_data, train_model

    if threads:
        torch.set_num_threads(threads)
    console = Console(stderr=True, quiet=not progress)
    out = Path(out)
    files = embedding_files(spec.embeddings, spec.modalities)
    modalities = list(files)
    runs = plan_runs(spec, modalities)
    qparams = spec.quantizer_kwargs()
    results: dict[str, Any] = {
        "spec": spec.model_dump(),
        "modalities": modalities,
        "quantizer_params": qparams,
        "runs": [],
    }
    data_cache: dict[str | None, Any] = {}
    for run in runs:
        sids_path = None
        if run.quantizer is not None and not train_missing:
            sids_path = sids_cache_path(
                run.quantizer,
                qparams[run.quantizer],
                spec.quantizer_seed,
                files,
                out / "cache" / "sids",
            )
        elif run.quantizer is not None:
            console.print(f"[bold]semantic IDs[/bold]: {run.quantizer} {qparams[run.quantizer]}")
            sids_path = cached_sids(
                run.quantizer,
                qparams[run.quantizer],
                spec.quantizer_seed,
                files,
                out / "cache" / "sids",
            )
        per_seed: dict[str, Any] = {}
        for seed in spec.seeds:
            config = spec.train_config(model=run.model, model_params=run.model_params, seed=seed)
            record_path = out / "runs" / _slug(run.name) / f"seed{seed}.json"
            key = fingerprint_obj(
                {
                    "config": config.to_dict(),
                    "sids": str(sids_path and sids_path.name),
                    "samples": str(spec.samples),
                    "modalities": modalities,
                }
            )
            if record_path.is_file():
                record = json.loads(record_path.read_text())
                if record.get("key") == key:
                    per_seed[str(seed)] = record
                    continue
            if not train_missing:
                continue
            if run.quantizer not in data_cache:
                data_cache.clear()  # one data set in memory at a time
                data_cache[run.quantizer] = load_ranking_data(
                    spec.samples,
                    sids=sids_path,
                    embeddings=spec.embeddings,
                    modalities=modalities,
                    max_history=config.max_history,
                    min_id_count=config.min_id_count,
                )
            console.print(f"[bold]{run.name}[/bold] seed {seed}")
            t0 = time.perf_counter()
            res = train_model(data_cache[run.quantizer], config, progress=progress)
            record = {
                "key": key,
                "run": run.name,
                "seed": seed,
                "best_epoch": res.best_epoch,
                "epochs_run": len(res.history),
                "seconds": time.perf_counter() - t0,
                "metrics": res.metrics,
                "history": res.history,
            }
            write_json(record_path, record)
            per_seed[str(seed)] = record
            t = res.metrics.get("test", {})
            console.print(
                f"  test AUC {t.get('auc', math.nan):.4f}  cold {t.get('cold_auc', math.nan):.4f}  GAUC {t.get('gauc', math.nan):.4f}  ({record['seconds']:.0f}s)"
            )
        if not per_seed:
            continue
        results["runs"].append(
            {
                **asdict(run),
                "sids": sids_path.name if sids_path else None,
                "seeds": per_seed,
                "summary": _summarise(per_seed),
            }
        )
    write_json(out / "results.json", results)
    write_text(out / "results.md", render_markdown(results))
    write_text(out / "results.html", render_html(results))
    return results


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "+-" else "_" for c in name)


# ---- tables -----------------------------------------------------------------------------------
def table_rows(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The three paper tables: {"main" | "quantizers" | "ablation": [run results]}."""
    by_name = {r["name"]: r for r in results["runs"]}
    main_q = QUANTIZER_LABELS[results["spec"]["main_quantizer"]]
    pick = lambda names: [by_name[n] for n in names if n in by_name]  # noqa: E731
    return {
        "main": pick(
            ["VBPR", "SimTier+MAKE", "ContentConcat", "DIN", "QARM", f"DIN+{main_q}", "MCCA"]
        ),
        "quantizers": pick(["DIN", *[f"DIN+{QUANTIZER_LABELS[q]}" for q in ALL_QUANTIZERS]]),
        "ablation": pick(["MCCA", "MCCA w/o MSC", "MCCA w/o MJC"]),
        "variants": pick(
            [
                f"DIN+{main_q}",
                *[f"DIN+{main_q}{s}" for s in VARIANTS],
                "MCCA",
                *[f"MCCA{s}" for s in VARIANTS],
                "VBPR",
            ]
        )
        if any(r["name"].endswith(tuple(VARIANTS)) for r in results["runs"])
        else [],
    }


TABLE_TITLES = {
    "main": "Main comparison (paper Table 2)",
    "quantizers": "Quantizers: DIN + one modality's semantic IDs (paper Table 3)",
    "ablation": "MCCA ablations (paper Table 4)",
    "variants": "Beyond the paper: SID models with a dot-product head (+dot) or projected content (+content)",
}


def _fmt(stat: dict[str, float]) -> str:
    if stat["n"] == 0 or math.isnan(stat["mean"]):
        return "n/a"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def render_markdown(results: dict[str, Any]) -> str:
    spec = results["spec"]
    lines = [
        "# Ranking experiment",
        "",
        f"Samples: `{spec['samples']}`; embeddings: `{spec['embeddings']}` ({', '.join(results['modalities'])}); "
        f"seeds: {spec['seeds']}; preset: {spec['preset']} {_overrides(spec) or ''}; "
        f"main quantizer: {spec['main_quantizer']}. Cells: mean ± sample std over seeds.",
        "",
    ]
    for key, rows in table_rows(results).items():
        if not rows:
            continue
        for split in ("test", "valid"):
            lines += [
                f"## {TABLE_TITLES[key]}: {split}",
                "",
                "| method | " + " | ".join(METRIC_NAMES.values()) + " |",
                "|---" * (len(METRIC_NAMES) + 1) + "|",
            ]
            for r in rows:
                lines.append(
                    f"| {r['name']} | "
                    + " | ".join(_fmt(r["summary"][split][m]) for m in METRIC_NAMES)
                    + " |"
                )
            lines.append("")
    lines += [
        "## Quantizer settings",
        "",
        "```json",
        json.dumps(results["quantizer_params"], indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def _overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """The training fields a results.json's spec sets over its preset."""
    fields = [f for f in TrainingSettings.model_fields if f != "preset"]
    return spec.get("train_overrides") or {f: spec[f] for f in fields if spec.get(f) is not None}


def render_html(results: dict[str, Any]) -> str:
    from html import escape

    md_tables = []
    for key, rows in table_rows(results).items():
        if not rows:
            continue
        for split in ("test", "valid"):
            head = "".join(f"<th>{escape(v)}</th>" for v in ["method", *METRIC_NAMES.values()])
            body = ""
            for r in rows:
                best = r["name"] == "MCCA"
                cells = "".join(
                    f"<td>{escape(_fmt(r['summary'][split][m]))}</td>" for m in METRIC_NAMES
                )
                body += (
                    f"<tr{' class=ours' if best else ''}><td>{escape(r['name'])}</td>{cells}</tr>"
                )
            md_tables.append(
                f"<h2>{escape(TABLE_TITLES[key])}: {split}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            )
    spec = results["spec"]
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>psrq ranking experiment</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}tr.ours{font-weight:600;background:#f3f7ff}</style></head><body>"
        f"<h1>Ranking experiment</h1><p>Samples <code>{escape(spec['samples'])}</code>, embeddings <code>{escape(spec['embeddings'])}</code>, "
        f"seeds {escape(str(spec['seeds']))}, preset {escape(spec['preset'])}. Cells: mean ± sample std over seeds.</p>"
        + "".join(md_tables)
        + "</body></html>\n"
    )
