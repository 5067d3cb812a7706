"""The tables below the main ones, declared as columns: ordering sensitivity, sequence length, the
Fisher spectrum, the utility axis and its matrix R[t][i], every run, the starting model's checks.

They are shown (Markdown, HTML); the JSON stores their rows as data (leaderboard/tables.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from leaderboard.aggregate import Board
from leaderboard.columns import DASH, SHOWN, Cell, Column, Table, mean_sd_cell, number
from leaderboard.continual import NO_TRAINING_METHOD, REFERENCE_METHOD, START_METHOD
from leaderboard.tables import duration, scale_note, scope

UTILITY_CAPTION = {
    "nll": "held-out response NLL per domain (domain_nll, nats/token, lower is better)",
    "task": "each domain's task metric (MedQA accuracy, LegalBench balanced accuracy, HumanEval pass@1; higher is better)",
}
ORDERING_CAPTION = (
    "Final composite safety (mean ± SD over seeds) in each ordering. Seed SD within = pooled SD over seeds inside an "
    "ordering; compare it with the SD across orderings (the paper: 0.51 across against ~1.0 within). Ordering effect "
    "SD = sqrt(max(0, across² − within²/n)), n seeds per ordering: the spread the ordering itself causes, without the "
    "seed noise its means still carry. Worst last domain = the domain whose last-place orderings end lowest. ")
UTILITY_NOTE = (
    "Every gain is oriented so that positive is better. Plasticity = mean gain on a domain from training it; "
    f"Learning retained = plasticity as % of {REFERENCE_METHOD}'s in this table; Forgetting = mean drop from the best "
    "score after training (earlier domains); Backward transfer = final minus just-trained (negative = forgotten); "
    "Forward transfer = gain on a domain before its turn; Final average = mean of the last row of R; Final gain = what "
    f"is left over the start. {NO_TRAINING_METHOD} learns nothing by construction. Mean ± SD over seeds. ")


def shown(key: str, header: str, cell: Callable[[Any], Cell] | None = None) -> Column:
    """A shown column whose cell is the row's field ``key`` as text (sorted on the field), unless given."""
    return Column(key, header, cell or (lambda r: Cell(str(getattr(r, key)), getattr(r, key))), outputs=SHOWN)


METHOD = shown("method", "Method")


# --- ordering sensitivity ----------------------------------------------------------------------------
def worst_last_cell(row: Any) -> Cell:
    if row.worst_last_domain is None or row.worst_last_domain_mean is None:
        return Cell(DASH, row.worst_last_domain)
    return Cell(f"{row.worst_last_domain} ({row.worst_last_domain_mean:.1f})", row.worst_last_domain)


def yes_no(value: bool | None) -> Cell:
    return Cell(DASH if value is None else ("yes" if value else "no"), None if value is None else str(value))


def ordering_columns(orderings: list[str]) -> list[Column]:
    def cell(o: str) -> Callable[[Any], Cell]:
        return lambda r: mean_sd_cell(*(r.by_ordering[o][k] for k in ("mean", "sd", "n", "absent")))

    return [METHOD, *(shown(o, o, cell(o)) for o in orderings),
            shown("range", "Range", lambda r: number(r.range, DASH)),
            shown("cross_ordering_sd", "SD across orderings", lambda r: number(r.cross_ordering_sd, DASH, 2)),
            shown("within_ordering_sd", "Seed SD within", lambda r: number(r.within_ordering_sd, DASH, 2)),
            shown("across_below_within", "Across < within", lambda r: yes_no(r.across_below_within)),
            shown("ordering_effect_sd", "Ordering effect SD", lambda r: number(r.ordering_effect_sd, DASH, 2)),
            shown("worst_ordering", "Worst ordering", lambda r: Cell(r.worst_ordering or DASH, r.worst_ordering)),
            shown("worst_last_domain", "Worst last domain", worst_last_cell)]


def ordering_tables(board: Board) -> list[Table]:
    """Per (model, scale, domain set): each method's final composite in every ordering."""
    return [Table(f"orderings-{model}-{scale}-{domains}", model, scale,
                  f"Ordering sensitivity ({domains}) — {scope(model, scale)}", ORDERING_CAPTION + scale_note(scale),
                  ordering_columns(list(rows[0].by_ordering)), rows)
            for (model, scale, domains), rows in board.groups("orderings", ["model", "scale", "domain_set"])]


