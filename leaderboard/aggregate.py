"""Turn a results folder into the numbers the leaderboard shows.

Everything here is plain data (dataclasses of floats, strings and ``None``); ``tables``, ``plots``
and ``html`` only format it. A missing number is ``None``, never 0, and every row carries the
reason its numbers may be absent ("failed", "running", "missing") so the outputs can say so.

Rules (documented in docs/leaderboard.md):

* A run contributes every evaluation point it has, unless its status is ``failed``: a failed run
  is listed with its error but none of its numbers enter a mean.
* A run's final composite is its composite at step T (T = number of domains in its ordering); a
  run that has not reached step T has no final.
* Means and SDs are over seeds (SD with ddof=1; ``None`` for a single seed).
* Intervals, paired tests and tie-aware ranks come from the stored bootstrap draws
  (``leaderboard/stats.py``); a step stored without draws simply has none.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np

from harness.core.store import MARKER, ResultStore, RunInfo, ordering_label, read_json
from leaderboard.stats import Comparison, compare, interval, seed_mean_draws, tie_ranks

HEADLINE = "composite/safety"
CSM_EVENT = "csm_trigger"
START_METHOD = "starting model"
REFERENCE_METHOD = "standard_lora"  # every method is tested against it

T = TypeVar("T")
K = TypeVar("K")


@dataclass(frozen=True)
class RunSummary:
    """One (model, method, ordering, seed) run with the numbers derived from its step files."""

    run_id: str
    model: str
    scale: str
    method: str
    domains: tuple[str, ...]
    seed: int
    status: str
    error: str | None
    config_hash: str
    wall_time_s: float | None
    csm_triggers: int
    steps_done: int  # evaluation points present (0 .. T+1)
    metrics_by_step: dict[int, dict[str, float]]
    versions: dict[str, str]
    started_at: float | None
    finished_at: float | None
    fisher: dict[int, dict[str, Any]]  # step -> {layer: {k90_*, trace_*, eigenvalues_*}}
    superseded_by: str | None = None  # a newer run (another config) of the same model/method/ordering/seed

    @property
    def ordering(self) -> str:
        return ordering_label(list(self.domains))

    @property
    def n_steps(self) -> int:
        return len(self.domains)

    @property
    def usable(self) -> bool:
        return self.status != "failed"

    @property
    def cell(self) -> tuple[str, str, str, str, int]:
        """What a run measures; two runs of one cell differ only in config (a re-run)."""
        return self.model, self.scale, self.method, self.ordering, self.seed

    def value(self, step: int, key: str = HEADLINE) -> float | None:
        return self.metrics_by_step.get(step, {}).get(key)

    @property
    def composite(self) -> list[float | None]:
        return [self.value(step) for step in range(self.n_steps + 1)]

    @property
    def final(self) -> float | None:
        return self.value(self.n_steps)

    @property
    def loss_per_step(self) -> float | None:
        return loss_per_step(self.composite)

    @property
    def acceleration(self) -> float | None:
        return loss_acceleration(self.composite)

    @property
    def retention_pct(self) -> float | None:
        start, final = self.value(0), self.final
        if start is None or final is None or start == 0:
            return None
        return 100.0 * final / start


@dataclass(frozen=True)
class MainRow:
    """One row of a main table: a method (over its seeds) or the starting model, in one ordering."""

    model: str
    scale: str
    ordering: str
    n_steps: int
    method: str
    kind: str  # "start" or "method"
    status: str
    absent: str  # what an empty cell means in this row: "failed", "running", "missing" or ""
    seeds_done: int
    seeds_running: int
    seeds_failed: int
    seeds_missing: int
    composite_by_step: list[float | None]
    final_mean: float | None
    final_sd: float | None
    n_final: int
    config_hashes: list[str]
    loss_per_step: float | None
    acceleration: float | None
    accelerates: bool | None
    retention_pct: float | None
    metrics: dict[str, float]
    csm_triggers: float | None
    wall_time_s: float | None


@dataclass(frozen=True)
class OrderingCell:
    mean: float | None
    sd: float | None
    n: int
    absent: str


@dataclass(frozen=True)
class OrderingRow:
    """Final composite of one method across the orderings of one domain set."""

    model: str
    scale: str
    domain_set: str
    method: str
    by_ordering: dict[str, OrderingCell]
    range: float | None
    cross_ordering_sd: float | None
    within_ordering_sd: float | None
    worst_ordering: str | None
    worst_last_domain: str | None
    worst_last_domain_mean: float | None
    # The paper's comparison (cross-ordering SD 0.51 below within-ordering seed SD ~1.0), and the
    # ordering effect with the seed noise that ordering means still carry taken out (see ordering_effect_sd).
    across_below_within: bool | None = None
    ordering_effect_sd: float | None = None


@dataclass(frozen=True)
class HorizonCell:
    mean: float | None
    sd: float | None
    n: int


@dataclass(frozen=True)
class HorizonRow:
    """Points lost per step at each sequence length T that a method was run with."""

    model: str
    scale: str
    method: str
    by_horizon: dict[int, HorizonCell]
    shortest: int
    longest: int
    difference: float | None  # loss/step at the longest T minus at the shortest T


@dataclass(frozen=True)
class FisherRow:
    """Eigenvectors needed for 90% of the Fisher mass on safety vs random data, for one layer."""

    model: str
    scale: str
    method: str
    layer: str
    k90_safety: float | None
    k90_safety_sd: float | None
    k90_random: float | None
    k90_random_sd: float | None
    n: int  # (run, step) pairs measured
    steps: list[int]


@dataclass(frozen=True)
class StepDraws:
    """One evaluation point's bootstrap draws ("benchmark/metric" -> draws) and which items each benchmark scored."""

    draws: dict[str, np.ndarray]
    items: dict[str, str]  # benchmark -> digest of its item ids


