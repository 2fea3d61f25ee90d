"""The ID-quality report: `quality.json` + one self-contained `report.html` comparing quantizers.

results = {name: evaluate_ids(X, codes[name], q[name]) for name in names}
write_id_report(results, "out/report", X_by_name={...}, codes_by_name={...}, title="Text SIDs")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psrq.artifacts import write_json, write_parquet, write_text
from psrq.errors import InputError
from psrq.report import html, plots

# (key in results[name]["levels"][l], display label) for the per-level line plots.
LEVEL_PLOT_METRICS: list[tuple[str, str]] = [
    ("recon_cos", "reconstruction cosine (first l levels)"),
    ("coherence_code_lift", "coherence lift, level's own code"),
    ("coherence_prefix_lift", "coherence lift, prefix up to l"),
    ("neighbor_prefix_recall", "10-NN sharing the prefix up to l"),
    ("prefix_unique_ratio", "distinct prefixes / items"),
    ("perplexity", "perplexity of code usage"),
    ("utilisation", "used codes / k"),
    ("gini", "Gini of code sizes"),
    ("largest_code_share", "largest code's share of items"),
    ("nmi_next", "NMI(level l, level l+1)"),
]

LEVEL_TABLE_COLUMNS: list[tuple[str, str]] = [
    ("level", "level"),
    ("k", "k"),
    ("used_codes", "used"),
    ("utilisation", "util."),
    ("perplexity", "perplexity"),
    ("largest_code_share", "largest"),
    ("gini", "Gini"),
    ("n_prefixes", "prefixes"),
    ("prefix_unique_ratio", "prefix uniq."),
    ("nmi_next", "NMI(l,l+1)"),
    ("coherence_code", "coh. code"),
    ("coherence_prefix", "coh. prefix"),
    ("coherence_baseline", "coh. random"),
    ("coherence_code_lift", "lift code"),
    ("coherence_prefix_lift", "lift prefix"),
    ("neighbor_prefix_recall", "NN recall"),
    ("neighbor_prefix_chance", "NN chance"),
    ("recon_cos", "recon cos"),
    ("recon_rel_error", "rel. error"),
]

SUMMARY_HEADERS: dict[str, str] = {
    "name": "quantizer",
    "codebook_sizes": "k per level",
    "recon_cos": "recon cos (all levels)",
    "recon_rel_error": "rel. error",
    "unique_ratio": "unique IDs",
    "items_per_id_max": "max items/ID",
    "items_per_id_p99": "p99 items/ID",
    "nmi_12": "NMI(L1,L2)",
    "lift_code_2": "coh. lift L2 code",
    "lift_prefix_last": "coh. lift full prefix",
    "nn_recall_1": "NN recall L1",
    "nn_recall_full": "NN recall full ID",
}

GLOSSARY: list[tuple[str, str]] = [
    (
        "recon cos / rel. error",
        "mean cos(x, x_hat_l) and ||X - X_hat_l||_F / ||X||_F, where x_hat_l decodes only the first l levels (needs the quantizer).",
    ),
    (
        "coherence (coh.)",
        "mean cosine, in the original embedding space, between an item and the other items of its group; 'code' groups by the level's own code, 'prefix' by the code tuple up to that level. Items alone in their group are skipped.",
    ),
    (
        "coh. random",
        "the same quantity for a random grouping with the same group sizes: exactly the mean pairwise cosine of the items.",
    ),
    (
        "lift",
        "(coherence - random) / (1 - random): 0 = no better than chance, 1 = group-mates point the same way. A low lift for a deep level's own code is the paper's 'semantic drift'.",
    ),
    (
        "NN recall",
        "share of each sampled item's 10 nearest embedding neighbours (exact cosine) that share its code prefix up to the level; 'NN chance' is the same share for random neighbours.",
    ),
    (
        "util. / perplexity / largest / Gini",
        "used codes / k; 2^entropy of code usage (effective number of codes); share of items in the biggest code; Gini of code sizes over all k slots (0 = perfectly even).",
    ),
    ("prefixes / prefix uniq.", "distinct code tuples up to the level, and that count / items."),
    (
        "NMI(l,l+1)",
        "normalised mutual information between consecutive levels' codes: 1 = the next level only renames this one.",
    ),
    (
        "unique IDs / items per ID",
        "distinct full tuples / items; the largest and 99th-percentile number of items sharing a full tuple.",
    ),
]


def _level(result: Mapping[str, Any], level: int, key: str) -> Any:
    levels = result["levels"]
    return levels[level - 1].get(key) if len(levels) >= level else None


def summary_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per quantizer with the headline numbers (keys as in SUMMARY_HEADERS)."""
    rows = []
    for name, r in results.items():
        last = r["levels"][-1]
        rows.append(
            {
                "name": name,
                "codebook_sizes": "x".join(str(k) for k in r["codebook_sizes"]),
                "recon_cos": last.get("recon_cos"),
                "recon_rel_error": last.get("recon_rel_error"),
                "unique_ratio": r["ids"]["unique_ratio"],
                "items_per_id_max": r["ids"]["items_per_id_max"],
                "items_per_id_p99": r["ids"]["items_per_id_p99"],
                "nmi_12": _level(r, 1, "nmi_next"),
                "lift_code_2": _level(r, 2, "coherence_code_lift"),
                "lift_prefix_last": last.get("coherence_prefix_lift"),
                "nn_recall_1": _level(r, 1, "neighbor_prefix_recall"),
                "nn_recall_full": r["ids"].get("neighbor_recall"),
            }
        )
    return rows