# --- sequence length ---------------------------------------------------------------------------------
def horizon_cell(row: Any, horizon: int) -> Cell:
    cell = row.by_horizon.get(horizon)
    if cell is None or cell["mean"] is None:
        return Cell("missing")
    spread = f" ± {cell['sd']:.2f}" if cell["sd"] is not None else ""
    return Cell(f"{cell['mean']:.2f}{spread} (n={cell['n']})", cell["mean"])


def horizon_tables(board: Board) -> list[Table]:
    """Per (model, scale): points lost per step at each sequence length T."""
    tables = []
    for (model, scale), rows in board.groups("horizons", ["model", "scale"]):
        horizons = sorted({t for row in rows for t in row.by_horizon})
        columns = [METHOD, *(shown(f"t{t}", f"Loss/step T={t}", lambda r, t=t: horizon_cell(r, t)) for t in horizons),
                   shown("difference", "Longest − shortest", lambda r: number(r.difference, DASH, 2))]
        tables.append(Table(
            f"horizons-{model}-{scale}", model, scale,
            f"Sequence length: points lost per step, T={horizons[0]} vs T={horizons[-1]} — {scope(model, scale)}",
            "Mean ± SD over every ordering and seed of that length; a positive difference means longer sequences "
            "cost more per domain. " + scale_note(scale), columns, rows))
    return tables


# --- Fisher spectrum ------------------------------------------------------------------------------------
FISHER_COLUMNS = [
    METHOD, shown("layer", "Layer"),
    shown("k90_safety", "k90 safety", lambda r: mean_sd_cell(r.k90_safety, r.k90_safety_sd, r.n, "missing")),
    shown("k90_random", "k90 random", lambda r: mean_sd_cell(r.k90_random, r.k90_random_sd, r.n, "missing")),
    shown("ratio", "Safety / random", lambda r: number(
        r.k90_safety / r.k90_random if r.k90_safety is not None and r.k90_random else None, "missing", 2)),
    shown("n", "n"), shown("steps", "Steps", lambda r: Cell(", ".join(map(str, r.steps)))),
]


def fisher_tables(board: Board) -> list[Table]:
    return [Table(f"fisher-{model}-{scale}", model, scale,
                  f"Fisher spectrum: eigenvectors for 90% of the mass — {scope(model, scale)}",
                  "k90 = eigenvectors needed for 90% of the Fisher information, on safety data vs random data; mean ± SD "
                  "over runs and steps that logged a spectrum (SafeAnchor). " + scale_note(scale), FISHER_COLUMNS, rows)
            for (model, scale), rows in board.groups("fisher", ["model", "scale"])]


# --- utility axis (continual learning) -------------------------------------------------------------------
def utility_columns(domains: list[str], digits: int) -> list[Column]:
    def absent(r: Any) -> str:
        return DASH if r.kind == "start" else "missing"

    def stat(key: str, header: str, places: int = digits, start: str | None = None) -> Column:
        def cell(r: Any) -> Cell:
            return mean_sd_cell(getattr(r, key)["mean"], getattr(r, key)["sd"], 0, start or absent(r), places, "")

        return shown(key, header, cell)

    return [METHOD, shown("n", "Runs"), stat("plasticity", "Plasticity ± SD"),
            *(shown(f"gain_{i}", f"Gain on {d}", lambda r, i=i: number(r.plasticity_by_domain[i], absent(r), digits))
              for i, d in enumerate(domains)),
            stat("learning_retained", "Learning retained %", 1), stat("forgetting", "Forgetting"),
            stat("backward_transfer", "Backward transfer"), stat("forward_transfer", "Forward transfer"),
            stat("final_average", "Final average", start="missing"), stat("final_gain", "Final gain")]


def measure_name(measure: str, plural: str = "") -> str:
    return "held-out NLL" if measure == "nll" else f"task metric{plural}"


def utility_groups(board: Board) -> list[tuple[tuple[str, str, str, str], list[Any], list[str], int]]:
    """(model, scale, ordering, measure), its rows (starting model first), domains and digits."""
    return [(key, rows, key[2].split(">"), 3 if key[3] == "nll" else 1)
            for key, rows in board.groups("utility", ["model", "scale", "ordering", "measure"])]


