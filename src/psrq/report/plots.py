"""Matplotlib figures for the reports. Each function returns a `matplotlib.figure.Figure`.

Figures are built without pyplot (no global figure registry, no GUI backend): render them with
`psrq.report.html.figure` (Agg canvas) and let them be garbage-collected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# A palette that stays distinguishable for up to 20 series; beyond that, line styles vary too.
_LINESTYLES = ["-", "--", ":", "-."]


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _series_style(i: int) -> dict[str, Any]:
    import matplotlib

    colors = matplotlib.colormaps["tab10" if i < 10 else "tab20"].colors
    return {
        "color": colors[i % len(colors)],
        "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)],
    }


def _grid(n_panels: int, n_cols: int) -> tuple[int, int]:
    n_cols = max(1, min(n_cols, n_panels))
    return -(-n_panels // n_cols), n_cols


def cluster_sizes_figure(
    codes_by_name: Mapping[str, np.ndarray], *, max_levels: int | None = None
) -> Any:
    """Sorted code sizes per level (one panel per level, one line per quantizer, log y axis).

    A flat line = codes used evenly; a steep head = a few codes hold most items (the hourglass
    effect at middle levels); a line ending before k = dead codes. `codes_by_name`: name -> int
    [n_items, n_levels].
    """
    n_levels = max(c.shape[1] for c in codes_by_name.values())
    if max_levels is not None:
        n_levels = min(n_levels, max_levels)
    rows, cols = _grid(n_levels, 3)
    fig = _new_figure(4.2 * cols, 3.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for level in range(n_levels):
        ax = axes[level]
        for i, (name, codes) in enumerate(codes_by_name.items()):
            if codes.shape[1] <= level:
                continue
            sizes = np.sort(np.bincount(codes[:, level]))[::-1]
            sizes = sizes[sizes > 0]
            ax.plot(
                np.arange(1, len(sizes) + 1), sizes, label=name, linewidth=1.4, **_series_style(i)
            )
        ax.set_yscale("log")
        ax.set_title(f"level {level + 1}")
        ax.set_xlabel("code rank (largest first)")
        ax.set_ylabel("items")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[n_levels:]:
        ax.set_visible(False)
    _shared_legend(fig, axes[0])
    return fig


def _shared_legend(fig: Any, ax: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


def metrics_by_level_figure(
    results: Mapping[str, Mapping[str, Any]],
    metrics: Sequence[tuple[str, str]],
    *,
    n_cols: int = 3,
) -> Any:
    """One panel per metric (key in `results[name]["levels"][l]`, display label), x = level,
    one line per quantizer. Metrics that are None for every quantizer are left out."""
    present = [
        (key, label)
        for key, label in metrics
        if any(lv.get(key) is not None for r in results.values() for lv in r["levels"])
    ]
    if not present:
        present = list(metrics[:1])
    rows, cols = _grid(len(present), n_cols)
    fig = _new_figure(4.0 * cols, 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (key, label) in zip(axes, present, strict=False):
        for i, (name, result) in enumerate(results.items()):
            levels = [lv["level"] for lv in result["levels"] if lv.get(key) is not None]
            values = [lv[key] for lv in result["levels"] if lv.get(key) is not None]
            if values:
                ax.plot(
                    levels,
                    values,
                    marker="o",
                    markersize=3.5,
                    label=name,
                    linewidth=1.4,
                    **_series_style(i),
                )
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("level")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    _shared_legend(fig, axes[0])
    return fig


def pca_2d(X: np.ndarray, *, seed: int = 0, max_fit: int = 5_000) -> tuple[np.ndarray, np.ndarray]:
    """(mean [d], components [d, 2]) of a PCA fitted on a seeded sample of X's rows.

    Component signs are fixed (largest absolute loading positive) so the picture is identical
    from run to run."""
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), size=min(max_fit, len(X)), replace=False))
    fit = X[rows]
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    comps = vt[:2].T.copy()
    if comps.shape[1] < 2:  # a 1-D input: pad with a zero axis
        comps = np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    return mean, comps * np.where(signs == 0, 1.0, signs)


def _top_codes(col: np.ndarray, count: int) -> np.ndarray:
    sizes = np.bincount(col)
    order = np.lexsort((np.arange(len(sizes)), -sizes))  # biggest first, ties by code
    return order[: min(count, int((sizes > 0).sum()))]


def pca_project(X: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """X's rows on its first two principal axes (`pca_2d`), float64 [n, 2]: all that
    `code_drift_figure` uses of X, so a stage can store it and a report draw it later."""
    mean, comps = pca_2d(X, seed=seed)
    return (np.asarray(X, dtype=np.float64) - mean) @ comps


def code_drift_figure(
    X: np.ndarray,
    codes: np.ndarray,
    *,
    name: str,
    seed: int = 0,
    n_level1: int = 8,
    n_level2: int = 3,
    drift_level: int = 2,
    max_points: int = 3_000,
) -> Any:
    """The paper's Fig. 1 for one quantizer: a 2-D PCA of X (grey = all items, sampled).

    Panel 1: items of the `n_level1` largest level-1 codes, coloured by level-1 code.
    Panels 2..: items of each of the `n_level2` largest codes at `drift_level`, coloured by their
    level-1 code. A semantically coherent deep code sits in one region with one or two colours;
    a drifting one (RQ-KMeans) is spread over the map in many colours.
    """
    return code_drift_figure_2d(
        pca_project(X, seed=seed),
        codes,
        name=name,
        seed=seed,
        n_level1=n_level1,
        n_level2=n_level2,
        drift_level=drift_level,
        max_points=max_points,
    )


def code_drift_figure_2d(
    proj: np.ndarray,
    codes: np.ndarray,
    *,
    name: str,
    seed: int = 0,
    n_level1: int = 8,
    n_level2: int = 3,
    drift_level: int = 2,
    max_points: int = 3_000,
) -> Any:
    """`code_drift_figure` from the projection `pca_project(X, seed=seed)` [n, 2] instead of X."""
    import matplotlib

    proj = np.asarray(proj, dtype=np.float64)
    rng = np.random.default_rng(seed)
    background = np.sort(rng.choice(len(proj), size=min(max_points, len(proj)), replace=False))
    level1 = codes[:, 0]
    show_deep = codes.shape[1] >= drift_level
    deep_codes = (
        _top_codes(codes[:, drift_level - 1], n_level2) if show_deep else np.zeros(0, np.int64)
    )
    n_panels = 1 + len(deep_codes)
    fig = _new_figure(3.3 * n_panels + 0.4, 3.4)
    axes = np.atleast_1d(fig.subplots(1, n_panels, squeeze=False)).ravel()
    palette = matplotlib.colormaps["tab10"].colors

    def draw(ax: Any, members: np.ndarray, title: str, n_colours: int) -> None:
        ax.scatter(
            proj[background, 0],
            proj[background, 1],
            s=2,
            c="#d5d9de",
            linewidths=0,
            rasterized=True,
        )
        if len(members) > max_points:
            members = np.sort(rng.choice(members, size=max_points, replace=False))
        own = level1[members]
        for j, c in enumerate(_top_codes(own, n_colours)):
            pts = members[own == c]
            ax.scatter(
                proj[pts, 0],
                proj[pts, 1],
                s=6,
                color=palette[j % len(palette)],
                linewidths=0,
                label=f"L1={c}",
            )
        rest = members[~np.isin(own, _top_codes(own, n_colours))]
        if len(rest):
            ax.scatter(
                proj[rest, 0],
                proj[rest, 1],
                s=6,
                c="#333333",
                marker="x",
                linewidths=0.6,
                label="other L1",
            )
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=1.5, loc="upper left", framealpha=0.6, ncol=1)

    top1 = _top_codes(level1, n_level1)
    draw(
        axes[0],
        np.flatnonzero(np.isin(level1, top1)),
        f"{name}: {len(top1)} largest level-1 codes",
        n_level1,
    )
    for ax, code in zip(axes[1:], deep_codes, strict=True):
        members = np.flatnonzero(codes[:, drift_level - 1] == code)
        n_l1 = len(np.unique(level1[members]))
        draw(
            ax,
            members,
            f"level-{drift_level} code {code}: {len(members)} items, {n_l1} level-1 codes",
            6,
        )
    fig.supxlabel("PC 1 of X", fontsize=8)
    fig.supylabel("PC 2 of X", fontsize=8)
    return fig


def grouped_bars_figure(
    values: Mapping[str, Mapping[str, float]],
    metrics: Sequence[tuple[str, str]],
    *,
    ylabel: str,
) -> Any:
    """Bars per name (x) and metric (colour): e.g. all vs cold AUC per ranking model.

    `values[name][key]` for each (key, label) in `metrics`; NaN values leave a gap.
    """
    names = list(values)
    fig = _new_figure(max(5.0, 1.1 * len(names) + 2.0), 3.4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(names))
    finite: list[float] = []
    for i, (key, label) in enumerate(metrics):
        heights = np.array([values[n].get(key, np.nan) for n in names], dtype=float)
        finite.extend(heights[np.isfinite(heights)].tolist())
        bars = ax.bar(
            x + (i - (len(metrics) - 1) / 2) * width,
            np.nan_to_num(heights),
            width,
            label=label,
            color=_series_style(i)["color"],
        )
        for bar, h in zip(bars, heights, strict=True):
            if np.isfinite(h):
                ax.annotate(
                    f"{h:.3f}",
                    (bar.get_x() + bar.get_width() / 2, h),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    if finite:  # AUCs live in a narrow band; start the axis near it so differences are visible
        lo, hi = min(finite), max(finite)
        ax.set_ylim(max(0.0, lo - 0.1 * (hi - lo + 0.05)), hi + 0.15 * (hi - lo + 0.05))
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return fig


def curves_figure(curves: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str) -> Any:
    """One line per name over x = 1..len(values) (e.g. validation AUC per epoch)."""
    fig = _new_figure(6.0, 3.4)
    ax = fig.subplots()
    for i, (name, ys) in enumerate(curves.items()):
        ax.plot(
            np.arange(1, len(ys) + 1), ys, marker="o", markersize=3, label=name, **_series_style(i)
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    _shared_legend(fig, ax)
    return fig
