"""`psrq train`, `psrq evaluate`, `psrq score`, `psrq experiment` (the ranking stage).

torch and the models are imported inside the commands so `psrq --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

TRAIN_HELP = """Train a ranking model (MCCA, DIN, VBPR, ContentConcat) on prepared samples.

Examples:

  psrq train --samples runs/lastfm2k/data/samples --sids runs/lastfm2k/sids.parquet --out runs/mcca

  psrq train --samples data/samples --sids sids.parquet --model DIN --sid-codebook text --out runs/din-psrq

  psrq train --samples data/samples --embeddings embeddings --model VBPR --out runs/vbpr --preset paper

  psrq train ... --model MCCA --no-mjc        (ablation "w/o MJC"; --no-msc for "w/o MSC")

  psrq train --samples data/samples --sids sids.parquet --out runs/mcca --nproc 2   (DDP on 2 local processes via torchrun)

Writes OUT/model (the model directory), OUT/metrics.json, and OUT/checkpoint after every epoch;
--resume continues an interrupted run from its checkpoint.
"""

EVALUATE_HELP = """Evaluate a trained model on a samples file: All AUC, Cold AUC, Logloss, GAUC.

Examples:

  psrq evaluate --model runs/mcca --samples runs/lastfm2k/data/samples/test.parquet

  psrq evaluate --model runs/mcca --samples data/samples/valid.parquet --sids sids.parquet --json valid.json

