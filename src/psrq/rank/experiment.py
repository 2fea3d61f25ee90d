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
(quantizer, params, seed, embedding files) and cached under `<out>/cache/sids/`; every (run, seed)
is a stage of psrq.stages.StageRunner (as in `psrq run`) whose output is its record
`<out>/runs/<run>/seed<k>.json`, so an interrupted grid resumes where it stopped and adding seeds
reuses the finished ones. results.html is drawn with psrq.report.html, like `psrq run`'s report.
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
from psrq.config import ExperimentConfig, TrainingSettings
from psrq.errors import InputError
from psrq.formats.sids import JOINT
from psrq.quantize.registry import KINDS, LABELS
from psrq.rank.metrics import METRIC_NAMES
from psrq.rank.registry import MODEL_OF_RUN, VARIANT_MODELS, VARIANTS

# The experiment's settings are a psrq.config.ExperimentConfig; its rows (PAPER_MODELS,
# VARIANT_MODELS) and the "+dot" / "+content" variants (VARIANTS) are defined in psrq.rank.registry.

ALL_QUANTIZERS = list(KINDS)
QUANTIZER_LABELS = LABELS


@dataclass
class RunSpec:
    name: str
    model: str
    model_params: dict[str, Any]
    quantizer: str | None  # whose SIDs the run uses (None: no SIDs)


def plan_runs(spec: ExperimentConfig, modalities: list[str]) -> list[RunSpec]:
    """The (deduplicated) list of runs the grid needs, in table order."""
    sid_codebook = spec.sid_codebook or modalities[0]
    if sid_codebook not in [*modalities, JOINT]:
        raise InputError(
            f"sid_codebook {sid_codebook!r}: not a codebook of this grid "
            f"(modalities {modalities} or {JOINT!r})"
        )
    runs: list[RunSpec] = []
    for m in spec.models:
        if m == "DIN+SID":
            qs = list(dict.fromkeys([*spec.quantizers, spec.main_quantizer]))
            runs += [
                RunSpec(f"DIN+{QUANTIZER_LABELS[q]}", "DIN", {"sid_codebook": sid_codebook}, q)
                for q in qs
            ]
        elif m == "MCCA":
            runs.append(RunSpec("MCCA", "MCCA", {}, spec.main_quantizer))
        elif m == "MCCA w/o MSC":
            runs.append(RunSpec(m, "MCCA", {"use_msc": False}, spec.main_quantizer))
        elif m == "MCCA w/o MJC":
            runs.append(RunSpec(m, "MCCA", {"use_mjc": False}, spec.main_quantizer))
        elif m in VARIANT_MODELS:
            runs.append(_variant_run(m, sid_codebook, spec.main_quantizer))
        else:
            runs.append(RunSpec(m, MODEL_OF_RUN.get(m, m), {}, None))
    return runs


