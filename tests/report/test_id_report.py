"""The ID-quality report and the HTML helpers, on SYNTHETIC embeddings and codes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from psrq.errors import InputError
from psrq.quantize.quality import evaluate_ids
from psrq.report import html
from psrq.report.id_report import write_id_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def two_quantizers(synthetic_blobs):
    """SYNTHETIC: RQ-KMeans codes (with the quantizer) and random codes (without one)."""
    from psrq.quantize.rq_kmeans import RQKMeans

    q = RQKMeans(n_levels=3, codebook_size=16, seed=0).fit(synthetic_blobs)
    rq_codes = q.transform(synthetic_blobs)
    random_codes = np.random.default_rng(1).integers(0, 16, size=rq_codes.shape)
    names = ["RQKMeans k=16", "random <synthetic>"]
    codes = dict(zip(names, [rq_codes, random_codes], strict=True))
    results = {
        names[0]: evaluate_ids(synthetic_blobs, rq_codes, q, n_queries=500),
        names[1]: evaluate_ids(synthetic_blobs, random_codes, n_queries=500),
    }
    return results, {n: synthetic_blobs for n in names}, codes


def _embedded_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(b)
        for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    ]


@pytest.mark.slow
def test_report_is_self_contained_with_all_sections(tmp_path: Path, two_quantizers) -> None:
    results, X_by_name, codes_by_name = two_quantizers
    path = write_id_report(
        results, tmp_path / "rep", X_by_name=X_by_name, codes_by_name=codes_by_name, title="T & Q"
    )
    assert path == tmp_path / "rep" / "report.html"
    page = path.read_text()
    for heading in [
        "Summary",
        "Metrics by level",
        "Cluster sizes",
        "Semantic drift (PCA)",
        "Metrics per level",
        "Definitions",
    ]:
        assert f">{heading}</h2>" in page
    assert "T &amp; Q" in page and "random &lt;synthetic&gt;" in page  # titles and names escaped
    assert "<synthetic>" not in page
    # metrics by level + cluster sizes + one drift figure per quantizer
    pngs = _embedded_pngs(page)
    assert len(pngs) == 2 + len(results)
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    # nothing is fetched from outside the file
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert json.loads((tmp_path / "rep" / "quality.json").read_text()) == json.loads(
        json.dumps(results)
    )
    # per-level tables carry the numbers
    recon = results["RQKMeans k=16"]["levels"][2]["recon_cos"]
    assert html.format_value(recon) in page
    assert not list((tmp_path / "rep").glob(".*tmp"))  # atomic writes left no staging dirs


def test_report_rejects_missing_inputs(tmp_path: Path, two_quantizers) -> None:
    results, X_by_name, codes_by_name = two_quantizers
    codes_by_name.pop("RQKMeans k=16")
    with pytest.raises(InputError, match="'RQKMeans k=16' is in results but not in codes_by_name"):
        write_id_report(
            results, tmp_path, X_by_name=X_by_name, codes_by_name=codes_by_name, title="t"
        )
    with pytest.raises(InputError, match="at least one"):
        write_id_report({}, tmp_path, X_by_name={}, codes_by_name={}, title="t")
    assert not (tmp_path / "report.html").exists()


def test_drift_figures_and_plot_groups_can_be_chosen(tmp_path: Path, two_quantizers) -> None:
    results, X_by_name, codes_by_name = two_quantizers
    names = list(results)
    path = write_id_report(
        results,
        tmp_path,
        X_by_name=X_by_name,
        codes_by_name=codes_by_name,
        title="t",
        drift_names=names[:1],
        plot_groups={"first": names[:1], "second": names[1:]},
    )
    page = path.read_text()
    # two groups x (metrics by level + cluster sizes) + one drift figure
    assert len(_embedded_pngs(page)) == 5
    assert "<h3>first</h3>" in page and "<h3>second</h3>" in page
    with pytest.raises(InputError, match="plot group 'x' names \\['nope'\\]"):
        write_id_report(
            results,
            tmp_path,
            X_by_name=X_by_name,
            codes_by_name=codes_by_name,
            title="t",
            plot_groups={"x": ["nope"]},
        )


# ---- generic helpers --------------------------------------------------------------------------
def test_table_formats_and_escapes() -> None:
    out = html.table(
        [{"name": "<b>x</b>", "n": 12345, "v": 0.123456, "tiny": 1.5e-6, "none": None}],
        headers={"v": "value & more"},
    )
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "<b>" not in out
    assert "12,345" in out and "0.123" in out and "1.50e-06" in out and "&ndash;" in out
    assert "value &amp; more" in out
    assert html.format_value(np.int64(7)) == "7" and html.format_value(np.float32(0.5)) == "0.500"
    assert html.table([]) == '<p class="note">(no rows)</p>'


def test_page_and_figure_are_self_contained() -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    block = html.figure(fig, alt='a "quoted" alt', caption="cap <1>")
    assert 'alt="a &quot;quoted&quot; alt"' in block and "cap &lt;1&gt;" in block
    assert _embedded_pngs(block)[0].startswith(PNG_SIGNATURE)
    doc = html.page("Title", html.section("Part one", block) + html.toc(["Part one"]))
    assert (
        doc.startswith("<!DOCTYPE html>") and 'id="part-one"' in doc and 'href="#part-one"' in doc
    )