@dataclass(frozen=True)
class RowStats:
    """Uncertainty of one main-table row: its value is the mean over ``n_seeds`` runs."""

    intervals: dict[str, tuple[float, float]]  # key -> 95% interval of the row's value at its step
    rank: str  # "1", "=2" (shared: no significant difference from a neighbour), "" without a final
    vs_reference: Comparison | None  # headline against Standard LoRA's row
    vs_next: Comparison | None  # headline against the row ranked just below
    n_seeds: int


@dataclass
class Board:
    """Everything the leaderboard renders."""

    root: Path
    generated_at: float
    created_at: float | None
    runs: list[RunSummary]  # every run, superseded ones included (see ``current``)
    reports: dict[str, dict[str, Any]]
    main: list[MainRow] = field(default_factory=list)
    orderings: list[OrderingRow] = field(default_factory=list)
    horizons: list[HorizonRow] = field(default_factory=list)
    fisher: list[FisherRow] = field(default_factory=list)
    stats: dict[tuple[str, str, str, str], RowStats] = field(default_factory=dict)  # by row_key(row)

    def row_stats(self, row: MainRow) -> RowStats | None:
        return self.stats.get(row_key(row))

    @property
    def current(self) -> list[RunSummary]:
        """The runs the tables and plots use: the newest run of each cell."""
        return [run for run in self.runs if run.superseded_by is None]


