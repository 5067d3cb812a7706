"""The leaderboard as one self-contained HTML page.

The page must open from disk on a machine with no network and no server: styles and the
table-sorting script are inline, plots are embedded as base64 ``data:`` URIs, and nothing is
fetched (even the favicon is an empty data URI, so the browser does not ask for one).
"""
from __future__ import annotations

import base64
import re
from html import escape

from leaderboard.aggregate import Board
from leaderboard.plots import Plot
from leaderboard.tables import HEADLINE_FORMULA, HEADLINE_HEADING, Section, Table, metadata, scale_note, scope

ABSENT_WORDS = ("failed", "missing", "running")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 110rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #ccc; margin-top: 2.5rem; }
.note { font-style: italic; color: #8a4b00; }
table { border-collapse: collapse; margin: .6rem 0 .2rem; font-size: .85rem; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; white-space: nowrap; }
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
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; font-size: .85rem; }
dl.meta dt { font-weight: 600; }
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


def table_html(table: Table) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in table.headers)
    body = []
    for cells, pinned in zip(table.rows, table.pinned or [False] * len(table.rows)):
        tds = "".join(cell_html(cell.text, cell.sort) for cell in cells)
        body.append(f'<tr class="pinned">{tds}</tr>' if pinned else f"<tr>{tds}</tr>")
    return (
        f'<div class="scroll"><table class="sortable" id="{html_id(table.key)}"><caption>{escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        f'<p class="caption">{escape(table.caption)}</p>'
    )


def html_id(key: str) -> str:
    """An id that is also a plain CSS identifier (orderings contain '>')."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", key)


def cell_html(text: str, sort: float | str | None) -> str:
    attrs = "" if sort is None else f' data-sort="{escape(str(sort))}"'
    if sort is None and text in ABSENT_WORDS:
        attrs += f' class="absent-{text}"'
    return f"<td{attrs}>{escape(text)}</td>"


def plot_html(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(plot.title)}">'
        f"<figcaption>{escape(plot.title)}. {escape(plot.caption)}</figcaption></figure>"
    )


def definition_list(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl class="meta">{rows}</dl>'


def section_html(section: Section) -> str:
    parts = [
        f'<section id="{html_id(section.model + "-" + section.scale)}">',
        f"<h2>{escape(scope(section.model, section.scale))}</h2>",
        f'<p class="note">{escape(scale_note(section.scale))}</p>',
    ]
    if section.headline:
        parts.append(f'<div class="headline"><h3>{escape(HEADLINE_HEADING)}</h3>'
                     + "".join(plot_html(p) for p in section.headline) + "</div>")
    if section.checks or section.details:
        checks = table_html(section.checks) if section.checks else ""
        details = definition_list(section.details) if section.details else ""
        parts.append(f"<h3>Starting model</h3>{checks}{details}")
    for heading, tables in section.groups:
        parts.append(f"<h3>{escape(heading)}</h3>" + "".join(table_html(t) for t in tables))
    if section.plots:
        parts.append("<h3>Plots</h3>" + "".join(plot_html(p) for p in section.plots))
    if not section.groups:
        parts.append("<p>No runs for this model yet.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def page(board: Board, sections: list[Section]) -> str:
    """The whole page as one string."""
    body = "\n".join(section_html(s) for s in sections) or "<p>No runs and no model reports in this folder yet.</p>"
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
<h2>Run metadata</h2>
{definition_list(metadata(board))}
{body}
<script>{SCRIPT}</script>
</body>
</html>
"""
