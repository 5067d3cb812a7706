"""Tables as lists of column declarations, the writers every output shares, and the value helpers of every frame.

A :class:`Column` says once what a column is: its data name (``key``, the CSV header and JSON
field), its printed header, how a row's cell is shown, how its value is stored, and which of the
five outputs carry it. Markdown, the terminal and the HTML page print the shown cells of the
columns that name them; CSV and JSON store the values. Adding a column is one declaration.

An absent number is written as the reason ("failed", "running", "missing"), never as 0.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SHOWN = frozenset({"markdown", "terminal", "html"})
STORED = frozenset({"csv", "json"})
EVERYWHERE = SHOWN | STORED
DASH = "—"  # not applicable (e.g. "points lost" of the starting model), unlike an absent number
SIGNIFICANT, TIE = "significant", "tie"  # cell marks: the HTML page styles them


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | str | None = None  # the HTML table sorts on this; None sorts last
    mark: str = ""  # SIGNIFICANT or TIE for a tested difference; "" otherwise


@dataclass(frozen=True)
class Column:
    key: str  # CSV header and JSON field
    header: str = ""  # printed above the shown cells
    cell: Callable[[Any], Cell] | None = None  # the shown cell of a row (default: its value as text)
    value: Callable[[Any], Any] | None = None  # the stored value of a row (default: the row's field ``key``)
    outputs: frozenset[str] = EVERYWHERE
    compact: bool = False  # on the HTML page's first screen
    joiner: str = " "  # how CSV writes a list value

    def stored(self, row: Any) -> Any:
        return self.value(row) if self.value else getattr(row, self.key)

    def shown(self, row: Any) -> Cell:
        if self.cell:
            return self.cell(row)
        found = self.stored(row)
        return Cell("" if found is None else str(found), found)


@dataclass(frozen=True)
class Table:
    key: str  # unique, used for HTML ids
    model: str
    scale: str
    title: str
    caption: str
    columns: list[Column]
    rows: list[Any]
    pinned: list[bool] = field(default_factory=list)  # rows that stay on top when re-sorted

    def shown(self, output: str, compact: bool = False) -> tuple[list[str], list[list[Cell]]]:
        """Headers and cells of the columns ``output`` prints (the compact ones only, if asked)."""
        columns = [c for c in self.columns if output in c.outputs and (c.compact or not compact)]
        return [c.header for c in columns], [[c.shown(row) for c in columns] for row in self.rows]


# --- cells ------------------------------------------------------------------------------------------
def number(value: float | None, absent: str, digits: int = 1) -> Cell:
    if value is None:
        return Cell(absent)
    return Cell(f"{value:.{digits}f}", value)


def mean_sd_cell(mean: float | None, sd: float | None, n: int, absent: str, digits: int = 1, count: str = " (n={n})") -> Cell:
    if mean is None:
        return Cell(absent)
    spread = f" ± {sd:.{digits}f}" if sd is not None else count.format(n=n)
    return Cell(f"{mean:.{digits}f}{spread}", mean)


# --- stored outputs -------------------------------------------------------------------------------
def stored_rows(columns: list[Column], rows: Iterable[Any], output: str) -> list[dict[str, Any]]:
    return [{c.key: c.stored(row) for c in columns if output in c.outputs} for row in rows]


def csv_value(value: Any, joiner: str) -> Any:
    if isinstance(value, (list, tuple)):
        return joiner.join(map(str, value))
    return None if isinstance(value, float) and not math.isfinite(value) else value


def csv_text(columns: list[Column], rows: Iterable[Any]) -> str:
    """One CSV of ``rows`` (empty cell = absent)."""
    chosen = [c for c in columns if "csv" in c.outputs]
    frame = pd.DataFrame([[csv_value(c.stored(row), c.joiner) for c in chosen] for row in rows], columns=[c.key for c in chosen])
    out = io.StringIO()
    frame.to_csv(out, index=False, lineterminator="\n", na_rep="")
    return out.getvalue()


def optional(value: float | None) -> float | None:
    """A number as float; NaN (pandas' absent) or None as None."""
    return None if value is None or math.isnan(value) else float(value)


def best_first(rows: pd.DataFrame, score: pd.Series, within: Iterable[str] = ()) -> pd.DataFrame:
    """``rows`` by descending ``score`` (rows without one last, ties by method), inside each group of ``within``."""
    keyed = rows.assign(_none=score.isna(), _neg=-score)
    return keyed.sort_values([*within, "_none", "_neg", "method"]).drop(columns=["_none", "_neg"])


def finite(value: Any) -> Any:
    """Replace NaN/inf by None so the JSON is strict (json.dumps would write NaN, which parsers reject)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


# --- shown outputs -----------------------------------------------------------------------------------
def text_table(table: Table) -> str:
    """Aligned plain text: the first column left-aligned, the rest right-aligned."""
    headers, cells = table.shown("terminal")
    grid = [headers] + [[cell.text for cell in row] for row in cells]
    widths = [max(len(line[i]) for line in grid) for i in range(len(headers))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths, strict=True)))
             for line in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([table.title, *lines])


def markdown_table(table: Table) -> str:
    """A pipe table, cells unpadded (one row per line, so a row reads whole in a diff or a grep)."""
    headers, cells = table.shown("markdown")

    def line(texts: Iterable[str]) -> str:
        return "| " + " | ".join(t.replace("|", "\\|") for t in texts) + " |"

    lines = [f"**{table.title}**", "", line(headers), line("---" for _ in headers)]
    lines += [line(cell.text for cell in row) for row in cells]
    return "\n".join(lines + ["", f"*{table.caption}*"] if table.caption else lines)