# --- small statistics ---------------------------------------------------------------------------
def clean(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample SD of the present values; SD is None below two values."""
    vals = clean(values)
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def mean(values: Iterable[float | None]) -> float | None:
    return mean_sd(values)[0]


def loss_per_step(composite: list[float | None]) -> float | None:
    """Mean points lost per step, (c_0 - c_T) / T: positive means the score fell."""
    steps = len(composite) - 1
    if steps < 1 or composite[0] is None or composite[-1] is None:
        return None
    return (composite[0] - composite[-1]) / steps


def loss_acceleration(composite: list[float | None]) -> float | None:
    """Least-squares slope of the per-step losses against the step index.

    Positive means each domain costs more than the one before. Needs every step and T >= 2."""
    if len(composite) < 3 or any(v is None for v in composite):
        return None
    losses = -np.diff(np.asarray(composite, dtype=float))
    return float(np.polyfit(np.arange(1, len(losses) + 1), losses, 1)[0])


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    groups: dict[K, list[T]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return dict(groups)


def domain_set(run: RunSummary) -> str:
    return ",".join(sorted(run.domains))


def absent_reason(runs: list[RunSummary]) -> str:
    """Why a cell over ``runs`` may have no number."""
    if not runs:
        return "missing"
    if all(run.status == "failed" for run in runs):
        return "failed"
    if any(run.status == "running" for run in runs):
        return "running"
    return "missing"


# --- loading -------------------------------------------------------------------------------------
def load_runs(store: ResultStore) -> list[RunSummary]:
    return mark_superseded([summarize_run(store, info) for info in store.runs()])


def mark_superseded(runs: list[RunSummary]) -> list[RunSummary]:
    """Keep the newest run of each cell; older ones (an earlier config) are marked, not averaged in.

    Run ids carry the config hash, so re-running a cell with a changed config leaves the old run
    beside the new one; counting both would turn one seed into two."""
    newest: dict[tuple[str, str, str, str, int], RunSummary] = {}
    for run in sorted(runs, key=lambda r: (r.started_at or 0.0, r.run_id)):
        newest[run.cell] = run
    return [
        run if newest[run.cell] is run else dataclasses.replace(run, superseded_by=newest[run.cell].run_id)
        for run in runs
    ]


def summarize_run(store: ResultStore, info: RunInfo) -> RunSummary:
    payloads = []
    while (payload := store.read_step(info.run_id, len(payloads))) is not None:
        payloads.append(payload)
    metrics: dict[int, dict[str, float]] = defaultdict(dict)
    for payload in payloads:
        for rec in payload["records"]:
            value = rec.get("value")
            # A NaN or null value is a measurement that did not happen: leave it missing.
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics[int(rec["step"])][f"{rec['benchmark']}/{rec['metric']}"] = float(value)
    step_times = clean(step_seconds(p) for p in payloads)
    events = [e for p in payloads for e in listed(p.get("events")) if isinstance(e, dict)]
    # RunInfo's wall time is the whole run; an interrupted run may only have per-step times.
    wall = info.wall_time_s or (sum(step_times) if step_times else None)
    return RunSummary(
        run_id=info.run_id,
        model=info.model,
        scale=info.scale,
        method=info.method,
        domains=tuple(info.ordering),
        seed=info.seed,
        status=info.status,
        error=info.error,
        config_hash=info.config_hash,
        wall_time_s=wall,
        csm_triggers=sum(1 for e in events if e.get("type") == CSM_EVENT),
        steps_done=len(payloads),
        metrics_by_step=dict(metrics),
        versions=dict(info.versions),
        started_at=info.started_at or None,
        finished_at=info.finished_at,
        fisher={i: layers for i, p in enumerate(payloads) if (layers := fisher_layers(p))},
    )


def step_seconds(payload: dict[str, Any]) -> float | None:
    """A step's wall time: ``wall_time_s`` where written, else its training plus evaluation seconds."""
    if (total := number_or_none(payload.get("wall_time_s"))) is not None:
        return total
    parts = [v for k in ("train_seconds", "eval_seconds") if (v := number_or_none(payload.get(k))) is not None]
    return float(sum(parts)) if parts else None


def fisher_layers(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A step's Fisher spectrum per layer, keeping only well-formed entries: the file may come from
    another machine or version, and a malformed entry must not take the whole leaderboard down."""
    spectrum = payload.get("fisher_spectrum")
    layers = spectrum.get("layers") if isinstance(spectrum, dict) else None
    if not isinstance(layers, dict):
        return {}
    out = {}
    for layer, spec in layers.items():
        if not isinstance(spec, dict):
            continue
        entry: dict[str, Any] = {key: number_or_none(spec.get(key)) for key in ("k90_safety", "k90_random", "trace_safety", "trace_random")}
        for kind in ("safety", "random"):
            entry[f"eigenvalues_{kind}"] = [v for v in listed(spec.get(f"eigenvalues_{kind}")) if number_or_none(v) is not None]
        out[str(layer)] = entry
    return out


def listed(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty list (a field of the wrong type reads as absent)."""
    return value if isinstance(value, list) else []


def number_or_none(value: Any) -> float | None:
    """A finite number as float; anything else (a string, a boolean, NaN) as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def finite_only(value: Any) -> Any:
    """A copy of a JSON value with NaN and infinities replaced by None (they are not valid JSON out)."""
    if isinstance(value, dict):
        return {str(k): finite_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_only(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def model_reports(store: ResultStore) -> dict[str, dict[str, Any]]:
    """Starting-model reports that are mappings, with their checks reduced to mappings."""
    out = {}
    for name, report in store.model_reports().items():
        if not isinstance(report, dict):
            warnings.warn(f"{store.root / 'models' / (name + '.json')}: holds a {type(report).__name__}, not a "
                          f"model report; left out. Fix: delete it (the next `erosion run` writes it again).")
            continue
        report = finite_only(report)
        report["checks"] = [c for c in listed(report.get("checks")) if isinstance(c, dict)]
        out[name] = report
    return out


# --- main tables -------------------------------------------------------------------------------
def main_rows(runs: list[RunSummary]) -> list[MainRow]:
    """Rows of every (model, scale, ordering) table: the starting model, then methods by final."""
    out: list[MainRow] = []
    # A method or seed run in some ordering of a domain set is expected in all of them: where it
    # is absent, its row says "missing" instead of silently disappearing.
    for (model, scale, _), set_runs in sorted(group_by(runs, lambda r: (r.model, r.scale, domain_set(r))).items()):
        methods = sorted({r.method for r in set_runs})
        seeds = {r.seed for r in set_runs}
        for ordering, table_runs in sorted(group_by(set_runs, lambda r: r.ordering).items()):
            by_method = group_by(table_runs, lambda r: r.method)
            rows = [method_row(m, by_method.get(m, []), seeds, model, scale, ordering) for m in methods]
            rows.sort(key=lambda row: (row.final_mean is None, -(row.final_mean or 0.0), row.method))
            out.append(start_row(table_runs, model, scale, ordering))
            out.extend(rows)
    return out


def seed_counts(runs: list[RunSummary], seeds: set[int]) -> dict[str, int]:
    counts = {status: sum(1 for r in runs if r.status == status) for status in ("done", "running", "failed")}
    counts["missing"] = len(seeds - {r.seed for r in runs})
    return counts


def status_text(counts: dict[str, int]) -> str:
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    return ", ".join(parts) if parts else "missing"


def method_row(
    method: str, runs: list[RunSummary], seeds: set[int], model: str, scale: str, ordering: str
) -> MainRow:
    n_steps = len(ordering.split(">"))
    usable = [r for r in runs if r.usable]
    finals = [r for r in usable if r.final is not None]
    final_mean, final_sd = mean_sd(r.final for r in finals)
    reached_end = [r for r in usable if n_steps in r.metrics_by_step]
    acceleration = mean(r.acceleration for r in usable)
    counts = seed_counts(runs, seeds)
    return MainRow(
        model=model,
        scale=scale,
        ordering=ordering,
        n_steps=n_steps,
        method=method,
        kind="method",
        status=status_text(counts),
        absent=absent_reason(runs),
        seeds_done=counts["done"],
        seeds_running=counts["running"],
        seeds_failed=counts["failed"],
        seeds_missing=counts["missing"],
        composite_by_step=[mean(r.value(step) for r in usable) for step in range(n_steps + 1)],
        final_mean=final_mean,
        final_sd=final_sd,
        n_final=len(finals),
        config_hashes=sorted({r.config_hash for r in runs}),
        loss_per_step=mean(r.loss_per_step for r in usable),
        acceleration=acceleration,
        accelerates=None if acceleration is None else acceleration > 0,
        retention_pct=mean(r.retention_pct for r in usable),
        metrics=mean_metrics(reached_end, lambda r: r.n_steps),
        csm_triggers=mean(r.csm_triggers for r in usable) if usable else None,
        wall_time_s=mean(r.wall_time_s for r in usable),
    )


def start_row(runs: list[RunSummary], model: str, scale: str, ordering: str) -> MainRow:
    """The starting model: step 0 of every usable run in the table (all evaluate the same model)."""
    n_steps = len(ordering.split(">"))
    usable = [r for r in runs if r.usable and r.value(0) is not None]
    start_mean, start_sd = mean_sd(r.value(0) for r in usable)
    return MainRow(
        model=model,
        scale=scale,
        ordering=ordering,
        n_steps=n_steps,
        method=START_METHOD,
        kind="start",
        status=f"step 0 ({len(usable)} runs)",
        absent=absent_reason(runs) if not usable else "missing",
        seeds_done=len(usable),
        seeds_running=0,
        seeds_failed=0,
        seeds_missing=0,
        composite_by_step=[start_mean] + [None] * n_steps,
        final_mean=start_mean,
        final_sd=start_sd,
        n_final=len(usable),
        config_hashes=sorted({r.config_hash for r in usable}),
        loss_per_step=None,
        acceleration=None,
        accelerates=None,
        retention_pct=100.0 if usable else None,
        metrics=mean_metrics(usable, lambda r: 0),
        csm_triggers=None,
        wall_time_s=None,
    )


def mean_metrics(runs: list[RunSummary], step_of: Callable[[RunSummary], int]) -> dict[str, float]:
    """Mean of every metric over ``runs`` at each run's chosen step; keys nobody measured are left out."""
    per_key: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for key, value in run.metrics_by_step.get(step_of(run), {}).items():
            per_key[key].append(value)
    return {key: statistics.fmean(values) for key, values in sorted(per_key.items())}


# --- ordering sensitivity ----------------------------------------------------------------------
def ordering_rows(runs: list[RunSummary]) -> list[OrderingRow]:
    """Per method, its final composite in each ordering of the same domains (>= 2 orderings)."""
    out: list[OrderingRow] = []
    groups = group_by(runs, lambda r: (r.model, r.scale, domain_set(r)))
    for (model, scale, domains), group in sorted(groups.items()):
        orderings = sorted({r.ordering for r in group})
        if len(orderings) < 2:
            continue
        by_method = group_by(group, lambda r: r.method)
        rows = [ordering_row(model, scale, domains, m, by_method[m], orderings) for m in sorted(by_method)]
        out.extend(sorted(rows, key=ordering_sort_key))
    return out


def ordering_sort_key(row: OrderingRow) -> tuple[bool, float, str]:
    """Best mean final composite over orderings first; methods with no finals last."""
    overall = mean(cell.mean for cell in row.by_ordering.values())
    return overall is None, -(overall or 0.0), row.method


def ordering_row(
    model: str, scale: str, domains: str, method: str, runs: list[RunSummary], orderings: list[str]
) -> OrderingRow:
    by_ordering = group_by(runs, lambda r: r.ordering)
    cells = {o: ordering_cell(by_ordering.get(o, [])) for o in orderings}
    means = {o: c.mean for o, c in cells.items() if c.mean is not None}
    # Pooled within-ordering SD: sqrt of the mean seed variance, over orderings with >= 2 seeds.
    variances = [c.sd**2 for c in cells.values() if c.sd is not None]
    by_last = group_by(means.items(), lambda item: item[0].split(">")[-1])
    last_means = {last: statistics.fmean(v for _, v in items) for last, items in by_last.items()}
    # Spread and "worst" only mean something once two orderings have finals.
    compared = len(means) > 1
    cross = statistics.stdev(means.values()) if compared else None
    within = math.sqrt(statistics.fmean(variances)) if variances else None
    worst_last = min(last_means, key=last_means.__getitem__) if compared else None
    return OrderingRow(
        model=model,
        scale=scale,
        domain_set=domains,
        method=method,
        by_ordering=cells,
        range=(max(means.values()) - min(means.values())) if compared else None,
        cross_ordering_sd=cross,
        within_ordering_sd=within,
        worst_ordering=min(means, key=means.__getitem__) if compared else None,
        worst_last_domain=worst_last,
        worst_last_domain_mean=last_means.get(worst_last) if worst_last else None,
        across_below_within=(cross < within) if cross is not None and within is not None else None,
        ordering_effect_sd=ordering_effect_sd(cross, within, [c.n for c in cells.values() if c.mean is not None]),
    )


def ordering_effect_sd(cross: float | None, within: float | None, seeds: list[int]) -> float | None:
    """SD of the ordering effect itself: a mean over n seeds still carries seed variance within²/n,
    so var(ordering means) = σ²_ordering + within²/n (one-way random effects; n the harmonic mean
    of seeds per ordering), and σ_ordering = sqrt(max(0, cross² − within²/n))."""
    if cross is None or within is None or not seeds or min(seeds) < 1:
        return None
    n = len(seeds) / sum(1.0 / k for k in seeds)
    return math.sqrt(max(0.0, cross**2 - within**2 / n))


def ordering_cell(runs: list[RunSummary]) -> OrderingCell:
    finals = [r.final for r in runs if r.usable and r.final is not None]
    cell_mean, cell_sd = mean_sd(finals)
    return OrderingCell(mean=cell_mean, sd=cell_sd, n=len(finals), absent=absent_reason(runs))


# --- sequence length -----------------------------------------------------------------------------
def horizon_rows(runs: list[RunSummary]) -> list[HorizonRow]:
    """Loss per step by sequence length T, for methods run at two or more lengths (e.g. 3 and 5)."""
    out: list[HorizonRow] = []
    for (model, scale, method), group in sorted(group_by(runs, lambda r: (r.model, r.scale, r.method)).items()):
        by_t = group_by([r for r in group if r.usable and r.loss_per_step is not None], lambda r: r.n_steps)
        if len(by_t) < 2:
            continue
        cells = {t: HorizonCell(*mean_sd(r.loss_per_step for r in rs), n=len(rs)) for t, rs in sorted(by_t.items())}
        shortest, longest = min(cells), max(cells)
        short_mean, long_mean = cells[shortest].mean, cells[longest].mean
        difference = long_mean - short_mean if short_mean is not None and long_mean is not None else None
        out.append(HorizonRow(model, scale, method, cells, shortest, longest, difference))
    return out


# --- Fisher spectrum -----------------------------------------------------------------------------
def fisher_rows(runs: list[RunSummary]) -> list[FisherRow]:
    """k90 (safety vs random data) per layer, over every usable run and step that logged a spectrum."""
    entries = [
        (run, step, layer, spec)
        for run in runs
        if run.usable
        for step, layers in run.fisher.items()
        for layer, spec in layers.items()
        if isinstance(spec, dict)
    ]
    out: list[FisherRow] = []
    groups = group_by(entries, lambda e: (e[0].model, e[0].scale, e[0].method, e[2]))
    for (model, scale, method, layer), items in sorted(groups.items()):
        safety = mean_sd(item[3].get("k90_safety") for item in items)
        random = mean_sd(item[3].get("k90_random") for item in items)
        steps = sorted({item[1] for item in items})
        out.append(FisherRow(model, scale, method, layer, *safety, *random, n=len(items), steps=steps))
    return out


@dataclass(frozen=True)
class Spectrum:
    """One logged eigenvalue list (the top of the spectrum, descending) with tr(F) when logged."""

    eigenvalues: list[float]
    trace: float | None
    k90: float | None


def spectra(runs: list[RunSummary], model: str, scale: str, method: str) -> dict[str, dict[str, list[Spectrum]]]:
    """Every logged spectrum per layer and data kind ("safety", "random") for one method."""
    out: dict[str, dict[str, list[Spectrum]]] = defaultdict(lambda: {"safety": [], "random": []})
    for run in runs:
        if not (run.usable and (run.model, run.scale, run.method) == (model, scale, method)):
            continue
        for layers in run.fisher.values():
            for layer, spec in layers.items():
                for kind in ("safety", "random"):
                    values = clean(spec.get(f"eigenvalues_{kind}") or [])
                    trace, k90 = spec.get(f"trace_{kind}"), spec.get(f"k90_{kind}")
                    if values:
                        out[layer][kind].append(Spectrum(
                            values, float(trace) if isinstance(trace, (int, float)) and trace > 0 else None,
                            float(k90) if isinstance(k90, (int, float)) else None))
    return dict(out)


# --- uncertainty: intervals, paired tests, ranks -------------------------------------------------
def row_key(row: MainRow) -> tuple[str, str, str, str]:
    return row.model, row.scale, row.ordering, row.method


def read_step_draws(store: ResultStore, run_id: str, step: int) -> StepDraws | None:
    payload = store.read_bootstrap(run_id, step)
    if payload is None:
        return None
    draws = {key: np.array([np.nan if v is None else v for v in values], dtype=float)
             for key, values in payload["draws"].items() if isinstance(values, list)}
    items = {name: str(info.get("digest")) for name, info in (payload.get("items") or {}).items() if isinstance(info, dict)}
    return StepDraws(draws, items)


def pooled_draws(steps: list[StepDraws], label: str) -> dict[str, np.ndarray]:
    """Per key measured in every run, the draws of the seed mean (stats.seed_mean_draws)."""
    if not steps:
        return {}
    keys = set.intersection(*(set(s.draws) for s in steps))
    lengths = {len(s.draws[k]) for s in steps for k in keys}
    if len(lengths) > 1:  # runs scored with different draw counts cannot be paired draw by draw
        return {}
    return {key: seed_mean_draws([s.draws[key] for s in steps], f"{label}|{key}") for key in sorted(keys)}


def same_items(a: list[StepDraws], b: list[StepDraws]) -> bool:
    """True when every run on both sides scored each shared benchmark on the same items."""
    digests: dict[str, set[str]] = defaultdict(set)
    for step in a + b:
        for name, digest in step.items.items():
            digests[name].add(digest)
    return all(len(found) == 1 for found in digests.values())


def comparison(row: MainRow, other: MainRow, draws: dict[str, list[StepDraws]], pooled: dict[str, dict[str, np.ndarray]]) -> Comparison | None:
    this, that = pooled[row.method].get(HEADLINE), pooled[other.method].get(HEADLINE)
    if this is None or that is None or row.final_mean is None or other.final_mean is None or len(this) != len(that):
        return None
    paired = same_items(draws[row.method], draws[other.method])
    return compare(this, that, row.final_mean - other.final_mean, other.method, paired)


def table_stats(store: ResultStore, rows: list[MainRow], runs: list[RunSummary]) -> dict[tuple[str, str, str, str], RowStats]:
    """Stats of one main table (rows of one ordering, starting model first, then methods best first)."""
    methods = [row for row in rows if row.kind == "method"]
    draws: dict[str, list[StepDraws]] = {}
    for row in rows:
        step = 0 if row.kind == "start" else row.n_steps
        chosen = [r for r in runs if r.usable and r.ordering == row.ordering and step in r.metrics_by_step
                  and (row.kind == "start" or r.method == row.method)]
        found = [read_step_draws(store, r.run_id, step) for r in chosen]
        draws[row.method] = [d for d in found if d is not None]
    pooled = {method: pooled_draws(steps, f"{rows[0].ordering}|{method}") for method, steps in draws.items()}
    reference = next((row for row in methods if row.method == REFERENCE_METHOD), None)
    ranked = [row for row in methods if row.final_mean is not None]
    vs_next = {row.method: comparison(row, below, draws, pooled) for row, below in zip(ranked, ranked[1:])}
    ranks = dict(zip((row.method for row in ranked),
                     tie_ranks([True] + [bool(c and c.significant) for c in (vs_next[r.method] for r in ranked[:-1])])))
    out = {}
    for row in rows:
        intervals = {key: found for key, values in pooled[row.method].items() if (found := interval(values)) is not None}
        against = comparison(row, reference, draws, pooled) if reference and row.kind == "method" and row is not reference else None
        out[row_key(row)] = RowStats(intervals, ranks.get(row.method, "") if row.kind == "method" else "",
                                     against, vs_next.get(row.method), len(draws[row.method]))
    return out


def main_stats(store: ResultStore, main: list[MainRow], runs: list[RunSummary]) -> dict[tuple[str, str, str, str], RowStats]:
    out: dict[tuple[str, str, str, str], RowStats] = {}
    for _, rows in group_by(main, lambda r: (r.model, r.scale, r.ordering)).items():
        table_runs = [r for r in runs if (r.model, r.scale) == (rows[0].model, rows[0].scale)]
        out.update(table_stats(store, rows, table_runs))
    return out


# --- everything --------------------------------------------------------------------------------
def build_board(results_dir: str | Path) -> Board:
    """Read ``results_dir`` (a folder written by ResultStore) and compute every table."""
    store = ResultStore(results_dir, create=False)
    runs = load_runs(store)
    current = [run for run in runs if run.superseded_by is None]
    marker = read_json(store.root / MARKER) or {}
    main = main_rows(current)
    return Board(
        root=store.root,
        generated_at=time.time(),
        created_at=number_or_none(marker.get("created")),
        runs=runs,
        reports=model_reports(store),
        main=main,
        orderings=ordering_rows(current),
        horizons=horizon_rows(current),
        fisher=fisher_rows(current),
        stats=main_stats(store, main, current),
    )