With --sids, the file is checked against the semantic IDs the model was trained with (a model
paired with another quantizer's IDs stops with an error).
"""

SCORE_HELP = """Score candidate items for one user's history and print them best first.

Examples:

  psrq score --model runs/mcca --history 289,72,51 --candidates 89,292,498,67

  psrq score --model runs/mcca --history-file hist.txt --candidates 89,new_artist --new-sids new_sids.parquet --json scores.json

Items the model never saw are scored from their semantic IDs (--new-sids: a sids.parquet from the
frozen quantizer, e.g. `MultimodalQuantizer.load(dir).transform(...)`) and content (--new-embeddings),
with the shared out-of-vocabulary ID embedding. Histories longer than the model's maximum keep
the newest items; an empty history is allowed.
"""

EXPERIMENT_HELP = """Run a grid of models x quantizers x seeds and write the paper-style tables.

Examples:

  psrq experiment --samples runs/lastfm2k/data/samples --embeddings runs/lastfm2k/embeddings --out runs/exp

  psrq experiment --samples S --embeddings E --out runs/exp --models MCCA,DIN,DIN+SID --quantizers PSRQ,VQ --seeds 3

Writes OUT/results.json, OUT/results.md, OUT/results.html; semantic IDs are cached in
OUT/cache/sids and finished (run, seed) pairs in OUT/runs, so a rerun resumes.
Models: VBPR, ContentConcat, DIN, DIN+SID (one row per quantizer), MCCA, "MCCA w/o MSC", "MCCA w/o MJC".
"""


def _split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def train_cmd(
    samples: Annotated[Path, typer.Option(help="Samples directory with train/valid/test.parquet.")],
    out: Annotated[Path, typer.Option(help="Output directory (model/, metrics.json, checkpoint/).")],
    sids: Annotated[Path | None, typer.Option(help="sids.parquet (needed by MCCA and DIN --sid-codebook).")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="Directory of <modality>.parquet embeddings (VBPR, ContentConcat).")] = None,
    model: Annotated[str, typer.Option(help="MCCA, DIN, VBPR or ContentConcat.")] = "MCCA",
    sid_codebook: Annotated[str | None, typer.Option(help="DIN: add this codebook's SID embedding (e.g. text).")] = None,
    no_msc: Annotated[bool, typer.Option("--no-msc", help="MCCA ablation: no modal-specific codebooks.")] = False,
    no_mjc: Annotated[bool, typer.Option("--no-mjc", help="MCCA ablation: no modal-joint codebook.")] = False,
    preset: Annotated[str, typer.Option(help="Hyper-parameter preset: default or paper.")] = "default",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's maximum epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience in epochs (0 = off).")] = None,
    min_id_count: Annotated[int | None, typer.Option(help="Items seen fewer times in training share the OOV ID row.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Data-parallel processes (torchrun + DDP, psrq.rank.ddp); --batch-size stays the global batch.")] = 1,
) -> None:
    from rich.console import Console

    from psrq.rank.train import TrainConfig, load_ranking_data, train_model

    if nproc > 1:
        _launch_ddp(nproc, locals())
        return
    _set_threads(threads)
    params: dict = {}
    if sid_codebook:
        params["sid_codebook"] = sid_codebook
    if no_msc:
        params["use_msc"] = False
    if no_mjc:
        params["use_mjc"] = False
    config = TrainConfig.from_preset(
        preset, model=model, model_params=params, seed=seed, epochs=epochs, lr=lr,
        batch_size=batch_size, patience=patience, min_id_count=min_id_count,
    )
    data = load_ranking_data(samples, sids=sids, embeddings=embeddings, max_history=config.max_history, min_id_count=config.min_id_count)
    result = train_model(data, config, out=out, resume=resume)
    _print_metrics(Console(), result.metrics, title=f"{model} (best epoch {result.best_epoch})")
    typer.echo(f"wrote {out / 'model'}")


def _launch_ddp(nproc: int, options: dict) -> None:
    """`psrq train --nproc N`: the same options, run by torchrun on N local processes."""
    from psrq.errors import TrainingError
    from psrq.rank.ddp import launch

    params = {}
    if options["sid_codebook"]:
        params["sid_codebook"] = options["sid_codebook"]
    if options["no_msc"]:
        params["use_msc"] = False
    if options["no_mjc"]:
        params["use_mjc"] = False
    argv = ["--samples", str(options["samples"]), "--out", str(options["out"]), "--model", options["model"],
            "--model-params", json.dumps(params), "--preset", options["preset"], "--seed", str(options["seed"])]
    for name in ("sids", "embeddings", "epochs", "lr", "batch_size", "patience", "min_id_count", "threads"):
        if options[name] is not None:
            argv += [f"--{name.replace('_', '-')}", str(options[name])]
    if options["resume"]:
        argv.append("--resume")
    code = launch(nproc, argv)
    if code != 0:
        raise TrainingError(f"distributed training on {nproc} processes failed (exit code {code}); see the messages above")
    typer.echo(f"wrote {options['out'] / 'model'}")


def _print_metrics(console, metrics: dict, title: str) -> None:
    from rich.table import Table

    from psrq.rank.metrics import METRIC_NAMES

    table = Table(title=title)
    table.add_column("split")
    for name in METRIC_NAMES.values():
        table.add_column(name, justify="right")
    table.add_column("samples (cold)", justify="right")
    for split, m in metrics.items():
        table.add_row(split, *[f"{m[k]:.4f}" for k in METRIC_NAMES], f"{m['n']} ({m['n_cold']})")
    console.print(table)


def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Model directory (or a `psrq train` output directory).")],
    samples: Annotated[list[Path], typer.Option(help="Samples Parquet file(s) to evaluate; repeatable.")],
    sids: Annotated[Path | None, typer.Option(help="Check this sids.parquet against the model's semantic IDs.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the metrics as JSON.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
) -> None:
    from rich.console import Console

    from psrq.artifacts import write_json
    from psrq.rank.train import Ranker

    _set_threads(threads)
    ranker = Ranker.load(model)
    if sids is not None:
        ranker.check_sids(sids)
    metrics = {str(p): ranker.evaluate(p) for p in samples}
    _print_metrics(Console(), metrics, title=f"{ranker.spec['model']} ({ranker.path})")
    if json_out is not None:
        write_json(json_out, metrics)


def _new_item_features(new_sids: Path | None, new_embeddings: Path | None) -> tuple[dict, dict]:
    from psrq.rank.batches import read_embeddings_dir, read_sids

    sid_map: dict[str, dict] = {}
    if new_sids is not None:
        ids, codes, _ = read_sids(new_sids)
        for i, item in enumerate(ids):
            sid_map[str(item)] = {cb: mat[i] for cb, mat in codes.items()}
    content_map: dict[str, dict] = {}
    for mod, (ids, X) in read_embeddings_dir(new_embeddings).items():
        for i, item in enumerate(ids):
            content_map.setdefault(str(item), {})[mod] = X[i]
    return sid_map, content_map


def score_cmd(
    model: Annotated[Path, typer.Option(help="Model directory (or a `psrq train` output directory).")],
    candidates: Annotated[str, typer.Option(help="Comma-separated candidate item ids.")],
    history: Annotated[str, typer.Option(help="Comma-separated history item ids, oldest first (may be empty).")] = "",
    history_file: Annotated[Path | None, typer.Option(help="File with one history item id per line (instead of --history).")] = None,
    new_sids: Annotated[Path | None, typer.Option(help="sids.parquet with semantic IDs of items the model never saw.")] = None,
    new_embeddings: Annotated[Path | None, typer.Option(help="Embeddings directory for items the model never saw.")] = None,
    top: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write all scores as JSON.")] = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from psrq.artifacts import write_json
    from psrq.errors import InputError
    from psrq.rank.train import Ranker

    ranker = Ranker.load(model)
    hist = _split_list(history)
    if history_file is not None:
        if not history_file.is_file():
            raise InputError(f"history file not found: {history_file}")
        hist = [line.strip() for line in history_file.read_text().splitlines() if line.strip()]
    sid_map, content_map = _new_item_features(new_sids, new_embeddings)
    if new_sids is not None and ranker.model.codebooks:
        ranker.check_sids(new_sids)
    ranked = ranker.score(hist, _split_list(candidates), new_sids=sid_map, new_content=content_map)
    unknown_hist = [h for h in hist if not ranker.tables.knows([h])[0] and h not in sid_map and h not in content_map]
    console = Console()
    if unknown_hist:
        console.print(f"[yellow]note[/yellow]: {len(unknown_hist)} history item(s) unknown to the model, used as OOV: {unknown_hist[:5]}")
    if len(hist) > ranker.max_history:
        console.print(f"[yellow]note[/yellow]: history has {len(hist)} items; the newest {ranker.max_history} are used")
    table = Table(title=f"{ranker.spec['model']}: {len(ranked)} candidates")
    for col in ("rank", "item_id", "score", "status"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for i, r in enumerate(ranked[:top], 1):
        table.add_row(str(i), r["item_id"], f"{r['score']:.4f}", r["status"])
    console.print(table)
    if json_out is not None:
        write_json(json_out, {"history": hist, "ranked": ranked})


def experiment_cmd(
    samples: Annotated[Path, typer.Option(help="Samples directory with train/valid/test.parquet.")],
    embeddings: Annotated[Path, typer.Option(help="Directory of <modality>.parquet embeddings.")],
    out: Annotated[Path, typer.Option(help="Output directory (results.json/.md/.html, caches).")],
    models: Annotated[str, typer.Option(help="Comma-separated runs.")] = ",".join(["VBPR", "ContentConcat", "DIN", "DIN+SID", "MCCA", "MCCA w/o MSC", "MCCA w/o MJC"]),
    quantizers: Annotated[str, typer.Option(help="Quantizers for the DIN+SID rows.")] = "VQ,PQ,RQKMeans,RQVAE,PSRQ",
    main_quantizer: Annotated[str, typer.Option(help="Quantizer for MCCA and its ablations.")] = "PSRQ",
    modalities: Annotated[str | None, typer.Option(help="Comma-separated modalities (default: all files in --embeddings).")] = None,
    quantizer_params: Annotated[str | None, typer.Option(help='JSON {"PSRQ": {"codebook_size": 128}, ...} overriding the defaults.')] = None,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..seeds-1).")] = 5,
    preset: Annotated[str, typer.Option(help="Training preset: default or paper.")] = "default",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's maximum epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    report_only: Annotated[bool, typer.Option("--report-only", help="Train nothing: tables from the finished (run, seed) pairs only.")] = False,
) -> None:
    from psrq.errors import ConfigError
    from psrq.rank.experiment import ExperimentSpec, run_experiment

    try:
        qparams = json.loads(quantizer_params) if quantizer_params else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"--quantizer-params is not valid JSON: {e}") from e
    overrides = {k: v for k, v in {"epochs": epochs, "lr": lr}.items() if v is not None}
    spec = ExperimentSpec(
        samples=str(samples), embeddings=str(embeddings), modalities=_split_list(modalities) or None,
        models=_split_list(models), quantizers=_split_list(quantizers), main_quantizer=main_quantizer,
        quantizer_params=qparams, seeds=list(range(seeds)), preset=preset, train_overrides=overrides,
    )
    run_experiment(spec, out, threads=threads, train_missing=not report_only)
    typer.echo(f"wrote {out / 'results.md'}, {out / 'results.html'}, {out / 'results.json'}")


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train_cmd)
    app.command("evaluate", help=EVALUATE_HELP)(evaluate_cmd)
    app.command("score", help=SCORE_HELP)(score_cmd)
    app.command("experiment", help=EXPERIMENT_HELP)(experiment_cmd)
