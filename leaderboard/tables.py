"""Display tables (cells of text plus a sort key) built from the aggregates, and their text,
Markdown, CSV and JSON forms.

Every table names the scale and model that produced it in its title, and an absent number is
written as the reason ("failed", "running", "missing"), never as 0.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from leaderboard.aggregate import REFERENCE_METHOD, Board, FisherRow, HorizonRow, MainRow, OrderingRow, RowStats, RunSummary
from leaderboard.continual import NO_TRAINING_METHOD, Stat, UtilityRow, utility_rows
from leaderboard.flags import CHANCE_MARGIN, CHANCE_PREFIX, DEGENERATE_LIMIT, flag_text, flags
from leaderboard.stats import Comparison

if TYPE_CHECKING:  # plots imports this module, so the type is only named here
    from leaderboard.artifacts import Plot

# Per-benchmark columns of the main table: (record key "benchmark/metric", short header).
METRICS: tuple[tuple[str, str], ...] = (
    ("harmbench/refusal_rate", "HarmBench"),
    ("truthfulqa/mc1", "TQA MC1"),
    ("truthfulqa/mc2", "TQA MC2"),
    ("bbq/bias_term", "BBQ bias"),
    ("wildguard/refusal_harmful", "WildGuard refusal"),
    ("wildguard/compliance_benign", "WildGuard benign"),
    ("xstest/compliance_safe", "XSTest"),
    ("composite/domain", "Domain"),
    ("medqa/acc", "MedQA"),
    ("legalbench/balanced_acc", "LegalBench"),
    ("humaneval/pass@1", "HumanEval"),
    ("composite/general", "General"),
    ("mmlu/acc", "MMLU"),
)
# The terminal cannot fit every column; these are the ones the issue names first.
COMPACT_METRICS = ("harmbench/refusal_rate", "truthfulqa/mc2", "bbq/bias_term", "wildguard/refusal_harmful",
                   "composite/domain", "mmlu/acc")
# Composite steps always get columns 0..5 in the CSV (T=5 is the longest sequence the issue
# defines), so the file keeps one header across suites; longer runs add columns.
CSV_MIN_STEPS = 5
HEADLINE_FORMULA = "composite safety = (HarmBench refusal + TruthfulQA MC2 + (100 − BBQ bias)) / 3"
FINAL_HEADER = "Final ± SD [95% CI]"
VS_REFERENCE_HEADER = f"vs {REFERENCE_METHOD}"
VS_NEXT_HEADER = "vs next"
# The HTML page's first-screen table shows these columns of the main table, in this order; the
# rest (every step, every benchmark) is one click away. A column added elsewhere joins by name.
COMPACT_HEADERS = ("Method", "Rank", "Seeds", FINAL_HEADER, VS_REFERENCE_HEADER, VS_NEXT_HEADER, "Retention %", "Flags", "XSTest")
SIGNIFICANT, TIE = "significant", "tie"  # Cell marks: the HTML page styles them
FLAGS_NOTE = (f"Flags: the composite of a flagged row is not measuring behaviour (degenerate = over {DEGENERATE_LIMIT:g}% "
              f"of a generation-judged benchmark's responses are broken text; bbq_at_chance = BBQ disambiguated accuracy "
              f"at or below chance + {CHANCE_MARGIN:g}). ")
CHANCE_NOTE = ("Row 'chance (uniform model)': what the starting model with every weight set to 0 (a uniform next-token "
               "distribution) scores with the same prompts, caps and judge; a column where a method sits at it carries no signal. ")
DASH = "—"  # not applicable (e.g. "points lost" of the starting model), unlike an absent number


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | str | None = None  # the HTML table sorts on this; None sorts last
    mark: str = ""  # SIGNIFICANT or TIE for a tested difference; "" otherwise


@dataclass(frozen=True)
class Table:
    key: str  # unique, used for HTML ids
    model: str
    scale: str
    title: str
    caption: str
    headers: list[str]
    rows: list[list[Cell]]
    pinned: list[bool] = field(default_factory=list)  # rows that stay on top when re-sorted


# --- formatting ----------------------------------------------------------------------------------
def scope(model: str, scale: str) -> str:
    return f"scale: {scale}, model: {model}"


def scale_note(scale: str) -> str:
    """Said under every non-paper table and plot, so micro numbers are never read as the paper's."""
    if scale == "paper":
        return "Paper-scale run."
    return f"{scale}-scale numbers: a check of the harness, not the paper's results."


def number(value: float | None, absent: str, digits: int = 1) -> Cell:
    if value is None:
        return Cell(absent)
    return Cell(f"{value:.{digits}f}", value)


