"""The leaderboard as one self-contained HTML page (layout: docs/leaderboard.md, "HTML page").

The page must open from disk on a machine with no network and no server: styles and the
table-sorting script are inline, plots are embedded as base64 ``data:`` URIs, and nothing is
fetched (even the favicon is an empty data URI, so the browser does not ask for one).
"""
from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path
from typing import Any

from leaderboard.aggregate import Board
from leaderboard.artifacts import Plot
from leaderboard.columns import SIGNIFICANT, TIE, Cell, Table
from leaderboard.detail_tables import plain
from leaderboard.document import HEADLINE_HEADING, MAIN_GROUP, Section, metadata
from leaderboard.tables import HEADLINE_FORMULA, compact_caption, scale_note, scope

SAMPLES_PAGE = "samples.html"  # leaderboard/samples.py writes it beside this page
FALLBACK_HEADLINE_PLOT = "trajectory"  # shown in the headline slot while no safety_utility plot exists

ABSENT_WORDS = ("failed", "missing", "running")
ASSETS = Path(__file__).resolve().parent  # page.css, page.js, samples.css, samples.js: inlined into the pages


def page_head(title: str, css: str) -> str:
    """A self-contained page's opening, up to and including ``<body>`` (no network: inline styles, no favicon)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<style>{css}</style>
</head>
<body>"""


def asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def table_html(table: Table, css: str = "sortable", key: str | None = None, compact: bool = False) -> str:
    """A table's HTML columns (only those declared ``compact`` for a first-screen view)."""
    headers, rows = table.shown("html", compact)
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    body = []
    for cells, pinned in zip(rows, table.pinned or [False] * len(rows), strict=True):
        tds = "".join(cell_html(cell) for cell in cells)
        body.append(f'<tr class="pinned">{tds}</tr>' if pinned else f"<tr>{tds}</tr>")
    caption = compact_caption(table) if compact else table.caption
    return (
        f'<div class="scroll"><table class="{css}" id="{html_id(key or table.key)}"><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        f'<p class="caption">{escape(caption)}</p>'
    )


def html_id(key: str) -> str:
    """An id that is also a plain CSS identifier (orderings contain '>')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", key)


def cell_html(cell: Cell) -> str:
    attrs = "" if cell.sort is None else f' data-sort="{escape(str(cell.sort))}"'
    if cell.sort is None and cell.text in ABSENT_WORDS:
        attrs += f' class="absent-{cell.text}"'
    elif cell.mark in (SIGNIFICANT, TIE):
        label = "significant difference" if cell.mark == SIGNIFICANT else "not significant"
        attrs += f' class="{cell.mark}" title="{label}"'
    return f"<td{attrs}>{escape(cell.text)}</td>"


def plot_html(plot: Plot, css: str = "") -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    attrs = f' class="{css}"' if css else ""
    return (
        f'<figure{attrs}><img src="data:image/png;base64,{data}" alt="{escape(plot.title)}">'
        f"<figcaption>{escape(plot.title)}. {escape(plot.caption)}</figcaption></figure>"
    )


def value_html(value: Any) -> str:
    """A report value for people: a mapping as a nested key/value table, a list as lines, never raw JSON."""
    if isinstance(value, dict):
        return key_value_table([(str(k), v) for k, v in sorted(value.items())])
    if isinstance(value, list):
        return "<br>".join(value_html(v) for v in value)
    return escape(plain(value))


def key_value_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th scope="row">{escape(k)}</th><td>{value_html(v)}</td></tr>' for k, v in items)
    return f'<table class="meta">{rows}</table>'


def main_group_html(tables: list[Table]) -> str:
    """Compact tables first; the full tables (every step and benchmark column) behind one click."""
    compact = "".join(table_html(t, "sortable compact", compact=True) for t in tables)
    full = "".join(table_html(t, key="full-" + t.key) for t in tables)
    return (f"{compact}<details><summary>Every step and benchmark (with 95% intervals)</summary>{full}</details>")


def section_html(section: Section) -> str:
    # Until a safety_utility plot is drawn, the trajectory plot(s) take the headline's place.
    headline = section.headline or [p for p in section.plots if p.name.startswith(f"{FALLBACK_HEADLINE_PLOT}__")]
    parts = [
        f'<section id="{html_id(section.model + "-" + section.scale)}">',
        f"<h2>{escape(scope(section.model, section.scale))}</h2>",
        f'<p class="note">{escape(scale_note(section.scale))}</p>',
    ]
    if headline:
        parts.append(f'<div class="headline"><h3>{escape(HEADLINE_HEADING)}</h3>'
                     + "".join(plot_html(p, "headline") for p in headline) + "</div>")
    for heading, tables in section.groups:
        if heading == MAIN_GROUP:
            parts.append(main_group_html(tables))
    if section.checks or section.details:
        checks = table_html(section.checks) if section.checks else ""
        parts.append(f"<h3>Starting model</h3>{checks}{key_value_table(section.details) if section.details else ''}")
    for heading, tables in section.groups:
        if heading != MAIN_GROUP:
            parts.append(f"<h3>{escape(heading)}</h3>" + "".join(table_html(t) for t in tables))
    others = [p for p in section.plots if p not in headline]
    if others:
        parts.append("<h3>Plots</h3>" + "".join(plot_html(p) for p in others))
    if not section.groups:
        parts.append("<p>No runs for this model yet.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def page(board: Board, sections: list[Section]) -> str:
    """The whole page as one string."""
    body = "\n".join(section_html(s) for s in sections) \
        or "<p>No runs and no model reports in this folder yet.</p>"
    return f"""{page_head("erosion-bench leaderboard", asset("page.css"))}
<h1>erosion-bench leaderboard</h1>
<p>Headline: {escape(HEADLINE_FORMULA)}. Click a column header to sort.</p>
<p><a href="{SAMPLES_PAGE}">Every generation (request, response, verdict, refusal NLL), filtered and side by side:
the sample viewer</a></p>
{body}
<h2>Run metadata</h2>
{key_value_table(metadata(board))}
<script>{asset("page.js")}</script>
</body>
</html>
"""
