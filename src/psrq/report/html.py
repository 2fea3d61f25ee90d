"""Building blocks for self-contained HTML pages: one file, inline CSS, images as base64 PNG.

A report must open from an e-mail attachment or a CI artifact with no network and no sibling
files, so nothing here links to an external asset. Every piece of text that did not come from
this module goes through `escape`.

    body = section("Results", table(rows, columns=["name", "auc"]) + figure_img(fig, alt="AUC"))
    write_text("report.html", page("My report", body))
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

CSS = """
:root { --fg:#1d232b; --muted:#5f6b7a; --line:#dde3ea; --accent:#2f6db5; --bg-alt:#f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
header.page { border-bottom: 2px solid var(--accent); margin-bottom: 20px; padding-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
p.meta, p.note, figcaption { color: var(--muted); font-size: 13px; }
nav.toc { background: var(--bg-alt); padding: 8px 14px; border-radius: 6px; font-size: 14px; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.table-wrap { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding: 4px 0; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--bg-alt); font-weight: 600; position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; }
tbody tr:hover { background: #eef4fb; }
td.text { text-align: left; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
code { background: var(--bg-alt); padding: 1px 4px; border-radius: 3px; font-size: 13px; }
dl.defs dt { font-weight: 600; margin-top: 6px; }
dl.defs dd { margin-left: 18px; color: var(--muted); font-size: 13px; }
p.warning { background: #fdecea; border-left: 4px solid #c62828; color: #7f1d1d; padding: 6px 10px; }
"""


def escape(text: Any) -> str:
    """HTML-escape any value's str() (quotes included, so it is safe in attributes too)."""
    return html.escape(str(text), quote=True)


def slug(text: str) -> str:
    """An id-safe anchor name: lower case letters, digits and dashes."""
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in out.split("-") if part) or "section"


def format_value(value: Any, digits: int = 3) -> str:
    """Numbers to short text: ints with thousands separators, floats to `digits` significant
    decimals (small ones in scientific notation), None/NaN as an en dash. Returns escaped HTML."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "&ndash;"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.{max(digits - 1, 1)}e}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return escape(value)


def table(
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    caption: str | None = None,
    digits: int = 3,
) -> str:
    """An HTML table from a list of dicts. `columns` picks and orders the keys (default: the keys
    of the first row), `headers` renames them for display. Values are formatted by `format_value`."""
    if not rows:
        return '<p class="note">(no rows)</p>'
    cols = list(columns) if columns is not None else list(rows[0].keys())
    names = headers or {}
    head = "".join(f"<th>{escape(names.get(c, c))}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            value = row.get(c)
            css = ' class="text"' if isinstance(value, str) else ""
            cells.append(f"<td{css}>{format_value(value, digits)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return (
        f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def figure_png(fig: Any, *, dpi: int = 90, palette: bool = True) -> bytes:
    """PNG bytes of a matplotlib Figure (works without pyplot; the figure is not kept open).

    With `palette`, the image is stored with a 256-colour palette: charts use a handful of
    colours, and this makes embedded reports about 3x smaller with no visible difference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)  # an Agg canvas of its own: no pyplot backend is involved
    fig.set_dpi(dpi)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")
    if palette:
        # Fast octree keeps rare saturated colours (thin plot lines); median cut turned them grey.
        image = image.quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_img(png: bytes, *, alt: str) -> str:
    """An <img> tag holding the PNG inline as base64."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def figure(fig: Any, *, alt: str, caption: str | None = None, dpi: int = 90) -> str:
    """A <figure> with the matplotlib Figure embedded as a base64 PNG and an optional caption."""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{png_img(figure_png(fig, dpi=dpi), alt=alt)}{cap}</figure>"


def section(
    title: str, body: str, *, intro: str | None = None, level: int = 2, anchor: str | None = None
) -> str:
    """A titled block. `body` is trusted HTML (built with these helpers); `intro` is plain text."""
    anchor_id = anchor or slug(title)
    text = f'<p class="note">{escape(intro)}</p>' if intro else ""
    return f'<section id="{escape(anchor_id)}"><h{level}>{escape(title)}</h{level}>{text}{body}</section>'


def paragraph(text: str, *, css_class: str | None = None) -> str:
    cls = f' class="{escape(css_class)}"' if css_class else ""
    return f"<p{cls}>{escape(text)}</p>"


def definitions(items: Iterable[tuple[str, str]]) -> str:
    """A definition list (term, explanation), for glossaries of metrics."""
    inner = "".join(f"<dt>{escape(term)}</dt><dd>{escape(text)}</dd>" for term, text in items)
    return f'<dl class="defs">{inner}</dl>'


def toc(titles: Iterable[str]) -> str:
    """Links to sections whose anchors are `slug(title)` (the `section` default)."""
    links = "".join(f'<a href="#{slug(t)}">{escape(t)}</a>' for t in titles)
    return f'<nav class="toc">{links}</nav>'


def page(title: str, body: str, *, subtitle: str | None = None, generator: str = "psrq") -> str:
    """A complete HTML5 document with the house CSS inline. `body` is trusted HTML."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sub = f'<p class="meta">{escape(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f'<body><main><header class="page"><h1>{escape(title)}</h1>{sub}'
        f'<p class="meta">Generated by {escape(generator)} on {stamp}.</p></header>'
        f"{body}</main></body></html>\n"
    )