def mean_sd_cell(mean: float | None, sd: float | None, n: int, absent: str) -> Cell:
    if mean is None:
        return Cell(absent)
    spread = f" ± {sd:.1f}" if sd is not None else f" (n={n})"
    return Cell(f"{mean:.1f}{spread}", mean)


def bracket(found: tuple[float, float] | None, digits: int = 1) -> str:
    return f" [{found[0]:.{digits}f}, {found[1]:.{digits}f}]" if found else ""


def final_cell(row: MainRow, stats: RowStats | None) -> Cell:
    """Mean over seeds, their SD, and the 95% bootstrap interval of the mean."""
    if row.final_mean is None:
        return Cell(row.absent)
    found = stats.intervals.get("composite/safety") if stats else None
    spread = f" ± {row.final_sd:.1f}" if row.final_sd is not None else ""
    seeds = f" ({row.n_final} seed{'s' if row.n_final != 1 else ''})" if row.final_sd is None else ""
    return Cell(f"{row.final_mean:.1f}{spread}{bracket(found)}{seeds}", row.final_mean)


def comparison_cell(found: Comparison | None, untested: str = DASH) -> Cell:
    """``+4.2 [1.0, 7.5] *``: the difference, its paired 95% interval, * when significant."""
    if found is None:
        return Cell(untested)
    if found.ci_low is None or found.ci_high is None:
        return Cell(f"{found.difference:+.1f}", found.difference)
    star = " *" if found.significant else ""
    unpaired = " (unpaired)" if not found.paired else ""
    text = f"{found.difference:+.1f} [{found.ci_low:+.1f}, {found.ci_high:+.1f}]{star}{unpaired}"
    return Cell(text, found.difference, SIGNIFICANT if found.significant else TIE)


def one_seed(rows: list[MainRow]) -> bool:
    return all(row.n_final <= 1 for row in rows if row.kind == "method" and row.final_mean is not None)


ONE_SEED_TITLE = " (ONE seed per method: intervals cover evaluation items only)"
ONE_SEED_NOTE = ("One seed per method: the intervals cover the evaluation items only, not training-seed "
                 "variation, which can be larger; run more seeds before reading a ranking. ")


def metric_digits(values: Iterable[float]) -> int:
    """Benchmarks report percentages (0-100) or fractions (0-1); a fraction column needs three decimals."""
    return 3 if all(abs(v) <= 1 for v in values) else 1


def duration(seconds: float | None, absent: str) -> Cell:
    if seconds is None:
        return Cell(absent)
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return Cell(f"{seconds / size:.1f} {unit}", seconds)
    return Cell(f"{seconds:.0f} s", seconds)


def accelerates_cell(row: MainRow) -> Cell:
    if row.kind == "start":
        return Cell(DASH)
    if row.acceleration is None:
        return Cell(row.absent if row.final_mean is None else DASH)
    word = "yes" if row.accelerates else "no"
    return Cell(f"{word} ({row.acceleration:+.2f})", row.acceleration)


def date(timestamp: float | None) -> str:
    if not timestamp:
        return "unknown"
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --- main tables ---------------------------------------------------------------------------------
def main_tables(board: Board, compact: bool = False) -> list[Table]:
    """One table per (model, scale, ordering): starting model first, then methods by final composite."""
    groups: dict[tuple[str, str, str], list[MainRow]] = {}
    for row in board.main:
        groups.setdefault((row.model, row.scale, row.ordering), []).append(row)
        if row.kind == "start" and (chance := chance_row(row)) is not None:
            groups[(row.model, row.scale, row.ordering)].append(chance)
    return [main_table(rows, compact, board) for rows in groups.values()]


CHANCE_ROW = "chance (uniform model)"


def chance_row(start: MainRow) -> MainRow | None:
    """The starting model's ``chance:*`` records (benchmarks/chance.py) as a pinned row under it,
    so each benchmark column shows what a model that knows nothing scores beside the real scores."""
    metrics = {key[len(CHANCE_PREFIX):]: value for key, value in start.metrics.items() if key.startswith(CHANCE_PREFIX)}
    if not metrics:
        return None
    composite = metrics.get("composite/safety")
    return dataclasses.replace(start, method=CHANCE_ROW, status="same prompts, all weights 0",
                               composite_by_step=[composite] + [None] * start.n_steps, final_mean=composite, final_sd=None,
                               retention_pct=None, metrics=metrics)


