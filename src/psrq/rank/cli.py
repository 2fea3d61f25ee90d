"""`psrq train`, `psrq evaluate`, `psrq score`, `psrq experiment` (the ranking stage).

torch and the models are imported inside the commands so `psrq --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from psrq.cli_common import RankerModelOpt, ThreadsOpt, WaitOpt
from psrq.quantize.registry import KINDS as QUANTIZER_KINDS
from psrq.rank.registry import PAPER_MODELS

SamplesDirOpt = Annotated[
    Path, typer.Option("--samples", help="Samples directory with train/valid/test.parquet.")
]

# Training options that `psrq train` and `psrq experiment` both take (TrainingSettings fields).
PatienceOpt = Annotated[
    int | None, typer.Option(min=0, help="Early-stopping patience in epochs (0 = off).")
]
MinIdCountOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="Items seen fewer times in training share the OOV ID row (default: the model family's).",
    ),
]
WeightDecayOpt = Annotated[
    float | None, typer.Option(min=0.0, help="Adam's L2 on the dense weights (default: 0).")
]


TRAIN_HELP = """Train a ranking model (MCCA, DIN, VBPR, ContentConcat, SimTierMAKE, QARM) on prepared samples.

Examples:

  psrq train --samples runs/lastfm2k/data/samples --sids runs/lastfm2k/sids.parquet --out runs/mcca

  psrq train --samples data/samples --sids sids.parquet --model DIN --sid-codebook text --out runs/din-psrq

  psrq train --samples data/samples --embeddings embeddings --model VBPR --out runs/vbpr --preset paper

  psrq train ... --model MCCA --no-mjc        (ablation "w/o MJC"; --no-msc for "w/o MSC")

  psrq train ... --model MCCA --dot --content --embeddings E   (the "MCCA+content+dot" variant, beyond the paper)

  psrq train ... --embedding-l2 0.01 --dropout 0.2   (regularisation; default: the model family's, docs/ranking.md)

  psrq train --samples data/samples --embeddings embeddings --model SimTierMAKE --model-params '{"make_epochs": 3, "n_tiers": 10}' --out runs/simtier

  psrq train --samples data/samples --embeddings embeddings --model QARM --model-params '{"vq_k": 25, "rq_levels": 3}' --out runs/qarm

  psrq train --samples data/samples --sids sids.parquet --out runs/mcca --nproc 2   (DDP on 2 local processes via torchrun)

Writes OUT/model (the model directory), OUT/metrics.json, and OUT/checkpoint after every epoch;
--resume continues an interrupted run from its checkpoint.
"""

EVALUATE_HELP = """Evaluate a trained model on a samples file: All AUC, Cold AUC, Logloss, GAUC.

Examples:

  psrq evaluate --model runs/mcca --samples runs/lastfm2k/data/samples/test.parquet

  psrq evaluate --model runs/mcca --samples data/samples/valid.parquet --sids sids.parquet --out valid.json

With --sids, the file is checked against the semantic IDs the model was trained with (a model
paired with another quantizer's IDs stops with an error).
"""

SCORE_HELP = """Score candidate items for one user's history and print them best first.

Examples:

  psrq score --model runs/mcca --history 289,72,51 --candidates 89,292,498,67

  psrq score --model runs/mcca --history-file hist.txt --candidates 89,new_artist --new-sids new_sids.parquet --out scores.json

  psrq score --model runs/mcca --history-file hist.txt --candidates-file candidates.txt --top 0

Inline lists are comma-separated with spaces around each ID ignored; IDs that contain commas or
surrounding spaces need the -file options (one ID a line, taken verbatim, or Parquet with
item_id). Duplicate candidates are scored once. --top 0 prints every row.

Items the model never saw are scored from their semantic IDs (--new-sids: a sids.parquet from the
frozen quantizer, e.g. `MultimodalQuantizer.load(dir).transform(...)`) and content (--new-embeddings),
with the shared out-of-vocabulary ID embedding. A candidate with neither (known by nothing) gets
the OOV-only score: it is listed last with a warning, or ranked with --rank-unknown. Histories longer than the model's maximum keep
the newest items; an empty history is allowed.
"""

EXPERIMENT_HELP = """Run a grid of models x quantizers x seeds and write the paper-style tables.

Examples:

  psrq experiment --samples runs/lastfm2k/data/samples --embeddings runs/lastfm2k/embeddings --out runs/exp

  psrq experiment --samples S --embeddings E --out runs/exp --models MCCA,DIN,DIN+SID --quantizers PSRQ,VQ --seeds 3

Writes OUT/results.json, OUT/results.md, OUT/results.html; semantic IDs are cached in
OUT/cache/sids and finished (run, seed) pairs in OUT/runs, so a rerun resumes.
Models: VBPR, SimTier+MAKE, ContentConcat, DIN, QARM, DIN+SID (one row per quantizer), MCCA, "MCCA w/o MSC", "MCCA w/o MJC";
beyond the paper: DIN+SID+dot, DIN+SID+content, DIN+SID+content+dot, MCCA+dot, MCCA+content,
MCCA+content+dot (main quantizer only; reported in their own table).
"""


def _split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def train_cmd(
    samples: SamplesDirOpt,
    out: Annotated[
        Path, typer.Option(help="Output directory (model/, metrics.json, checkpoint/).")
    ],
    sids: Annotated[
        Path | None, typer.Option(help="sids.parquet (needed by MCCA and DIN --sid-codebook).")
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            help="Directory of <modality>.parquet embeddings (VBPR, ContentConcat, SimTierMAKE, QARM)."
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="MCCA, DIN, VBPR, ContentConcat, SimTierMAKE or QARM.")
    ] = "MCCA",
    model_params: Annotated[
        str | None,
        typer.Option(
            help="JSON object of model options, e.g. '{\"make_epochs\": 3}' (docs/ranking.md)."
        ),
    ] = None,
    sid_codebook: Annotated[
        str | None, typer.Option(help="DIN: add this codebook's SID embedding (e.g. text).")
    ] = None,
    no_msc: Annotated[
        bool, typer.Option("--no-msc", help="MCCA ablation: no modal-specific codebooks.")
    ] = False,
    no_mjc: Annotated[
        bool, typer.Option("--no-mjc", help="MCCA ablation: no modal-joint codebook.")
    ] = False,
    dot: Annotated[
        bool,
        typer.Option(
            "--dot", help="MCCA/DIN, beyond the paper: add a VBPR-style dot-product head."
        ),
    ] = False,
    content: Annotated[
        bool,
        typer.Option(
            "--content",
            help="MCCA/DIN, beyond the paper: projected content as an extra item feature (needs --embeddings).",
        ),
    ] = False,
    preset: Annotated[
        str, typer.Option(help="Hyper-parameter preset: default or paper.")
    ] = "default",
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Override the preset's maximum epochs (>= 1).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate (> 0).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override the batch size.")] = None,
    patience: PatienceOpt = None,
    min_id_count: MinIdCountOpt = None,
    weight_decay: WeightDecayOpt = None,
    min_sid_coverage: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Fail when fewer than this share of the training items have a semantic ID in --sids (0 = never fail).",
        ),
    ] = 0.5,
    embedding_l2: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="L2 on the embedding rows each batch looks up (default: the model family's).",
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.99, help="Dropout in the tower (default: the model family's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Training arithmetic: fp32 (default), bf16 (autocast, CPU or CUDA) or fp16 (CUDA only); docs/scaling.md.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.")] = False,
    threads: ThreadsOpt = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Data-parallel processes (torchrun + DDP, psrq.rank.ddp); --batch-size stays the global batch.",
        ),
    ] = 1,
    wait: WaitOpt = False,
) -> None:
    import math

    import numpy as np
    from rich.console import Console

    from psrq.config import TrainingSettings, with_overrides
    from psrq.errors import ConfigError, InputError
    from psrq.outputs import Output, claim_outputs
    from psrq.rank.batches import sid_coverage
    from psrq.rank.train import load_ranking_data, train_model

    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {lr}")
    outputs = (
        Output(out, "dir", "--out"),
        Output(out / "model", "model_dir", "--out", lock=False),
        Output(out / "checkpoint", "model_dir", "--out", lock=False),
        Output(out / "metrics.json", "file", "--out", lock=False),
    )
    params: dict = _json_object(model_params, "--model-params")
    if sid_codebook:
        params["sid_codebook"] = sid_codebook
    if no_msc:
        params["use_msc"] = False
    if no_mjc:
        params["use_mjc"] = False
    if dot:
        params["dot"] = True
    if content:
        params["content"] = True
    if precision is not None:  # refused here, before any process starts
        import torch

        from psrq.rank.train import PRECISIONS, check_precision

        if precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {list(PRECISIONS)}, got {precision!r}")
        # Only psrq.rank.ddp trains on CUDA (NCCL, cuda:LOCAL_RANK); this process trains on the CPU.
        check_precision(precision, "cuda" if nproc > 1 and torch.cuda.is_available() else "cpu")
    with claim_outputs(*outputs, wait=wait):
        if nproc > 1:
            _launch_ddp(nproc, locals(), params)
            return
        _set_threads(threads)
        settings = with_overrides(
            TrainingSettings(),
            {
                "preset": preset,
                "epochs": epochs,
                "lr": lr,
                "batch_size": batch_size,
                "patience": patience,
                "min_id_count": min_id_count,
                "weight_decay": weight_decay,
                "embedding_l2": embedding_l2,
                "dropout": dropout,
                "precision": precision,
            },
        )
        config = settings.train_config(model=model, model_params=params, seed=seed)
        data = load_ranking_data(
            samples,
            sids=sids,
            embeddings=embeddings,
            max_history=config.max_history,
            min_id_count=config.min_id_count,
        )
        console = Console(stderr=True)
        if sids is not None:
            train = data.splits["train"]
            coverage = sid_coverage(
                data.tables,
                np.concatenate([train.target.numpy(), train.history.numpy().reshape(-1)]),
            )
            console.print(
                f"semantic-ID coverage: {coverage:.1%} of the training items have SIDs in {sids}"
            )
            if coverage < min_sid_coverage:
                raise InputError(
                    f"--sids {sids} covers only {coverage:.1%} of the items in the training samples "
                    f"(--min-sid-coverage {min_sid_coverage:g}): are these the SIDs of this catalogue? "
                    "Lower --min-sid-coverage to train anyway"
                )
        for name, split in data.splits.items():
            warning = label_balance_warning(split.label.numpy(), f"{samples}/{name}.parquet")
            if warning:
                console.print(f"[yellow]warning[/yellow]: {warning}")
        result = train_model(data, config, out=out, resume=resume)
        _print_metrics(Console(), result.metrics, title=f"{model} (best epoch {result.best_epoch})")
        typer.echo(f"wrote {out / 'model'}")


def label_balance_warning(labels, source: str) -> str | None:
    """A sentence when a split has one label class only (AUC and GAUC are then undefined)."""
    import numpy as np

    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() != labels.max():
        return None
    kind = "positive" if labels[0] == 1 else "negative"
    return f"{source}: all {len(labels):,} labels are {kind}; AUC and GAUC are undefined (null in JSON)"


def _json_object(text: str | None, option: str, example: str = '{"make_epochs": 3}') -> dict:
    from psrq.errors import ConfigError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{option} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ConfigError(
            f"{option} must be a JSON object like '{example}', got {type(value).__name__}"
        )
    return value


def _launch_ddp(nproc: int, options: dict, params: dict) -> None:
    """`psrq train --nproc N`: the same options, run by torchrun on N local processes."""
    from psrq.errors import TrainingError
    from psrq.rank.ddp import launch

    argv = [
        "--samples",
        str(options["samples"]),
        "--out",
        str(options["out"]),
        "--model",
        options["model"],
        "--model-params",
        json.dumps(params),
        "--preset",
        options["preset"],
        "--seed",
        str(options["seed"]),
    ]
    for name in (
        "sids",
        "embeddings",
        "epochs",
        "lr",
        "batch_size",
        "patience",
        "min_id_count",
        "weight_decay",
        "embedding_l2",
        "dropout",
        "precision",
        "threads",
    ):
        if options[name] is not None:
            argv += [f"--{name.replace('_', '-')}", str(options[name])]
    if options["resume"]:
        argv.append("--resume")
    code = launch(nproc, argv)
    if code != 0:
        raise TrainingError(
            f"distributed training on {nproc} processes failed (exit code {code}); see the messages above"
        )
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
        table.add_row(
            split, *[_fmt_metric(m.get(k)) for k in METRIC_NAMES], f"{m['n']} ({m['n_cold']})"
        )
    console.print(table)


def _fmt_metric(value) -> str:
    """4 decimals; "undefined" for a metric that is NaN/None (e.g. AUC with one label class)."""
    import math

    return (
        "undefined"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.4f}"
    )


def evaluate_cmd(
    model: RankerModelOpt,
    samples: Annotated[
        list[Path], typer.Option(help="Samples Parquet file(s) to evaluate; repeatable.")
    ],
    sids: Annotated[
        Path | None, typer.Option(help="Check this sids.parquet against the model's semantic IDs.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--out", help="Also write the metrics as JSON to this file.")
    ] = None,
    threads: ThreadsOpt = None,
    wait: WaitOpt = False,
) -> None:
    from rich.console import Console

    from psrq.artifacts import write_json
    from psrq.errors import InputError
    from psrq.outputs import Output, claim_outputs
    from psrq.serve.ranker import Ranker

    for p in samples:
        if p.is_dir():
            found = sorted(x.name for x in p.glob("*.parquet"))
            raise InputError(
                f"--samples {p} is a directory; evaluate expects sample Parquet files, e.g. "
                f"--samples {p / 'test.parquet'}"
                + (f" (found {', '.join(found)})" if found else "")
            )
    with claim_outputs(
        Output(json_out, "file", "--out") if json_out is not None else None, wait=wait
    ):
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


def read_id_list(path: Path, option: str) -> list[str]:
    """Item IDs from a file: Parquet (column item_id, or its only column) or text, one ID a line.

    Text lines are taken verbatim (only the line break is removed; blank lines are skipped), so
    IDs with commas or spaces survive.
    """
    from psrq.errors import InputError

    if not path.is_file():
        raise InputError(f"{option} {path}: file not found")
    if path.suffix.lower() == ".parquet":
        from psrq.formats.ids import read_parquet as read_table

        table = read_table(path)
        names = table.column_names
        col = "item_id" if "item_id" in names else (names[0] if len(names) == 1 else None)
        if col is None:
            raise InputError(
                f"{option} {path}: needs an item_id column (or exactly one column); found {names}"
            )
        values = table.column(col).to_pylist()
        if any(v is None for v in values):
            raise InputError(
                f"{option} {path}: column {col!r} has a null at row {values.index(None)}"
            )
        return [str(v) for v in values]
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise InputError(
            f"{option} {path}: not a UTF-8 text file with one item ID per line ({e})"
        ) from None
    return [line for line in text.splitlines() if line != ""]


def split_inline_ids(text: str, option: str, catalogue_has_ambiguous: bool) -> list[str]:
    """Comma-separated IDs on the command line, spaces around each ignored.

    Refused (InputError naming the option) when the model's catalogue holds IDs with commas or
    surrounding spaces (inline lists cannot name those unambiguously) or an entry is empty.
    """
    from psrq.errors import InputError

    if not text.strip():
        return []
    if catalogue_has_ambiguous:
        raise InputError(
            f"{option}: this model's catalogue has item IDs containing commas or surrounding spaces, so an "
            f"inline comma list is ambiguous; pass {option}-file (one ID a line, or Parquet)"
        )
    parts = [t.strip() for t in text.split(",")]
    if any(p == "" for p in parts):
        raise InputError(
            f"{option} {text!r}: empty item ID between commas; pass {option}-file for IDs with commas"
        )
    return parts


def _ambiguous(ids) -> bool:
    return any("," in i or i != i.strip() for i in ids)


def score_cmd(
    model: RankerModelOpt,
    candidates: Annotated[
        str | None,
        typer.Option(help="Comma-separated candidate item ids (spaces around each ignored)."),
    ] = None,
    candidates_file: Annotated[
        Path | None,
        typer.Option(
            help="Candidates from a file: one item id per line (verbatim), or Parquet with item_id."
        ),
    ] = None,
    history: Annotated[
        str, typer.Option(help="Comma-separated history item ids, oldest first (may be empty).")
    ] = "",
    history_file: Annotated[
        Path | None,
        typer.Option(
            help="History from a file: one item id per line (verbatim), or Parquet with item_id."
        ),
    ] = None,
    new_sids: Annotated[
        Path | None,
        typer.Option(help="sids.parquet with semantic IDs of items the model never saw."),
    ] = None,
    new_embeddings: Annotated[
        Path | None, typer.Option(help="Embeddings directory for items the model never saw.")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="Rows to print (0 = all).")] = 20,
    rank_unknown: Annotated[
        bool,
        typer.Option(
            "--rank-unknown",
            help="Rank candidates known by nothing (OOV features only) among the others instead of listing them last.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--out", help="Write all scores as JSON to this file.")
    ] = None,
    wait: WaitOpt = False,
) -> None:
    from psrq.errors import InputError
    from psrq.outputs import Output, claim_outputs

    if (candidates is None) == (candidates_file is None):
        raise InputError("give exactly one of --candidates ID,ID,... or --candidates-file FILE")
    if history and history_file is not None:
        raise InputError("give at most one of --history and --history-file")
    with claim_outputs(
        Output(json_out, "file", "--out") if json_out is not None else None, wait=wait
    ):
        _score(
            model,
            candidates,
            candidates_file,
            history,
            history_file,
            new_sids,
            new_embeddings,
            top,
            rank_unknown,
            json_out,
        )


def _score(
    model,
    candidates,
    candidates_file,
    history,
    history_file,
    new_sids,
    new_embeddings,
    top,
    rank_unknown,
    json_out,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from psrq.artifacts import write_json
    from psrq.errors import InputError
    from psrq.serve.ranker import Ranker

    ranker = Ranker.load(model)
    if new_sids is not None and ranker.model.codebooks:
        ranker.check_sids(new_sids)
    sid_map, content_map = _new_item_features(new_sids, new_embeddings)
    ambiguous = _ambiguous(ranker.tables.item_ids[2:].astype(str).tolist()) or _ambiguous(
        list(sid_map) + list(content_map)
    )
    hist = (
        read_id_list(history_file, "--history-file")
        if history_file is not None
        else split_inline_ids(history, "--history", ambiguous)
    )
    cands = (
        read_id_list(candidates_file, "--candidates-file")
        if candidates_file is not None
        else split_inline_ids(candidates, "--candidates", ambiguous)
    )
    if not cands:
        raise InputError("no candidate items to score")
    unique = list(dict.fromkeys(cands))
    n_dupes = len(cands) - len(unique)
    console = Console()
    if n_dupes:
        console.print(
            f"[yellow]note[/yellow]: {n_dupes} duplicate candidate(s) dropped; each item is scored once"
        )
    ranked = ranker.score(hist, unique, new_sids=sid_map, new_content=content_map)
    unknown = [r["item_id"] for r in ranked if r["status"] == "unknown (OOV only)"]
    if unknown and not rank_unknown:
        # Known by nothing, such items all get the same OOV-only score: listing them first would
        # be an artefact of that score, so they go last unless --rank-unknown (a stable sort).
        ranked = sorted(ranked, key=lambda r: r["status"] == "unknown (OOV only)")
    if unknown:
        where = (
            "ranked among the others (--rank-unknown)"
            if rank_unknown
            else "listed last, after every ranked item"
        )
        console.print(
            f"[yellow]warning[/yellow]: {len(unknown)} candidate(s) unknown to the model and without --new-sids/--new-embeddings "
            f"features, scored from the shared OOV embedding only and {where}: {unknown[:5]}"
        )
    unknown_hist = [
        h
        for h in hist
        if not ranker.tables.knows([h])[0] and h not in sid_map and h not in content_map
    ]
    if unknown_hist:
        console.print(
            f"[yellow]note[/yellow]: {len(unknown_hist)} history item(s) unknown to the model, used as OOV: {unknown_hist[:5]}"
        )
    if len(hist) > ranker.max_history:
        console.print(
            f"[yellow]note[/yellow]: history has {len(hist)} items; the newest {ranker.max_history} are used"
        )
    table = Table(title=f"{ranker.spec['model']}: {len(ranked)} candidates")
    for col in ("rank", "item_id", "score", "status"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    shown = ranked if top == 0 else ranked[:top]
    for i, r in enumerate(shown, 1):
        table.add_row(str(i), r["item_id"], f"{r['score']:.4f}", r["status"])
    console.print(table)
    if json_out is not None:
        write_json(
            json_out,
            {
                "history": hist,
                "ranked": ranked,
                "unknown_candidates": unknown,
                "duplicates_dropped": n_dupes,
                "unknown_ranked": bool(rank_unknown),
            },
        )


def experiment_cmd(
    samples: SamplesDirOpt,
    embeddings: Annotated[Path, typer.Option(help="Directory of <modality>.parquet embeddings.")],
    out: Annotated[Path, typer.Option(help="Output directory (results.json/.md/.html, caches).")],
    models: Annotated[str, typer.Option(help="Comma-separated runs.")] = ",".join(PAPER_MODELS),
    quantizers: Annotated[str, typer.Option(help="Quantizers for the DIN+SID rows.")] = ",".join(
        QUANTIZER_KINDS
    ),
    main_quantizer: Annotated[
        str, typer.Option(help="Quantizer for MCCA and its ablations.")
    ] = "PSRQ",
    sid_codebook: Annotated[
        str | None,
        typer.Option(
            help="Codebook of the DIN+SID rows: a modality or 'joint' (default: the first modality)."
        ),
    ] = None,
    modalities: Annotated[
        str | None,
        typer.Option(help="Comma-separated modalities (default: all files in --embeddings)."),
    ] = None,
    quantizer_params: Annotated[
        str | None,
        typer.Option(help='JSON {"PSRQ": {"codebook_size": 128}, ...} overriding the defaults.'),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..seeds-1).")] = 5,
    preset: Annotated[str, typer.Option(help="Training preset: default or paper.")] = "default",
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Override the preset's maximum epochs.")
    ] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Override the learning rate.")] = None,
    embedding_l2: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="L2 on the embedding rows each batch looks up (default: the model family's).",
        ),
    ] = None,
    dropout: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.99, help="Dropout in the tower (default: the model family's)."),
    ] = None,
    patience: PatienceOpt = None,
    min_id_count: MinIdCountOpt = None,
    weight_decay: WeightDecayOpt = None,
    threads: ThreadsOpt = None,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only", help="Train nothing: tables from the finished (run, seed) pairs only."
        ),
    ] = False,
    wait: WaitOpt = False,
) -> None:
    from psrq.config import ExperimentConfig, with_overrides
    from psrq.outputs import Output, claim_outputs
    from psrq.rank.experiment import run_experiment

    qparams = _json_object(
        quantizer_params, "--quantizer-params", example='{"PSRQ": {"codebook_size": 128}}'
    )
    spec = ExperimentConfig(
        samples=str(samples),
        embeddings=str(embeddings),
        modalities=_split_list(modalities) or None,
        models=_split_list(models),
        quantizers=_split_list(quantizers),
        main_quantizer=main_quantizer,
        sid_codebook=sid_codebook,
        quantizer_params=qparams,
        seeds=list(range(seeds)),
    )
    spec = with_overrides(
        spec,
        {
            "preset": preset,
            "epochs": epochs,
            "lr": lr,
            "embedding_l2": embedding_l2,
            "dropout": dropout,
            "patience": patience,
            "min_id_count": min_id_count,
            "weight_decay": weight_decay,
        },
    )
    outputs = [Output(out, "dir", "--out")] + [
        Output(out / f"results.{ext}", "file", "--out", lock=False)
        for ext in ("json", "md", "html")
    ]
    with claim_outputs(*outputs, wait=wait):
        run_experiment(spec, out, threads=threads, train_missing=not report_only)
    typer.echo(f"wrote {out / 'results.md'}, {out / 'results.html'}, {out / 'results.json'}")


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train_cmd)
    app.command("evaluate", help=EVALUATE_HELP)(evaluate_cmd)
    app.command("score", help=SCORE_HELP)(score_cmd)
    app.command("experiment", help=EXPERIMENT_HELP)(experiment_cmd)