def _check_names(
    results: Mapping[str, Any],
    X_by_name: Mapping[str, np.ndarray],
    codes_by_name: Mapping[str, np.ndarray],
    x_name: str = "X_by_name",
) -> None:
    if not results:
        raise InputError("write_id_report needs at least one quantizer's results")
    for name, result in results.items():
        for what, mapping in ((x_name, X_by_name), ("codes_by_name", codes_by_name)):
            if name not in mapping:
                raise InputError(
                    f"quantizer {name!r} is in results but not in {what} (has: {sorted(mapping)})"
                )
        X, codes = np.asarray(X_by_name[name]), np.asarray(codes_by_name[name])
        if codes.ndim != 2 or X.ndim != 2 or len(X) != len(codes):
            raise InputError(
                f"quantizer {name!r}: X {X.shape} and codes {codes.shape} must be [n, d] and [n, levels] with the same n"
            )
        if "levels" not in result or "ids" not in result:
            raise InputError(
                f"results[{name!r}] is not an evaluate_ids() result (no 'levels'/'ids')"
            )


def _resolve_groups(
    results: Mapping[str, Any], plot_groups: Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    if plot_groups is None:
        return {"all quantizers": list(results)}
    groups = {}
    for group, names in plot_groups.items():
        unknown = [n for n in names if n not in results]
        if unknown:
            raise InputError(f"plot group {group!r} names {unknown}, which are not in results")
        if names:
            groups[group] = list(names)
    if not groups:
        raise InputError("plot_groups is empty: give at least one group with a quantizer in it")
    return groups


def _level_table(result: Mapping[str, Any]) -> str:
    keys = [
        k for k, _ in LEVEL_TABLE_COLUMNS if any(lv.get(k) is not None for lv in result["levels"])
    ]
    return html.table(result["levels"], columns=keys, headers=dict(LEVEL_TABLE_COLUMNS))


def _sample_note(result: Mapping[str, Any]) -> str:
    s = result["sample"]
    return (
        f"{result['n_items']:,} items, dim {result['dim']}, k from {result['codebook_sizes_source']}; "
        f"embedding metrics on {s['n_items']:,} sampled items (seed {s['seed']}), "
        f"{s['n_queries']:,} neighbour queries, {s['n_neighbors']} neighbours."
    )


def code_points(
    X: np.ndarray, codes: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """What the ID-quality plots need of one codebook: (2-D projection of X [n, 2], codes
    [n, levels]), row for row."""
    return plots.pca_project(X, seed=seed), np.asarray(codes, dtype=np.int64)


def write_code_points(
    path: str | os.PathLike[str], points: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> None:
    """Write {name: (projection [n, 2], codes [n, levels])} as one Parquet file (atomically):
    one row per item, columns name, x, y, codes; names in the order given."""
    import pyarrow as pa

    names, xs, ys, codes = [], [], [], []
    for name, (proj, c) in points.items():
        proj, c = np.asarray(proj, dtype=np.float64), np.asarray(c, dtype=np.int64)
        if proj.ndim != 2 or proj.shape[1] != 2 or c.ndim != 2 or len(c) != len(proj):
            raise InputError(
                f"{name!r}: projection {proj.shape} and codes {c.shape} must be [n, 2] and [n, levels]"
            )
        names += [name] * len(proj)
        xs.append(proj[:, 0])
        ys.append(proj[:, 1])
        codes += c.tolist()
    table = pa.table(
        {
            "name": pa.array(names, pa.string()),
            "x": pa.array(np.concatenate(xs) if xs else [], pa.float64()),
            "y": pa.array(np.concatenate(ys) if ys else [], pa.float64()),
            "codes": pa.array(codes, pa.list_(pa.int64())),
        }
    )
    write_parquet(path, table)


def read_code_points(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (projection [n, 2], codes [n, levels])} as `write_code_points` wrote them."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = np.asarray(table.column("name").to_pylist(), dtype=object)
    xy = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()]).astype(
        np.float64
    )
    codes = table.column("codes").to_pylist()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys(names.tolist()):
        rows = np.flatnonzero(names == name)
        out[name] = (xy[rows], np.asarray([codes[i] for i in rows], dtype=np.int64))
    return out


def id_quality_sections(
    results: dict[str, dict],
    *,
    codes_by_name: dict[str, np.ndarray],
    X_by_name: dict[str, np.ndarray] | None = None,
    points_by_name: dict[str, np.ndarray] | None = None,
    drift_names: Sequence[str] | None = None,
    plot_groups: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> list[tuple[str, str, str | None]]:
    """The report's sections as (title, body html, intro) so other pages (the `psrq run`
    report) can embed them; arguments as in `write_id_report`. Instead of the embeddings
    `X_by_name`, `points_by_name` may give what the drift figures use of them: the 2-D
    projections `plots.pca_project(X, seed=seed)` (as `code_points` computes and
    `read_code_points` reads back); the page is the same."""
    if (X_by_name is None) == (points_by_name is None):
        raise InputError("id_quality_sections needs one of X_by_name and points_by_name")
    if points_by_name is None:
        assert X_by_name is not None
        _check_names(results, X_by_name, codes_by_name)
    else:
        _check_names(results, points_by_name, codes_by_name, "points_by_name")
    codes_by_name = {name: np.asarray(codes_by_name[name]) for name in results}
    drift = list(results) if drift_names is None else [n for n in drift_names if n in results]
    if points_by_name is None:
        assert X_by_name is not None
        points_by_name = {
            name: plots.pca_project(np.asarray(X_by_name[name]), seed=seed) for name in drift
        }
    groups = _resolve_groups(results, plot_groups)

    parts: list[tuple[str, str, str | None]] = []  # (title, body html, intro)
    parts.append(
        (
            "Summary",
            html.table(
                summary_rows(results), columns=list(SUMMARY_HEADERS), headers=SUMMARY_HEADERS
            ),
            "Headline numbers per quantizer; the full per-level tables are further down.",
        )
    )
    level_figs, size_figs = [], []
    for group, names in groups.items():
        heading = f"<h3>{html.escape(group)}</h3>" if len(groups) > 1 else ""
        subset = {n: results[n] for n in names}
        fig = plots.metrics_by_level_figure(subset, LEVEL_PLOT_METRICS)
        level_figs.append(heading + html.figure(fig, alt=f"metrics by level, {group}"))
        fig = plots.cluster_sizes_figure({n: codes_by_name[n] for n in names})
        size_figs.append(heading + html.figure(fig, alt=f"cluster sizes per level, {group}"))
    parts.append(
        (
            "Metrics by level",
            "".join(level_figs),
            "Each panel is one metric; x = level (prefix length). Lifts are 0 at chance.",
        )
    )
    parts.append(
        (
            "Cluster sizes",
            "".join(size_figs),
            "Items per code at each level, largest first, log scale; a line ending early = unused codes.",
        )
    )
    drift_html = "".join(
        html.figure(
            plots.code_drift_figure_2d(
                np.asarray(points_by_name[name]), codes_by_name[name], name=name, seed=seed
            ),
            alt=f"PCA of {name} codes",
        )
        for name in drift
    )
    parts.append(
        (
            "Semantic drift (PCA)",
            drift_html or html.paragraph("(none selected)", css_class="note"),
            "2-D PCA of the embeddings (grey: all items). Left: the largest level-1 codes. Right: the "
            "largest level-2 codes, coloured by their items' level-1 code: a coherent level-2 code "
            "is one compact patch, a drifting one is scattered over many level-1 colours (the paper's Fig. 1).",
        )
    )
    tables = "".join(
        html.section(
            name,
            html.paragraph(_sample_note(r), css_class="note") + _level_table(r),
            level=3,
            anchor=f"table-{html.slug(name)}",
        )
        for name, r in results.items()
    )
    parts.append(("Metrics per level", tables, None))
    parts.append(("Definitions", html.definitions(GLOSSARY), None))

    return parts


def write_id_report(
    results: dict[str, dict],
    out_dir: str | os.PathLike[str],
    *,
    X_by_name: dict[str, np.ndarray],
    codes_by_name: dict[str, np.ndarray],
    title: str,
    subtitle: str | None = None,
    drift_names: Sequence[str] | None = None,
    plot_groups: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> Path:
    """Write `out_dir/quality.json` (the results as given) and `out_dir/report.html`; return the
    HTML path. `results[name]` is an `evaluate_ids` result; `X_by_name[name]` / `codes_by_name[name]`
    are the embeddings and codes it was computed from (for the plots). `drift_names` limits the
    PCA "semantic drift" figures to some quantizers (default: all). `plot_groups` (group title ->
    names) draws the line plots once per group, so a study of many settings stays readable
    (default: one group holding every quantizer)."""
    out = Path(out_dir)
    parts = id_quality_sections(
        results,
        X_by_name=X_by_name,
        codes_by_name=codes_by_name,
        drift_names=drift_names,
        plot_groups=plot_groups,
        seed=seed,
    )
    body = html.toc([t for t, _, _ in parts]) + "".join(
        html.section(t, b, intro=i) for t, b, i in parts
    )
    page = html.page(title, body, subtitle=subtitle)
    write_json(out / "quality.json", results)
    report = out / "report.html"
    write_text(report, page)
    return report