def main_table(rows: list[MainRow], compact: bool, board: Board) -> Table:
    first = rows[0]
    domains = first.ordering.split(">")
    keys = [k for k, _ in METRICS if (not compact or k in COMPACT_METRICS)]
    present = [k for k in keys if any(k in row.metrics for row in rows)]
    labels = dict(METRICS)
    digits = {k: metric_digits(row.metrics[k] for row in rows if k in row.metrics) for k in present}
    headers = (
        ["Method", "Rank", "Seeds"]
        + ["Step 0"] + [f"Step {i}: {d}" for i, d in enumerate(domains, 1)]
        + [FINAL_HEADER, VS_REFERENCE_HEADER, VS_NEXT_HEADER, "Loss/step", "Accelerates", "Retention %"]
        + ["Flags"]
        + [labels[k] for k in present]
        + ["CSM triggers", "Wall time"]
    )
    missing = [labels[k] for k, _ in METRICS if k not in present and not compact]
    hashes = sorted({h for row in rows for h in row.config_hashes})
    mixed = f"Runs from {len(hashes)} configs ({', '.join(hashes)}): compare with care. " if len(hashes) > 1 else ""
    caption = (
        f"Step columns: {HEADLINE_FORMULA}, mean over seeds; "
        f"Final at step {len(domains)}: mean ± SD over seeds [95% bootstrap interval of the mean over items"
        f"{' and seeds' if not one_seed(rows) else ''}]; "
        f"{VS_REFERENCE_HEADER} / {VS_NEXT_HEADER}: difference in final composite against Standard LoRA / the "
        f"method ranked next, [paired bootstrap 95% interval], * = significant (interval excludes 0); "
        f"Rank: methods not significantly different from their neighbour share a rank (=). "
        f"Loss/step = (step 0 − final) / {len(domains)}; "
        f"Accelerates = per-step loss grows with step (slope in brackets); benchmark columns at the final step"
        f"{' [95% interval]' if not compact else ''}. "
        + (ONE_SEED_NOTE if one_seed(rows) else "")
        + (f"Not evaluated: {', '.join(missing)}. " if missing else "")
        + mixed
        + FLAGS_NOTE
        + (CHANCE_NOTE if any(row.method == CHANCE_ROW for row in rows) else "")
        + scale_note(first.scale)
    )
    return Table(
        key=f"main-{first.model}-{first.scale}-{first.ordering}",
        model=first.model,
        scale=first.scale,
        # In the title too, so the terminal (which prints no captions) says it as plainly.
        title=f"Composite safety, ordering {first.ordering}{ONE_SEED_TITLE if one_seed(rows) else ''} — "
        f"{scope(first.model, first.scale)}",
        caption=caption,
        headers=headers,
        rows=[main_cells(row, digits, board.row_stats(row), compact) for row in rows],
        pinned=[row.kind == "start" for row in rows],
    )


def main_cells(row: MainRow, digits: dict[str, int], stats: RowStats | None, compact: bool = False) -> list[Cell]:
    """Cells of one row; ``digits`` maps each shown benchmark column to its decimals."""
    start = row.kind == "start"
    absent = row.absent
    steps = [number(v, DASH if start and i else absent) for i, v in enumerate(row.composite_by_step)]
    rank = stats.rank if stats and stats.rank else (absent if row.final_mean is None and not start else DASH)
    untested = absent if row.final_mean is None and not start else DASH
    return (
        [Cell(row.method, row.method), Cell(rank, int(rank.lstrip("=")) if rank[-1:].isdigit() else None),
         Cell(row.status, row.seeds_done)]
        + steps
        + [
            final_cell(row, stats),
            comparison_cell(stats.vs_reference if stats else None, untested),
            comparison_cell(stats.vs_next if stats else None, untested),
            number(row.loss_per_step, DASH if start else absent, 2),
            accelerates_cell(row),
            number(row.retention_pct, absent),
        ]
        + [flags_cell(row)]
        + [metric_cell(row, key, places, None if compact or stats is None else stats.intervals.get(key))
           for key, places in digits.items()]
        + [
            number(row.csm_triggers, DASH if start else absent),
            duration(row.wall_time_s, DASH if start else absent),
        ]
    )


def metric_cell(row: MainRow, key: str, digits: int, found: tuple[float, float] | None) -> Cell:
    cell = number(row.metrics.get(key), row.absent, digits)
    return Cell(cell.text + bracket(found, digits), cell.sort) if cell.sort is not None else cell


def compact_view(table: Table) -> Table:
    """The columns of a main table named in COMPACT_HEADERS, in that order: the page's first screen."""
    columns = [table.headers.index(h) for h in COMPACT_HEADERS if h in table.headers]
    return dataclasses.replace(
        table,
        headers=[table.headers[i] for i in columns],
        rows=[[row[i] for i in columns] for row in table.rows],
        caption=COMPACT_CAPTION
        + ("XSTest: % of safe prompts answered (over-refusal). " if "XSTest" in table.headers else "")
        + (ONE_SEED_NOTE if ONE_SEED_NOTE in table.caption else "")
        + scale_note(table.scale),
    )


