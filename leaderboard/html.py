"""The leaderboard as one self-contained HTML page.

The page must open from disk on a machine with no network and no server: styles and the
table-sorting script are inline, plots are embedded as base64 ``data:`` URIs, and nothing is
fetched (even the favicon is an empty data URI, so the browser does not ask for one).

Layout: each (model, scale) section opens with its headline figure (the ``safety_utility`` plot,
else the composite trajectory), then the compact main table (safety with interval, tests against
Standard LoRA and the next method, over-refusal) that fits the screen; every step and benchmark
column is one click away in a ``<details>``; run metadata closes the page as a table.
"""
from __future__ import annotations

import base64
import re
from html import escape
from typing import Any

from leaderboard.aggregate import Board
from leaderboard.artifacts import Plot
from leaderboard.tables import (
    HEADLINE_FORMULA,
    HEADLINE_HEADING,
    HEADLINE_PLOT,
    SIGNIFICANT,
    TIE,
    Cell,
    Section,
    Table,
    compact_view,
    metadata,
    scale_note,
    scope,
)

FALLBACK_HEADLINE_PLOT = "trajectory"  # shown in the headline slot while no safety_utility plot exists
MAIN_GROUP = "Main tables"

ABSENT_WORDS = ("failed", "missing", "running")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 110rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #ccc; margin-top: 2.5rem; }
.note { font-style: italic; color: #8a4b00; }
table { border-collapse: collapse; margin: .6rem 0 .2rem; font-size: .85rem; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
div.scroll { overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
table.sortable th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
tr.pinned td { background: #eef5ff; font-weight: 600; }
td.absent-failed { color: #b00020; font-weight: 600; } td.absent-missing, td.absent-running { color: #777; }
p.caption { font-size: .8rem; color: #555; margin-top: 0; max-width: 80rem; }
figure { display: inline-block; margin: .5rem 1rem 1rem 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .8rem; color: #555; max-width: 60rem; }
table.compact { max-width: 100%; } table.compact td, table.compact th { white-space: normal; }
td.significant { font-weight: 700; color: #0b5d1e; } td.tie { color: #555; }
figure.headline { display: block; margin: .5rem 0 1rem; } figure.headline img { max-height: 28rem; }
details { margin: .6rem 0; } summary { cursor: pointer; font-weight: 600; }
table.meta th { text-align: left; background: #f4f4f4; vertical-align: top; }
table.meta td { text-align: left; white-space: normal; }
"""

# Click a header to sort by that column (again to reverse). Cells sort on data-sort (numbers as
# numbers); cells without one ("failed", "missing") always go last; pinned rows stay on top.
SCRIPT = """
(function () {
  function key(row, col) {
    var cell = row.cells[col];
    if (!cell || !cell.hasAttribute('data-sort')) return null;
    var raw = cell.getAttribute('data-sort');
    var num = Number(raw);
    return raw !== '' && !isNaN(num) ? num : raw.toLowerCase();
  }
  function compare(a, b, ascending) {
    if (a === null || b === null) return (a === null) - (b === null);
    if (typeof a !== typeof b) { a = String(a); b = String(b); }
    var order = a < b ? -1 : a > b ? 1 : 0;
    return ascending ? order : -order;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var headers = table.querySelectorAll('thead th');
    headers.forEach(function (th, col) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var pinned = rows.filter(function (r) { return r.classList.contains('pinned'); });
        var rest = rows.filter(function (r) { return !r.classList.contains('pinned'); });
        rest.sort(function (a, b) { return compare(key(a, col), key(b, col), ascending); });
        pinned.concat(rest).forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def table_html(table: Table, css: str = "sortable", key: str | None = None) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in table.headers)
    body = []
    for cells, pinned in zip(table.rows, table.pinned or [False] * len(table.rows)):
        tds = "".join(cell_html(cell) for cell in cells)
        body.append(f'<tr class="pinned">{tds}</tr>' if pinned else f"<tr>{tds}</tr>")
    table_id = html_id(key or table.key)
    return (
        f'<div class="scroll"><table class="{css}" id="{table_id}"><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        f'<p class="caption">{escape(table.caption)}</p>'
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


def plot_kind(plot: Plot) -> str:
    return plot.name.split("__", 1)[0]


def headline_plots(plots: list[Plot]) -> list[Plot]:
    """The safety-utility figure(s) of a section; the trajectory plot(s) until one is drawn."""
    for kind in (HEADLINE_PLOT, FALLBACK_HEADLINE_PLOT):
        found = [p for p in plots if plot_kind(p) == kind]
        if found:
            return found
    return []


def value_html(value: Any) -> str:
    """A report value for people: a mapping as a nested key/value table, a list as lines, never raw JSON."""
    if isinstance(value, dict):
        return key_value_table([(str(k), v) for k, v in sorted(value.items())])
    if isinstance(value, list):
        return "<br>".join(value_html(v) for v in value)
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    return escape("" if value is None else str(value))


def key_value_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th scope="row">{escape(k)}</th><td>{value_html(v)}</td></tr>' for k, v in items)
    return f'<table class="meta">{rows}</table>'


def main_group_html(tables: list[Table]) -> str:
    """Compact tables first; the full tables (every step and benchmark column) behind one click."""
    compact = "".join(table_html(compact_view(t), "sortable compact") for t in tables)
    full = "".join(table_html(t, key="full-" + t.key) for t in tables)
    return (f"{compact}<details><summary>Every step and benchmark (with 95% intervals)</summary>{full}</details>")


def section_html(section: Section, report: dict[str, Any]) -> str:
    headline = section.headline or headline_plots(section.plots)
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
        details = {k: v for k, v in report.items() if k not in ("checks", "model", "scale")}
        parts.append(f"<h3>Starting model</h3>{checks}{key_value_table(sorted(details.items())) if details else ''}")
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
    body = "\n".join(section_html(s, board.reports.get(s.model) or {}) for s in sections) \
        or "<p>No runs and no model reports in this folder yet.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>erosion-bench leaderboard</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<h1>erosion-bench leaderboard</h1>
<p>Headline: {escape(HEADLINE_FORMULA)}. Click a column header to sort.</p>
{body}
<h2>Run metadata</h2>
{key_value_table(metadata(board))}
<script>{SCRIPT}</script>
</body>
</html>
"""