def utility_tables(board: Board) -> list[Table]:
    """Per (model, scale, ordering, measure): plasticity, learning retained, forgetting, transfer, final average."""
    return [Table(
        f"utility-{measure}-{model}-{scale}-{ordering}", model, scale,
        f"Utility: {measure_name(measure, 's')}, ordering {ordering} — {scope(model, scale)}",
        f"From R[t][i] = {UTILITY_CAPTION[measure]} of domain i after domain t (docs/leaderboard.md). " + UTILITY_NOTE
        + scale_note(scale), utility_columns(domains, digits), rows, [row.kind == "start" for row in rows])
        for (model, scale, ordering, measure), rows, domains, digits in utility_groups(board)]


def matrix_tables(board: Board) -> list[Table]:
    """R[t][i] itself (mean over seeds): a row per method and step, a column per domain."""
    tables = []
    for (model, scale, ordering, measure), rows, domains, digits in utility_groups(board):
        body = [SimpleNamespace(method=row.method, after=label, t=t, values=values) for row in rows
                for t, (label, values) in enumerate(zip(["start", *(f"after {d}" for d in domains)], row.matrix, strict=False))]
        columns = [METHOD, shown("after", "After", lambda r: Cell(r.after, r.t)),
                   *(shown(d, d, lambda r, i=i, places=digits: number(r.values[i], "missing", places))
                     for i, d in enumerate(domains))]
        caption = UTILITY_CAPTION[measure]
        tables.append(Table(
            f"matrix-{measure}-{model}-{scale}-{ordering}", model, scale,
            f"R[t][i]: {measure_name(measure)} per domain after each step, ordering {ordering} — {scope(model, scale)}",
            f"{caption[0].upper()}{caption[1:]}, mean over seeds; the diagonal below the start row is each domain right "
            "after its training. " + scale_note(scale), columns, body, [r.method == START_METHOD for r in body]))
    return tables


# --- runs and the starting model -----------------------------------------------------------------------
def run_status(run: Any) -> str:
    return f"{run.status}, superseded by {run.superseded_by}" if run.superseded_by else run.status


RUN_COLUMNS = [
    shown("run_id", "Run"), METHOD, shown("ordering", "Ordering"), shown("seed", "Seed"),
    shown("status", "Status", lambda r: Cell(run_status(r), run_status(r))),
    shown("steps_done", "Evaluation points", lambda r: Cell(f"{r.steps_done}/{r.n_steps + 1}", r.steps_done)),
    shown("final", "Final composite", lambda r: number(r.final if r.usable else None, "failed" if not r.usable else "missing")),
    shown("wall_time_s", "Wall time", lambda r: duration(r.wall_time_s, "missing")),
    shown("config_hash", "Config hash"), shown("error", "Error", lambda r: Cell(r.error or "", r.error)),
]


def runs_tables(board: Board) -> list[Table]:
    """Every run with its status, so failed and unfinished runs are visible with their errors."""
    return [Table(f"runs-{model}-{scale}", model, scale, f"Runs — {scope(model, scale)}",
                  "Evaluation points = step files present (T + 1 when complete). Failed runs enter no mean; a superseded "
                  "run (an older config of the same model, method, ordering and seed) enters none either.", RUN_COLUMNS, runs)
            for (model, scale), runs in board.groups("runs", ["model", "scale"])]


def plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


CHECK_COLUMNS = [
    Column("name", "Check", lambda c: Cell(str(c.get("name", "")), c.get("name")), outputs=SHOWN),
    Column("value", "Value", lambda c: Cell(plain(c.get("value"))), outputs=SHOWN),
    Column("target", "Target", lambda c: Cell(plain(c.get("target"))), outputs=SHOWN),
    Column("met", "Met", lambda c: Cell({True: "yes", False: "NO"}.get(c.get("met"), "missing"), str(c.get("met"))),
           outputs=SHOWN),
]


def checks_table(model: str, scale: str, report: dict[str, Any]) -> Table:
    """The starting model's report (e.g. the micro world's organism checks)."""
    return Table(f"checks-{model}-{scale}", model, scale, f"Starting model checks — {scope(model, scale)}", scale_note(scale),
                 CHECK_COLUMNS, list(report.get("checks", [])))