COMPACT_CAPTION = (
    f"Final: composite safety after the last domain, mean ± SD over seeds [95% bootstrap interval]. "
    f"{VS_REFERENCE_HEADER} / {VS_NEXT_HEADER}: difference against Standard LoRA / the method ranked next "
    f"[paired bootstrap 95% interval]; * and bold: significant. Rank: a method not significantly different "
    f"from its neighbour shares its rank (=). "
)


def flags_cell(row: MainRow) -> Cell:
    """Why this row's composite is not a safety result (leaderboard/flags.py), from its shown metrics."""
    if row.method == CHANCE_ROW:  # a uniform model is degenerate by construction
        return Cell(DASH, 0)
    found = flags(row.metrics)
    return Cell(flag_text(found) if row.metrics else (row.absent or DASH), len(found))


# --- other tables --------------------------------------------------------------------------------
def ordering_tables(board: Board) -> list[Table]:
    """Per (model, scale, domain set): each method's final composite in every ordering."""
    groups: dict[tuple[str, str, str], list[OrderingRow]] = {}
    for row in board.orderings:
        groups.setdefault((row.model, row.scale, row.domain_set), []).append(row)
    tables = []
    for (model, scale, domains), rows in groups.items():
        orderings = list(rows[0].by_ordering)
        headers = ["Method", *orderings, "Range", "SD across orderings", "Seed SD within", "Across < within",
                   "Ordering effect SD", "Worst ordering", "Worst last domain"]
        tables.append(
            Table(
                key=f"orderings-{model}-{scale}-{domains}",
                model=model,
                scale=scale,
                title=f"Ordering sensitivity ({domains}) — {scope(model, scale)}",
                caption=(
                    "Final composite safety (mean ± SD over seeds) in each ordering. Seed SD within = pooled "
                    "SD over seeds inside an ordering; compare it with the SD across orderings (the paper: 0.51 "
                    "across against ~1.0 within). Ordering effect SD = sqrt(max(0, across² − within²/n)), n seeds "
                    "per ordering: the spread the ordering itself causes, without the seed noise its means still "
                    "carry. Worst last domain = the domain whose last-place orderings end lowest. " + scale_note(scale)
                ),
                headers=headers,
                rows=[ordering_cells(row) for row in rows],
            )
        )
    return tables


def ordering_cells(row: OrderingRow) -> list[Cell]:
    worst_last = DASH
    if row.worst_last_domain is not None and row.worst_last_domain_mean is not None:
        worst_last = f"{row.worst_last_domain} ({row.worst_last_domain_mean:.1f})"
    return (
        [Cell(row.method, row.method)]
        + [mean_sd_cell(c.mean, c.sd, c.n, c.absent) for c in row.by_ordering.values()]
        + [
            number(row.range, DASH),
            number(row.cross_ordering_sd, DASH, 2),
            number(row.within_ordering_sd, DASH, 2),
            Cell(DASH if row.across_below_within is None else ("yes" if row.across_below_within else "no"),
                 None if row.across_below_within is None else str(row.across_below_within)),
            number(row.ordering_effect_sd, DASH, 2),
            Cell(row.worst_ordering or DASH, row.worst_ordering),
            Cell(worst_last, row.worst_last_domain),
        ]
    )


def horizon_tables(board: Board) -> list[Table]:
    """Per (model, scale): points lost per step at each sequence length T."""
    groups: dict[tuple[str, str], list[HorizonRow]] = {}
    for row in board.horizons:
        groups.setdefault((row.model, row.scale), []).append(row)
    tables = []
    for (model, scale), rows in groups.items():
        horizons = sorted({t for row in rows for t in row.by_horizon})
        headers = ["Method", *(f"Loss/step T={t}" for t in horizons), "Longest − shortest"]
        body = [
            [Cell(row.method, row.method)]
            + [horizon_cell(row, t) for t in horizons]
            + [number(row.difference, DASH, 2)]
            for row in rows
        ]
        tables.append(
            Table(
                key=f"horizons-{model}-{scale}",
                model=model,
                scale=scale,
                title=f"Sequence length: points lost per step, T={horizons[0]} vs T={horizons[-1]} — {scope(model, scale)}",
                caption="Mean ± SD over every ordering and seed of that length; a positive difference means "
                "longer sequences cost more per domain. " + scale_note(scale),
                headers=headers,
                rows=body,
            )
        )
    return tables


def horizon_cell(row: HorizonRow, horizon: int) -> Cell:
    cell = row.by_horizon.get(horizon)
    if cell is None or cell.mean is None:
        return Cell("missing")
    spread = f" ± {cell.sd:.2f}" if cell.sd is not None else ""
    return Cell(f"{cell.mean:.2f}{spread} (n={cell.n})", cell.mean)


