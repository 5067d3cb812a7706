"""Entry points: write every leaderboard output for a results folder, or give the terminal text.

``erosion leaderboard RESULTS_DIR [--out DIR]`` calls :func:`render`; by default the outputs go
to ``RESULTS_DIR/leaderboard/``::

    leaderboard.md  leaderboard.csv  leaderboard.json  leaderboard.html  samples.html  plots/*.png
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from harness.core.errors import StoreError
from harness.core.store import ResultStore, atomic_write_text, unwritable_reason
from leaderboard import html, samples
from leaderboard.aggregate import Board, build_board
from leaderboard.artifacts import Plot
from leaderboard.columns import markdown_table, text_table
from leaderboard.detail_tables import plain
from leaderboard.document import HEADLINE_HEADING, Section, metadata, sections
from leaderboard.plots import write_plots
from leaderboard.tables import HEADLINE_FORMULA, json_payload, main_csv, scale_note, scope

OUT_SUBDIR = "leaderboard"


def render(results_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write Markdown, CSV, JSON, HTML, the sample viewer and PNG plots; return
    {"markdown"|"csv"|"json"|"html"|"samples"|"plot:<name>": path}."""
    board = build_board(results_dir)
    out = Path(out_dir) if out_dir is not None else board.root / OUT_SUBDIR
    check_out_dir(out, given=out_dir is not None)
    # Names come from result files (possibly another machine's): "$" in a method name is text, not mathtext.
    with matplotlib.rc_context({"text.parse_math": False}):
        plots = write_plots(board, out / "plots")
    full = sections(board, plots)
    payload = json_payload(board, {plot.name: plot.path.relative_to(out).as_posix() for plot in plots})
    generations = samples.generations(ResultStore(board.root, create=False), board.current)
    written = {  # kind: (file name, text)
        "markdown": ("leaderboard.md", markdown_document(board, full, out)),
        "csv": ("leaderboard.csv", main_csv(board)),
        "json": ("leaderboard.json", json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n"),
        "html": ("leaderboard.html", html.page(board, full)),
        "samples": (html.SAMPLES_PAGE, samples.page(generations, str(board.root))),
    }
    for name, text in written.values():
        atomic_write_text(out / name, text)
    return {kind: out / name for kind, (name, _) in written.items()} | {f"plot:{plot.name}": plot.path for plot in plots}


def check_out_dir(out: Path, given: bool) -> None:
    """Refuse, before writing anything, an output folder that is a file or cannot be written."""
    reason = unwritable_reason(out)
    if reason:
        fix = ("pass another folder with --out" if given
               else "pass a writable folder with --out (the results folder itself may stay read-only)")
        raise StoreError(f"Leaderboard output folder {out}: {reason}. Fix: {fix}.")


def terminal_table(results_dir: str | Path) -> str:
    """The compact main tables (plus starting-model checks and failed runs) as plain text."""
    board = build_board(results_dir)
    if board.runs.empty and not board.reports:
        return f"No runs in {board.root} yet."
    blocks = []
    for section in sections(board, [], compact=True):
        blocks.append(f"== {scope(section.model, section.scale)} ==  ({scale_note(section.scale)})")
        blocks += [text_table(section.checks)] if section.checks else []
        blocks += [text_table(table) for _, tables in section.groups for table in tables]
    failed = board.runs[board.runs["status"] == "failed"]
    if len(failed):
        blocks.append("\n".join(f"FAILED {run.run_id}: {run.error or 'no error recorded'}" for run in failed.itertuples()))
    blocks.append("Full tables, plots and the HTML page: `erosion leaderboard RESULTS_DIR`.")
    return "\n\n".join(blocks)


def markdown_document(board: Board, doc_sections: list[Section], out_dir: Path) -> str:
    lines = ["# erosion-bench leaderboard", ""]
    lines += [f"Headline: {HEADLINE_FORMULA}.", ""]
    lines += [f"- **{key}:** {value}" for key, value in metadata(board)]
    if not doc_sections:
        lines += ["", "No runs and no model reports in this folder yet."]
    for section in doc_sections:
        lines += ["", f"## {scope(section.model, section.scale)}", "", f"> {scale_note(section.scale)}"]
        lines += markdown_section(section, out_dir)
    return "\n".join(lines) + "\n"


def markdown_section(section: Section, out_dir: Path) -> list[str]:
    lines: list[str] = []
    if section.headline:
        lines += ["", f"### {HEADLINE_HEADING}"] + [line for plot in section.headline for line in plot_markdown(plot, out_dir)]
    if section.checks or section.details:
        lines += ["", "### Starting model"]
        lines += ["", markdown_table(section.checks)] if section.checks else []
        lines += [""] + [f"- **{k}:** {plain(v)}" for k, v in section.details] if section.details else []
    for heading, tables in section.groups:
        lines += ["", f"### {heading}"]
        for table in tables:
            lines += ["", markdown_table(table)]
    if not section.groups:
        lines += ["", "No runs for this model yet."]
    if section.plots:
        lines += ["", "### Plots"]
        lines += [line for plot in section.plots for line in plot_markdown(plot, out_dir)]
    return lines


def plot_markdown(plot: Plot, out_dir: Path) -> list[str]:
    return ["", f"![{plot.title}]({plot.path.relative_to(out_dir).as_posix()})", "", f"*{plot.title}. {plot.caption}*"]
