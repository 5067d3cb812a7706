"""The document structure Markdown, HTML and the terminal share: a section per (model, scale) with
its tables in display order, its plots, and the page's provenance."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from leaderboard import detail_tables
from leaderboard.aggregate import Board
from leaderboard.artifacts import Plot
from leaderboard.columns import Table
from leaderboard.tables import main_tables, versions

HEADLINE_PLOT = "safety_utility"
HEADLINE_HEADING = "Headline: safety against utility"
MAIN_GROUP = "Main tables"
# Heading -> the tables under it, in display order; the terminal shows only the main group.
GROUPS = {
    MAIN_GROUP: main_tables,
    "Utility (continual learning)": detail_tables.utility_tables,
    "Utility matrix R[t][i]": detail_tables.matrix_tables,
    "Ordering sensitivity": detail_tables.ordering_tables,
    "Sequence length": detail_tables.horizon_tables,
    "Fisher spectrum": detail_tables.fisher_tables,
    "Runs": detail_tables.runs_tables,
}


@dataclass(frozen=True)
class Section:
    """Everything shown for one (model, scale), in display order."""

    model: str
    scale: str
    checks: Table | None  # the starting model's checks, from its model report
    details: list[tuple[str, Any]]  # the rest of the model report (data provenance, ...), by key
    groups: list[tuple[str, list[Table]]]  # (heading, tables); empty groups are left out
    plots: list[Plot]
    headline: list[Plot] = field(default_factory=list)  # the safety-utility figure(s), shown first


def sections(board: Board, plots: list[Plot], compact: bool = False) -> list[Section]:
    """One section per (model, scale) with runs, plus models that only have a report so far."""
    scopes = set(zip(board.runs["model"], board.runs["scale"], strict=True))
    with_runs = {model for model, _ in scopes}
    scopes |= {(m, str(r.get("scale", "unknown"))) for m, r in board.reports.items() if m not in with_runs}
    tables = {heading: make(board) for heading, make in GROUPS.items() if heading == MAIN_GROUP or not compact}
    out = []
    for model, scale in sorted(scopes):
        report = board.reports.get(model) or {}
        groups = [(heading, [t for t in ts if (t.model, t.scale) == (model, scale)]) for heading, ts in tables.items()]
        mine = [p for p in plots if (p.model, p.scale) == (model, scale)]
        headline = [p for p in mine if p.name.startswith(f"{HEADLINE_PLOT}__")]
        out.append(Section(model, scale, detail_tables.checks_table(model, scale, report) if report.get("checks") else None,
                           [(k, v) for k, v in sorted(report.items()) if k not in ("checks", "model", "scale")],
                           [(heading, ts) for heading, ts in groups if ts], [p for p in mine if p not in headline], headline))
    return out


def date(timestamp: float | None) -> str:
    if not timestamp:
        return "unknown"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def metadata(board: Board) -> list[tuple[str, str]]:
    """Provenance of the page: when, from where, with which library versions and configs."""
    starts, ends = board.runs["started_at"].dropna(), board.runs["finished_at"].dropna()
    hashes = board.runs["config_hash"].value_counts().sort_index()
    statuses = board.runs["status"].value_counts().sort_index()
    return [
        ("Generated", date(board.generated_at)),
        ("Results folder", str(board.root)),
        ("Results created", date(board.created_at)),
        ("Runs", ", ".join(f"{n} {s}" for s, n in statuses.items()) or "none"),
        ("Runs started / finished", f"{date(starts.min() if len(starts) else None)} / {date(ends.max() if len(ends) else None)}"),
        ("Versions", "; ".join(f"{lib} {', '.join(v)}" for lib, v in versions(board.runs).items()) or "unknown"),
        ("Config hashes", ", ".join(f"{h or 'none'} ({n} runs)" for h, n in hashes.items()) or "none"),
    ]