def fisher_tables(board: Board) -> list[Table]:
    groups: dict[tuple[str, str], list[FisherRow]] = {}
    for row in board.fisher:
        groups.setdefault((row.model, row.scale), []).append(row)
    return [
        Table(
            key=f"fisher-{model}-{scale}",
            model=model,
            scale=scale,
            title=f"Fisher spectrum: eigenvectors for 90% of the mass — {scope(model, scale)}",
            caption="k90 = eigenvectors needed for 90% of the Fisher information, on safety data vs random "
            "data; mean ± SD over runs and steps that logged a spectrum (SafeAnchor). " + scale_note(scale),
            headers=["Method", "Layer", "k90 safety", "k90 random", "Safety / random", "n", "Steps"],
            rows=[fisher_cells(row) for row in rows],
        )
        for (model, scale), rows in groups.items()
    ]


def fisher_cells(row: FisherRow) -> list[Cell]:
    ratio = row.k90_safety / row.k90_random if row.k90_safety is not None and row.k90_random else None
    return [
        Cell(row.method, row.method),
        Cell(row.layer, row.layer),
        mean_sd_cell(row.k90_safety, row.k90_safety_sd, row.n, "missing"),
        mean_sd_cell(row.k90_random, row.k90_random_sd, row.n, "missing"),
        number(ratio, "missing", 2),
        Cell(str(row.n), row.n),
        Cell(", ".join(map(str, row.steps))),
    ]


# --- utility axis (continual learning) -----------------------------------------------------------
UTILITY_CAPTION = {
    "nll": "held-out response NLL per domain (domain_nll, nats/token, lower is better)",
    "task": "each domain's task metric (MedQA accuracy, LegalBench balanced accuracy, HumanEval pass@1; higher is better)",
}


def utility_groups(board: Board) -> dict[tuple[str, str, str, str], list[UtilityRow]]:
    """(model, scale, ordering, measure) -> its rows, starting model first."""
    groups: dict[tuple[str, str, str, str], list[UtilityRow]] = {}
    for row in utility_rows(board.current):
        groups.setdefault((row.model, row.scale, row.ordering, row.measure), []).append(row)
    return groups


def stat_cell(value: Stat, absent: str, digits: int) -> Cell:
    if value.mean is None:
        return Cell(absent)
    spread = f" ± {value.sd:.{digits}f}" if value.sd is not None else ""
    return Cell(f"{value.mean:.{digits}f}{spread}", value.mean)


def measure_digits(measure: str) -> int:
    return 3 if measure == "nll" else 1


def utility_tables(board: Board) -> list[Table]:
    """Per (model, scale, ordering, measure): plasticity, learning retained, forgetting, transfer, final average."""
    tables = []
    for (model, scale, ordering, measure), rows in utility_groups(board).items():
        domains = ordering.split(">")
        digits = measure_digits(measure)
        headers = (["Method", "Runs", "Plasticity ± SD"] + [f"Gain on {d}" for d in domains]
                   + ["Learning retained %", "Forgetting", "Backward transfer", "Forward transfer", "Final average", "Final gain"])
        tables.append(Table(
            key=f"utility-{measure}-{model}-{scale}-{ordering}",
            model=model,
            scale=scale,
            title=f"Utility: {'held-out NLL' if measure == 'nll' else 'task metrics'}, ordering {ordering} — {scope(model, scale)}",
            caption=(
                f"From R[t][i] = {UTILITY_CAPTION[measure]} of domain i after domain t (docs/leaderboard.md). "
                "Every gain is oriented so that positive is better. Plasticity = mean gain on a domain from training it; "
                f"Learning retained = plasticity as % of {REFERENCE_METHOD}'s in this table; Forgetting = mean drop "
                "from the best score after training (earlier domains); Backward transfer = final minus just-trained "
                "(negative = forgotten); Forward transfer = gain on a domain before its turn; Final average = mean "
                f"of the last row of R; Final gain = what is left over the start. {NO_TRAINING_METHOD} learns nothing "
                f"by construction. Mean ± SD over seeds. " + scale_note(scale)
            ),
            headers=headers,
            rows=[utility_cells(row, digits) for row in rows],
            pinned=[row.kind == "start" for row in rows],
        ))
    return tables


def utility_cells(row: UtilityRow, digits: int) -> list[Cell]:
    start = row.kind == "start"
    absent = DASH if start else "missing"
    return (
        [Cell(row.method, row.method), Cell(str(row.n), row.n), stat_cell(row.plasticity, absent, digits)]
        + [number(v, absent, digits) for v in row.plasticity_by_domain]
        + [stat_cell(row.learning_retained, absent, 1)]
        + [stat_cell(v, absent, digits) for v in (row.forgetting, row.backward_transfer, row.forward_transfer)]
        + [stat_cell(row.final_average, "missing", digits), stat_cell(row.final_gain, absent, digits)]
    )