def _variant_run(name: str, sid_codebook: str, quantizer: str) -> RunSpec:
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
            {"sid_codebook": sid_codebook, **params},
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

    Every (run, seed) is a stage of psrq.stages.StageRunner under `out` (skipped when its
    settings are unchanged and its record `runs/<run>/seed<k>.json` exists). With
    ``train_missing=False`` nothing is trained: the tables are built from the (run, seed) pairs
    already finished (e.g. to look at a grid that is still running in another process).
    """
    import torch
    from rich.console import Console

    from psrq.stages import StageRunner

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
    runner = StageRunner(out)
    data_cache: dict[tuple[Any, ...], Any] = {}
    for run in runs:
        sids_path = None
        if run.quantizer is not None:
            args = (qparams[run.quantizer], spec.quantizer_seed, files, out / "cache" / "sids")
            if train_missing:
                console.print(
                    f"[bold]semantic IDs[/bold]: {run.quantizer} {qparams[run.quantizer]}"
                )
                sids_path = cached_sids(run.quantizer, *args)
            else:
                sids_path = sids_cache_path(run.quantizer, *args)
        per_seed: dict[str, Any] = {}
        for seed in spec.seeds:
            stage = _seed_stage(spec, run, seed, sids_path, modalities, out, data_cache, progress)
            record_path = stage.outputs[0]
            if train_missing:
                runner.run(stage)
            record = _finished_record(record_path, stage.settings)
            if record is not None:
                per_seed[str(seed)] = record
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


def _seed_stage(
    spec: ExperimentConfig,
    run: RunSpec,
    seed: int,
    sids_path: Path | None,
    modalities: list[str],
    out: Path,
    data_cache: dict[tuple[Any, ...], Any],
    progress: bool,
) -> Any:
    """The stage that trains one (run, seed) and writes its record `runs/<run>/seed<k>.json`."""
    from psrq.stages import Stage, console

    config = spec.train_config(model=run.model, model_params=run.model_params, seed=seed)
    record_path = out / "runs" / _slug(run.name) / f"seed{seed}.json"
    settings = {
        "config": config.to_dict(),
        "sids": str(sids_path and sids_path.name),
        "samples": str(spec.samples),
        "modalities": modalities,
    }

    def train() -> None:
        from psrq.rank.train import load_ranking_data, train_model

        if _finished_record(record_path, settings) is not None:
            return  # written before stages had markers: the same settings, nothing to redo
        # the loaded data depends on the SIDs and on what the training config reads at load time
        data_key = (run.quantizer, config.max_history, config.min_id_count)
        if data_key not in data_cache:
            data_cache.clear()  # one data set in memory at a time
            data_cache[data_key] = load_ranking_data(
                spec.samples,
                sids=sids_path,
                embeddings=spec.embeddings,
                modalities=modalities,
                max_history=config.max_history,
                min_id_count=config.min_id_count,
            )
        t0 = time.perf_counter()
        res = train_model(data_cache[data_key], config, progress=progress)
        record = {
            "key": fingerprint_obj(settings),
            "run": run.name,
            "seed": seed,
            "best_epoch": res.best_epoch,
            "epochs_run": len(res.history),
            "seconds": time.perf_counter() - t0,
            "metrics": res.metrics,
            "history": res.history,
        }
        write_json(record_path, record)
        t = res.metrics.get("test", {})
        console.print(
            f"  test AUC {t.get('auc', math.nan):.4f}  cold {t.get('cold_auc', math.nan):.4f}  "
            f"GAUC {t.get('gauc', math.nan):.4f}  ({record['seconds']:.0f}s)"
        )

    return Stage(f"train {run.name} seed {seed}", settings, [record_path], train)


def _finished_record(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The record at `path` if it was written with these settings (its "key")."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("key") == fingerprint_obj(settings) else None


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
    """results.html: the same tables as results.md, on the house page (psrq.report.html)."""
    from psrq.report import html

    sections = []
    for key, rows in table_rows(results).items():
        if not rows:
            continue
        for split in ("test", "valid"):
            cells = [
                {
                    "method": r["name"],
                    **{m: _fmt(r["summary"][split][m]) for m in METRIC_NAMES},
                }
                for r in rows
            ]
            sections.append(
                html.section(
                    f"{TABLE_TITLES[key]}: {split}",
                    html.table(cells, headers={"method": "method", **METRIC_NAMES}),
                )
            )
    sections.append(
        html.section(
            "Quantizer settings",
            html.definitions((q, json.dumps(p)) for q, p in results["quantizer_params"].items()),
        )
    )
    spec = results["spec"]
    subtitle = (
        f"Samples {spec['samples']}, embeddings {spec['embeddings']} "
        f"({', '.join(results['modalities'])}), seeds {spec['seeds']}, preset {spec['preset']} "
        f"{_overrides(spec) or ''}, main quantizer {spec['main_quantizer']}. "
        "Cells: mean ± sample std over seeds."
    )
    return html.page("Ranking experiment", "".join(sections), subtitle=subtitle)