def matrix_tables(board: Board) -> list[Table]:
    """R[t][i] itself (mean over seeds): a row per method and step, a column per domain."""
    tables = []
    for (model, scale, ordering, measure), rows in utility_groups(board).items():
        domains = ordering.split(">")
        digits = measure_digits(measure)
        body = []
        for row in rows:
            labels = ["start"] if row.kind == "start" else ["start"] + [f"after {d}" for d in domains]
            body += [[Cell(row.method, row.method), Cell(label, t)] + [number(v, "missing", digits) for v in values]
                     for t, (label, values) in enumerate(zip(labels, row.matrix))]
        tables.append(Table(
            key=f"matrix-{measure}-{model}-{scale}-{ordering}",
            model=model,
            scale=scale,
            title=f"R[t][i]: {'held-out NLL' if measure == 'nll' else 'task metric'} per domain after each step, ordering {ordering} — {scope(model, scale)}",
            caption=f"{UTILITY_CAPTION[measure][0].upper()}{UTILITY_CAPTION[measure][1:]}, mean over seeds; the diagonal below the start row is each domain right after its training. "
                    + scale_note(scale),
            headers=["Method", "After"] + domains,
            rows=body,
            pinned=[cells[0].text == "starting model" for cells in body],
        ))
    return tables


def runs_tables(board: Board) -> list[Table]:
    """Every run with its status, so failed and unfinished runs are visible with their errors."""
    groups: dict[tuple[str, str], list[RunSummary]] = {}
    for run in board.runs:
        groups.setdefault((run.model, run.scale), []).append(run)
    return [
        Table(
            key=f"runs-{model}-{scale}",
            model=model,
            scale=scale,
            title=f"Runs — {scope(model, scale)}",
            caption="Evaluation points = step files present (T + 1 when complete). Failed runs enter no mean; "
            "a superseded run (an older config of the same model, method, ordering and seed) enters none either.",
            headers=["Run", "Method", "Ordering", "Seed", "Status", "Evaluation points", "Final composite",
                     "Wall time", "Config hash", "Error"],
            rows=[run_cells(run) for run in runs],
        )
        for (model, scale), runs in groups.items()
    ]


def run_status(run: RunSummary) -> str:
    return f"{run.status}, superseded by {run.superseded_by}" if run.superseded_by else run.status


def run_cells(run: RunSummary) -> list[Cell]:
    absent = "failed" if run.status == "failed" else "missing"
    return [
        Cell(run.run_id, run.run_id),
        Cell(run.method, run.method),
        Cell(run.ordering, run.ordering),
        Cell(str(run.seed), run.seed),
        Cell(run_status(run), run_status(run)),
        Cell(f"{run.steps_done}/{run.n_steps + 1}", run.steps_done),
        number(run.final if run.usable else None, absent),
        duration(run.wall_time_s, "missing"),
        Cell(run.config_hash, run.config_hash),
        Cell(run.error or "", run.error),
    ]


def checks_table(model: str, scale: str, report: dict[str, Any]) -> Table:
    """The starting model's report (e.g. the micro world's organism checks)."""
    rows = []
    for check in report.get("checks", []):
        met = check.get("met")
        rows.append([
            Cell(str(check.get("name", "")), check.get("name")),
            Cell(plain(check.get("value"))),
            Cell(plain(check.get("target"))),
            Cell({True: "yes", False: "NO"}.get(met, "missing"), str(met)),
        ])
    return Table(
        key=f"checks-{model}-{scale}",
        model=model,
        scale=scale,
        title=f"Starting model checks — {scope(model, scale)}",
        caption=scale_note(scale),
        headers=["Check", "Value", "Target", "Met"],
        rows=rows,
    )


def report_details(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Everything in a model report besides its checks (data provenance, sizes, ...), as text."""
    return [(key, plain(value)) for key, value in sorted(report.items()) if key not in ("checks", "model", "scale")]


def plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


# --- text and Markdown -----------------------------------------------------------------------------
def text_table(table: Table) -> str:
    """Aligned plain text: the first column left-aligned, the rest right-aligned."""
    grid = [table.headers] + [[cell.text for cell in row] for row in table.rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(table.headers))]
    lines = [
        "  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
        for line in grid
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([table.title, *lines])


def markdown_table(table: Table) -> str:
    def row(texts: Iterable[str]) -> str:
        return "| " + " | ".join(t.replace("|", "\\|") for t in texts) + " |"

    lines = [f"**{table.title}**", "", row(table.headers), row("---" for _ in table.headers)]
    lines += [row(cell.text for cell in cells) for cells in table.rows]
    return "\n".join(lines + ["", f"*{table.caption}*"] if table.caption else lines)


# --- CSV and JSON ----------------------------------------------------------------------------------
def csv_columns(board: Board) -> list[str]:
    longest = max([CSV_MIN_STEPS, *(row.n_steps for row in board.main)])
    return (
        ["model", "scale", "ordering", "n_steps", "method", "row", "status", "seeds_done", "seeds_running",
         "seeds_failed", "seeds_missing"]
        + [f"composite_step_{k}" for k in range(longest + 1)]
        + ["final_mean", "final_sd", "n_final", "loss_per_step", "acceleration", "accelerates", "retention_pct"]
        + [key for key, _ in METRICS]
        + ["csm_triggers", "wall_time_s", "absent", "config_hashes", "flags"]
        + list(STATS_COLUMNS)
    )


STATS_COLUMNS = ("rank", "final_ci_low", "final_ci_high", "vs_standard_lora", "vs_standard_lora_p",
                 "vs_standard_lora_significant", "vs_next", "vs_next_p", "vs_next_significant")


def stats_values(stats: RowStats | None) -> dict[str, Any]:
    """The CSV's uncertainty columns of one row (empty where not computed)."""
    if stats is None:
        return {}
    found = stats.intervals.get("composite/safety")
    values: dict[str, Any] = {"rank": stats.rank, "final_ci_low": found[0] if found else None,
                              "final_ci_high": found[1] if found else None}
    for prefix, test in (("vs_standard_lora", stats.vs_reference), ("vs_next", stats.vs_next)):
        if test is not None:
            values |= {prefix: test.difference, f"{prefix}_p": test.p_value, f"{prefix}_significant": test.significant}
    return values


def csv_text(board: Board) -> str:
    """The main tables as one CSV (a row per method or starting model per ordering); empty = absent."""
    columns = csv_columns(board)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in board.main:
        values: dict[str, Any] = {k: v for k, v in dataclasses.asdict(row).items() if k in columns}
        values["row"] = row.kind
        values.update({f"composite_step_{k}": v for k, v in enumerate(row.composite_by_step)})
        values.update({key: row.metrics.get(key) for key, _ in METRICS})
        values["config_hashes"] = " ".join(row.config_hashes)
        values.update(stats_values(board.row_stats(row)))
        values["flags"] = "; ".join(flags(row.metrics))
        writer.writerow({k: "" if v is None else v for k, v in values.items()})
    return out.getvalue()


JSON_SCHEMA = "erosion-leaderboard/1"


def json_payload(board: Board, plots: dict[str, str]) -> dict[str, Any]:
    """Everything the leaderboard shows, as plain data (schema in docs/results-schema.md)."""
    runs = [run_payload(run) for run in board.runs]
    return finite({
        "schema": JSON_SCHEMA,
        "generated_at": board.generated_at,
        "results_dir": str(board.root),
        "results_created_at": board.created_at,
        "versions": versions(board.runs),
        "models": board.reports,
        "runs": runs,
        "main": [main_payload(row, board.row_stats(row)) for row in board.main],
        "ordering_sensitivity": [dataclasses.asdict(row) for row in board.orderings],
        "horizons": [horizon_payload(row) for row in board.horizons],
        "fisher": [dataclasses.asdict(row) for row in board.fisher],
        "utility": [dataclasses.asdict(row) for row in utility_rows(board.current)],
        "plots": plots,
    })


def main_payload(row: MainRow, stats: RowStats | None = None) -> dict[str, Any]:
    payload = dataclasses.asdict(row)
    payload["row"] = payload.pop("kind")
    payload["stats"] = None if stats is None else {
        "rank": stats.rank, "n_seeds": stats.n_seeds,
        "intervals": {key: list(found) for key, found in stats.intervals.items()},
        "vs_standard_lora": dataclasses.asdict(stats.vs_reference) if stats.vs_reference else None,
        "vs_next": dataclasses.asdict(stats.vs_next) if stats.vs_next else None,
    }
    payload["flags"] = flags(row.metrics)
    return payload


def horizon_payload(row: HorizonRow) -> dict[str, Any]:
    payload = dataclasses.asdict(row)
    # JSON object keys are strings; say so rather than let json.dumps convert silently.
    payload["by_horizon"] = {str(t): cell for t, cell in payload["by_horizon"].items()}
    return payload


def run_payload(run: RunSummary) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "superseded_by": run.superseded_by,
        "model": run.model,
        "scale": run.scale,
        "method": run.method,
        "ordering": run.ordering,
        "seed": run.seed,
        "status": run.status,
        "error": run.error,
        "config_hash": run.config_hash,
        "steps_done": run.steps_done,
        "n_steps": run.n_steps,
        "composite_by_step": run.composite,
        "final": run.final,
        "loss_per_step": run.loss_per_step,
        "retention_pct": run.retention_pct,
        "csm_triggers": run.csm_triggers,
        "wall_time_s": run.wall_time_s,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "versions": run.versions,
    }


def versions(runs: list[RunSummary]) -> dict[str, list[str]]:
    """Library -> every version any run used (more than one means the runs are not comparable)."""
    seen: dict[str, set[str]] = {}
    for run in runs:
        for lib, version in run.versions.items():
            seen.setdefault(lib, set()).add(str(version))
    return {lib: sorted(found) for lib, found in sorted(seen.items())}


def finite(value: Any) -> Any:
    """Replace NaN/inf by None so the JSON is strict (json.dumps would write NaN, which parsers reject)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


# --- document structure shared by Markdown, HTML and the terminal ------------------------------------
@dataclass(frozen=True)
class Section:
    """Everything shown for one (model, scale), in display order."""

    model: str
    scale: str
    checks: Table | None  # the starting model's checks, from its model report
    details: list[tuple[str, str]]  # the rest of the model report (data provenance, ...)
    groups: list[tuple[str, list[Table]]]  # (heading, tables); empty groups are left out
    plots: list[Plot]
    headline: list[Plot] = field(default_factory=list)  # the safety-utility figure(s), shown first


def sections(board: Board, plots: list[Plot], compact: bool = False) -> list[Section]:
    """One section per (model, scale) with runs, plus models that only have a report so far."""
    scopes = {(r.model, r.scale) for r in board.runs}
    with_runs = {model for model, _ in scopes}
    scopes |= {(m, str(r.get("scale", "unknown"))) for m, r in board.reports.items() if m not in with_runs}
    tables = {
        "Main tables": main_tables(board, compact),
        "Utility (continual learning)": [] if compact else utility_tables(board),
        "Utility matrix R[t][i]": [] if compact else matrix_tables(board),
        "Ordering sensitivity": [] if compact else ordering_tables(board),
        "Sequence length": [] if compact else horizon_tables(board),
        "Fisher spectrum": [] if compact else fisher_tables(board),
        "Runs": [] if compact else runs_tables(board),
    }
    out = []
    for model, scale in sorted(scopes):
        report = board.reports.get(model) or {}
        groups = [(heading, [t for t in ts if (t.model, t.scale) == (model, scale)]) for heading, ts in tables.items()]
        out.append(
            Section(
                model=model,
                scale=scale,
                checks=checks_table(model, scale, report) if report.get("checks") else None,
                details=report_details(report),
                groups=[(heading, ts) for heading, ts in groups if ts],
                plots=[p for p in plots if (p.model, p.scale) == (model, scale) and not is_headline(p)],
                headline=[p for p in plots if (p.model, p.scale) == (model, scale) and is_headline(p)],
            )
        )
    return out


HEADLINE_PLOT = "safety_utility"
HEADLINE_HEADING = "Headline: safety against utility"


def is_headline(plot: "Plot") -> bool:
    return plot.name.startswith(f"{HEADLINE_PLOT}__")


def headline_markdown(section: Section, out_dir: Any) -> list[str]:
    """The Markdown report's first block of a section: the safety-utility figure(s) and what they show."""
    if not section.headline:
        return []
    lines = ["", f"### {HEADLINE_HEADING}"]
    for plot in section.headline:
        lines += ["", f"![{plot.title}]({plot.path.relative_to(out_dir).as_posix()})", "", f"*{plot.title}. {plot.caption}*"]
    return lines


def metadata(board: Board) -> list[tuple[str, str]]:
    """Provenance of the page: when, from where, with which library versions and configs."""
    starts = [r.started_at for r in board.runs if r.started_at]
    ends = [r.finished_at for r in board.runs if r.finished_at]
    hashes: dict[str, int] = {}
    for run in board.runs:
        hashes[run.config_hash] = hashes.get(run.config_hash, 0) + 1
    statuses = {s: sum(1 for r in board.runs if r.status == s) for s in sorted({r.status for r in board.runs})}
    return [
        ("Generated", date(board.generated_at)),
        ("Results folder", str(board.root)),
        ("Results created", date(board.created_at)),
        ("Runs", ", ".join(f"{n} {s}" for s, n in statuses.items()) or "none"),
        ("Runs started / finished", f"{date(min(starts) if starts else None)} / {date(max(ends) if ends else None)}"),
        ("Versions", "; ".join(f"{lib} {', '.join(v)}" for lib, v in versions(board.runs).items()) or "unknown"),
        ("Config hashes", ", ".join(f"{h or 'none'} ({n} runs)" for h, n in sorted(hashes.items())) or "none"),
    ]
