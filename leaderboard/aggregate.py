"""Turn a results folder into the numbers the leaderboard shows, with pandas.

The store's records become one tidy frame of values (a row per run x step x benchmark/metric key) and a
frame of runs (a row per run with its final, loss per step, ...); every table is a ``groupby``/``agg``
over them. A missing number is NaN in a frame and ``None`` in a row, never 0, and every row carries the
reason its numbers may be absent ("failed", "running", "missing"). The rules (failed and superseded
runs, finals, means over seeds, intervals) are docs/leaderboard.md's "Partial results" and "Uncertainty".
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.store import MARKER, ResultStore, RunInfo, ordering_label, read_json
from leaderboard.columns import best_first, finite, optional
from leaderboard.continual import REFERENCE_METHOD, START_METHOD, utility_frame  # every method is tested against the reference
from leaderboard.stats import Comparison, compare, interval, seed_mean_draws, significance_ranks

HEADLINE = "composite/safety"
CSM_EVENT = "csm_trigger"
CELL = ["model", "scale", "ordering", "method"]  # one row of a main table
STATUSES = ("done", "running", "failed")
SPECTRUM_NUMBERS = ("k90_safety", "k90_random", "trace_safety", "trace_random")
RUN_MEANS = ("loss_per_step", "acceleration", "retention_pct", "csm_triggers", "wall_time_s")  # a method row's means
RowKey = tuple[str, str, str, str]  # model, scale, ordering, method


@dataclass(frozen=True)
class StepDraws:
    """One evaluation point's bootstrap draws ("benchmark/metric" -> draws) and which items each benchmark scored."""

    draws: dict[str, np.ndarray]
    items: dict[str, str]  # benchmark -> digest of its item ids


@dataclass(frozen=True)
class RowStats:
    """Uncertainty of one main-table row: its value is the mean over ``n_seeds`` runs."""

    intervals: dict[str, tuple[float, float]]  # key -> 95% interval of the row's value at its step
    rank: str  # 1 + the methods significantly above it ("=2" when shared), "" without a final
    vs_reference: Comparison | None  # headline against Standard LoRA's row
    vs_next: Comparison | None  # headline against the row ranked just below
    n_seeds: int


@dataclass
class Board:
    """Everything the leaderboard renders: a frame per table, and the frames they come from.

    ``runs``: every run, superseded ones included; ``current``: the newest run of each cell (what
    the tables and plots use); ``values``: the finite records of the current usable runs;
    ``spectra``: the well-formed Fisher spectrum entries of the current usable runs."""

    root: Path
    generated_at: float
    created_at: float | None
    reports: dict[str, dict[str, Any]]
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    stats: dict[RowKey, RowStats] = field(default_factory=dict)  # by row_key(row)

    def rows(self, name: str) -> list[Any]:
        return frame_rows(self.frames.get(name, pd.DataFrame()))

    def groups(self, name: str, keys: list[str]) -> list[tuple[Any, list[Any]]]:
        """The rows of one frame per value of ``keys``, in the frame's order."""
        frame = self.frames.get(name, pd.DataFrame())
        return [(key, frame_rows(rows)) for key, rows in frame.groupby(keys, sort=False)] if len(frame) else []

    @property
    def main(self) -> list[Any]:
        return self.rows("main")

    @property
    def orderings(self) -> list[Any]:
        return self.rows("orderings")

    @property
    def runs(self) -> pd.DataFrame:
        return self.frames["runs"]

    @property
    def current(self) -> pd.DataFrame:
        return self.runs[self.runs["superseded_by"].isna()]

    def row_stats(self, row: Any) -> RowStats | None:
        return self.stats.get(row_key(row))


def frame_rows(frame: pd.DataFrame) -> list[Any]:
    """A frame's rows as named tuples (``row.method``), NaN given as None: what cells and tests read."""
    plain = frame.astype(object).where(frame.notna(), None)
    return list(plain.itertuples(index=False, name="Row"))


def absent_reason(statuses: Iterable[str]) -> str:
    """Why a cell over runs of these statuses may have no number."""
    found = list(statuses)
    if found and all(status == "failed" for status in found):
        return "failed"
    return "running" if "running" in found else "missing"


def distinct(values: Iterable[str]) -> list[str]:
    return sorted(set(values))


# --- loading -------------------------------------------------------------------------------------
def read_frames(store: ResultStore) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The store as three frames: runs (a row per run, with its per-run numbers), values (the finite
    records of every run) and spectra (a row per run x step x layer of a logged Fisher spectrum)."""
    payloads = {run_id: store.step_payloads(run_id) for run_id in store.run_ids()}
    values = finite_values(store.records_frame(payloads))
    infos = store.runs()
    runs = pd.DataFrame([run_row(info, payloads.get(info.run_id, [])) for info in infos], columns=RUN_FIELDS).astype(
        {"wall_time_s": float, "started_at": float, "finished_at": float})
    spectra = pd.DataFrame([{"run_id": info.run_id, "step": step, "layer": layer, **entry}
                            for info in infos for step, payload in enumerate(payloads.get(info.run_id, []))
                            for layer, entry in fisher_layers(payload).items()], columns=SPECTRUM_FIELDS)
    return with_composite(mark_superseded(runs), values), values, spectra


RUN_FIELDS = ["run_id", "model", "scale", "method", "ordering", "domain_set", "n_steps", "seed", "status", "usable", "error",
              "config_hash", "wall_time_s", "csm_triggers", "steps_done", "versions", "started_at", "finished_at"]
SPECTRUM_FIELDS = ["run_id", "step", "layer", *SPECTRUM_NUMBERS, "eigenvalues_safety", "eigenvalues_random"]


def finite_values(records: pd.DataFrame) -> pd.DataFrame:
    """The records that hold a number (run_id, step, key, value): a NaN or null value is a
    measurement that did not happen."""
    values = pd.to_numeric(records["value"], errors="coerce").astype(float)
    found = records.assign(value=values)[np.isfinite(values)]
    return found.assign(step=found["step"].astype(int))[["run_id", "step", "key", "value"]]


def run_row(info: RunInfo, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's identity and what its step files say besides records (times, CSM triggers)."""
    step_times = [t for p in payloads if (t := step_seconds(p)) is not None]
    events = [e for p in payloads for e in listed(p.get("events")) if isinstance(e, dict)]
    return {
        "run_id": info.run_id, "model": info.model, "scale": info.scale, "method": info.method,
        "ordering": ordering_label(list(info.ordering)), "domain_set": ",".join(sorted(info.ordering)),
        "n_steps": len(info.ordering), "seed": info.seed, "status": info.status, "usable": info.status != "failed",
        "error": info.error, "config_hash": info.config_hash, "steps_done": len(payloads),
        # RunInfo's wall time is the whole run; an interrupted run may only have per-step times.
        "wall_time_s": info.wall_time_s or (sum(step_times) if step_times else None),
        "csm_triggers": sum(1 for e in events if e.get("type") == CSM_EVENT), "versions": dict(info.versions),
        "started_at": info.started_at or None, "finished_at": info.finished_at,
    }


def mark_superseded(runs: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest run of each cell; older ones (an earlier config) are marked, not averaged in.

    Run ids carry the config hash, so re-running a cell with a changed config leaves the old run
    beside the new one; counting both would turn one seed into two."""
    cell = ["model", "scale", "method", "ordering", "seed"]
    by_start = runs.assign(_start=runs["started_at"].fillna(0.0)).sort_values(["_start", "run_id"])
    newest = by_start.groupby(cell)["run_id"].transform("last").reindex(runs.index)
    return runs.assign(superseded_by=newest.where(newest != runs["run_id"], None))


def with_composite(runs: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """Add each run's composite at steps 0..T and the numbers derived from it: start, final, loss
    per step (c_0 - c_T) / T, acceleration (slope of the per-step losses) and retention 100 c_T / c_0."""
    headline = values[values["key"] == HEADLINE].pivot_table(index="run_id", columns="step", values="value", aggfunc="last")
    composite = [headline.reindex(index=[run_id], columns=range(n + 1)).iloc[0].to_numpy(dtype=float)
                 for run_id, n in zip(runs["run_id"], runs["n_steps"], strict=True)]
    start = pd.Series([c[0] for c in composite], index=runs.index, dtype=float)
    final = pd.Series([c[-1] for c in composite], index=runs.index, dtype=float)
    return runs.assign(composite_by_step=[[optional(v) for v in c] for c in composite], start=start, final=final,
                       loss_per_step=(start - final) / runs["n_steps"], acceleration=[acceleration(c) for c in composite],
                       retention_pct=100.0 * final / start.where(start != 0))


def acceleration(composite: np.ndarray) -> float:
    """Least-squares slope of the per-step losses against the step index: positive means each
    domain costs more than the one before. Needs every step and T >= 2."""
    if len(composite) < 3 or np.isnan(composite).any():
        return math.nan
    losses = -np.diff(composite)
    return float(np.polyfit(np.arange(1, len(losses) + 1), losses, 1)[0])


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
    return {str(layer): {**{key: number_or_none(spec.get(key)) for key in SPECTRUM_NUMBERS},
                         **{f"eigenvalues_{kind}": [float(v) for v in listed(spec.get(f"eigenvalues_{kind}"))
                                                    if number_or_none(v) is not None] for kind in ("safety", "random")}}
            for layer, spec in layers.items() if isinstance(spec, dict)}


def listed(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty list (a field of the wrong type reads as absent)."""
    return value if isinstance(value, list) else []


def number_or_none(value: Any) -> float | None:
    """A finite number as float; anything else (a string, a boolean, NaN) as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def model_reports(store: ResultStore) -> dict[str, dict[str, Any]]:
    """Starting-model reports that are mappings, with their checks reduced to mappings."""
    out = {}
    for name, report in store.model_reports().items():
        if not isinstance(report, dict):
            warnings.warn(f"{store.root / 'models' / (name + '.json')}: holds a {type(report).__name__}, not a "
                          f"model report; left out. Fix: delete it (the next `erosion run` writes it again).", stacklevel=2)
            continue
        report = finite(report)
        report["checks"] = [c for c in listed(report.get("checks")) if isinstance(c, dict)]
        out[name] = report
    return out


# --- main tables -------------------------------------------------------------------------------
def main_frame(runs: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """Rows of every (model, scale, domain set, ordering) table: the starting model, then methods by final."""
    if runs.empty:
        return pd.DataFrame()
    rows = pd.concat([start_rows(runs, values), method_rows(runs, values)], ignore_index=True)
    keyed = rows.assign(_set=rows["ordering"].map(lambda o: ",".join(sorted(o.split(">")))), _method=rows["kind"] == "method")
    table = ["model", "scale", "_set", "ordering", "_method"]
    return best_first(keyed, keyed["final_mean"], table).drop(columns=["_set", "_method"])


def expected_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Every (model, scale, ordering, method) a table should show: a method (or seed) run in some
    ordering of a domain set is expected in all of them; where absent its row says "missing"."""
    sets = runs.groupby(["model", "scale", "domain_set"])
    cells = [(*key[:2], ordering, method, set(group["seed"])) for key, group in sets
             for ordering in sorted(group["ordering"].unique()) for method in sorted(group["method"].unique())]
    return pd.DataFrame(cells, columns=[*CELL, "seeds"])


def method_rows(runs: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """A row per expected cell: means over its usable runs, and its runs counted by status."""
    means = runs[runs["usable"]].groupby(CELL).agg(final_mean=("final", "mean"), final_sd=("final", "std"),
                                                   n_final=("final", "count"), **{k: (k, "mean") for k in RUN_MEANS})
    found = runs.groupby(CELL).agg(config_hashes=("config_hash", distinct), absent=("status", absent_reason),
                                   run_seeds=("seed", set), **{f"seeds_{s}": ("status", lambda x, s=s: (x == s).sum())
                                                               for s in STATUSES})
    rows = expected_cells(runs).join(means, on=CELL).join(found, on=CELL)
    counts = ["n_final", *(f"seeds_{s}" for s in STATUSES)]
    rows[counts] = rows[counts].fillna(0).astype(int)
    rows["absent"] = rows["absent"].fillna("missing")
    rows["config_hashes"] = [h if isinstance(h, list) else [] for h in rows["config_hashes"]]
    rows["seeds_missing"] = [len(want - (have if isinstance(have, set) else set()))
                             for want, have in zip(rows["seeds"], rows["run_seeds"], strict=True)]
    rows["status"] = [", ".join(f"{n} {s}" for s in (*STATUSES, "missing") if (n := getattr(row, f"seeds_{s}"))) or "missing"
                      for row in rows.itertuples()]
    rows["accelerates"] = [None if math.isnan(a) else bool(a > 0) for a in rows["acceleration"]]
    rows["n_steps"] = rows["ordering"].str.count(">") + 1
    return with_steps(rows.assign(kind="method").drop(columns=["seeds", "run_seeds"]), values, final_step=True)


def with_steps(rows: pd.DataFrame, values: pd.DataFrame, final_step: bool) -> pd.DataFrame:
    """Add the composite at every step and the mean of every metric at the row's step (its final
    step, or step 0 for the starting model), both over the usable runs of the row."""
    keys = CELL if final_step else CELL[:3]
    composite = values[values["key"] == HEADLINE].groupby([*keys, "step"])["value"].mean()
    steps = {k: dict(g.droplevel(keys).items()) for k, g in composite.groupby(level=keys)}
    index = [tuple(row) for row in rows[keys].itertuples(index=False)]
    rows["metrics"] = metric_means(values[values["step"] == (values["n_steps"] if final_step else 0)], keys, index)
    # What the flags compare against: for the starting model, its own metrics.
    rows["start_metrics"] = metric_means(values[values["step"] == 0], keys, index) if final_step else rows["metrics"]
    rows["composite_by_step"] = [[optional(steps.get(k, {}).get(s)) for s in range(n + 1)] if final_step
                                 else [optional(steps.get(k, {}).get(0))] + [None] * n
                                 for k, n in zip(index, rows["n_steps"], strict=True)]
    return rows


def metric_means(values: pd.DataFrame, keys: list[str], index: list[tuple]) -> list[dict[str, float]]:
    """Per row of ``index``, the mean of each metric over ``values`` (one step of the row's runs)."""
    means = values.groupby([*keys, "key"])["value"].mean()
    by_row = {k: dict(g.droplevel(keys).sort_index().items()) for k, g in means.groupby(level=keys)}
    return [by_row.get(k, {}) for k in index]


def start_rows(runs: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """The starting model: step 0 of every usable run in the table (all evaluate the same model)."""
    tables = runs.groupby(CELL[:3])
    started = runs[runs["usable"] & runs["start"].notna()]
    means = started.groupby(CELL[:3]).agg(final_mean=("start", "mean"), final_sd=("start", "std"), n_final=("start", "count"),
                                          config_hashes=("config_hash", distinct))
    rows = pd.DataFrame({"absent": tables["status"].agg(absent_reason), "n_steps": tables["n_steps"].first()}).join(means)
    rows["n_final"] = rows["n_final"].fillna(0).astype(int)
    present = rows["n_final"] > 0
    rows = rows.assign(
        method=START_METHOD, kind="start", status=[f"step 0 ({n} runs)" for n in rows["n_final"]],
        absent=rows["absent"].where(~present, "missing"), seeds_done=rows["n_final"], seeds_running=0, seeds_failed=0,
        seeds_missing=0, config_hashes=[h if isinstance(h, list) else [] for h in rows["config_hashes"]],
        accelerates=None, retention_pct=present.map({True: 100.0, False: None}),
        **{k: None for k in RUN_MEANS if k != "retention_pct"})
    usable_values = values[values["run_id"].isin(started["run_id"])]
    return with_steps(rows.reset_index(), usable_values, final_step=False)


# --- ordering sensitivity ----------------------------------------------------------------------
def ordering_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method, its final composite in each ordering of the same domains (>= 2 orderings); best
    mean over orderings first."""
    rows = pd.DataFrame([ordering_row(key, method, group, sorted(by_set["ordering"].unique()))
                         for key, by_set in runs.groupby(["model", "scale", "domain_set"]) if by_set["ordering"].nunique() > 1
                         for method, group in by_set.groupby("method")])
    if rows.empty:
        return rows
    overall = rows["by_ordering"].map(lambda cells: pd.Series([c["mean"] for c in cells.values()], dtype=float).mean())
    return best_first(rows, overall, ["model", "scale", "domain_set"])


def ordering_row(table: tuple[str, str, str], method: str, runs: pd.DataFrame, orderings: list[str]) -> dict[str, Any]:
    finals = runs[runs["usable"] & runs["final"].notna()].groupby("ordering")["final"].agg(["mean", "std", "count"])
    absent = runs.groupby("ordering")["status"].agg(absent_reason)
    cells = {o: {"mean": optional(finals["mean"].get(o)), "sd": optional(finals["std"].get(o)),
                 "n": int(finals["count"].get(o, 0)), "absent": absent.get(o, "missing")} for o in orderings}
    means = finals["mean"].reindex(orderings).dropna()
    variances = finals["std"].dropna() ** 2
    compared = len(means) > 1  # spread and "worst" only mean something once two orderings have finals
    last_means = means.groupby(lambda o: o.split(">")[-1]).mean()
    cross = float(means.std()) if compared else None
    within = math.sqrt(variances.mean()) if len(variances) else None
    worst_last = str(last_means.idxmin()) if compared else None
    return {
        **dict(zip(["model", "scale", "domain_set"], table, strict=True)), "method": method, "by_ordering": cells,
        "range": float(means.max() - means.min()) if compared else None, "cross_ordering_sd": cross,
        "within_ordering_sd": within, "worst_ordering": str(means.idxmin()) if compared else None,
        "worst_last_domain": worst_last, "worst_last_domain_mean": float(last_means[worst_last]) if worst_last else None,
        # The paper's comparison (cross-ordering SD 0.51 below within-ordering seed SD ~1.0), and the
        # ordering effect with the seed noise that ordering means still carry taken out (see ordering_effect_sd).
        "across_below_within": (cross < within) if cross is not None and within is not None else None,
        "ordering_effect_sd": ordering_effect_sd(cross, within, [int(n) for n in finals["count"].reindex(means.index)]),
    }


def ordering_effect_sd(cross: float | None, within: float | None, seeds: list[int]) -> float | None:
    """SD of the ordering effect itself: a mean over n seeds still carries seed variance within²/n,
    so var(ordering means) = σ²_ordering + within²/n (one-way random effects; n the harmonic mean
    of seeds per ordering), and σ_ordering = sqrt(max(0, cross² − within²/n))."""
    if cross is None or within is None or not seeds or min(seeds) < 1:
        return None
    n = len(seeds) / sum(1.0 / k for k in seeds)
    return math.sqrt(max(0.0, cross**2 - within**2 / n))


# --- sequence length and Fisher spectrum ---------------------------------------------------------
def horizon_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Loss per step by sequence length T, for methods run at two or more lengths (e.g. 3 and 5)."""
    measured = runs[runs["usable"] & runs["loss_per_step"].notna()]
    cells = measured.groupby(["model", "scale", "method", "n_steps"])["loss_per_step"].agg(["mean", "std", "count"])
    out = []
    for (model, scale, method), group in cells.groupby(level=["model", "scale", "method"]):
        by_t = group.droplevel(["model", "scale", "method"])
        if len(by_t) < 2:
            continue
        shortest, longest = int(by_t.index.min()), int(by_t.index.max())
        out.append({"model": model, "scale": scale, "method": method, "shortest": shortest, "longest": longest,
                    "by_horizon": {int(t): {"mean": float(c["mean"]), "sd": optional(c["std"]), "n": int(c["count"])}
                                   for t, c in by_t.iterrows()},
                    "difference": float(by_t["mean"][longest] - by_t["mean"][shortest])})
    return pd.DataFrame(out)


def fisher_frame(spectra: pd.DataFrame) -> pd.DataFrame:
    """k90 (safety vs random data) per layer, over every usable run and step that logged a spectrum."""
    if spectra.empty:
        return pd.DataFrame()
    entries = spectra.astype({"k90_safety": float, "k90_random": float})
    out = entries.groupby(["model", "scale", "method", "layer"]).agg(
        k90_safety=("k90_safety", "mean"), k90_safety_sd=("k90_safety", "std"), k90_random=("k90_random", "mean"),
        k90_random_sd=("k90_random", "std"), n=("step", "size"), steps=("step", lambda s: sorted(set(s))))
    return out.reset_index()


# --- uncertainty: intervals, paired tests, ranks -------------------------------------------------
def row_key(row: Any) -> RowKey:
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


def comparison(row: Any, other: Any, draws: dict[str, list[StepDraws]],
               pooled: dict[str, dict[str, np.ndarray]]) -> Comparison | None:
    this, that = pooled[row.method].get(HEADLINE), pooled[other.method].get(HEADLINE)
    if this is None or that is None or row.final_mean is None or other.final_mean is None or len(this) != len(that):
        return None
    # Paired when every run on both sides scored each shared benchmark on the same items.
    digests = pd.DataFrame([step.items for step in draws[row.method] + draws[other.method]])
    return compare(this, that, row.final_mean - other.final_mean, other.method, bool((digests.nunique() <= 1).all()))


def beaten_by(ranked: list[Any], pairs: dict[tuple[str, str], Comparison | None]) -> list[int]:
    """For each row (best first), how many rows above it are significantly better: ``pairs[(above, row)]``."""
    def better(found: Comparison | None) -> bool:
        return bool(found and found.significant and found.difference > 0)
    return [sum(better(pairs[(above.method, row.method)]) for above in ranked[:i]) for i, row in enumerate(ranked)]


def row_draws(store: ResultStore, row: Any, runs: pd.DataFrame, values: pd.DataFrame) -> list[StepDraws]:
    """The stored draws of the runs a row averages (the usable runs measured at the row's step)."""
    step = 0 if row.kind == "start" else row.n_steps
    measured = runs["run_id"].isin(values.loc[values["step"] == step, "run_id"])
    chosen = runs[runs["usable"] & measured & (runs["ordering"] == row.ordering)
                  & ((row.kind == "start") | (runs["method"] == row.method))]
    return [d for d in (read_step_draws(store, run_id, step) for run_id in chosen["run_id"]) if d is not None]


def table_stats(store: ResultStore, rows: list[Any], runs: pd.DataFrame, values: pd.DataFrame) -> dict[RowKey, RowStats]:
    """Stats of one main table (rows of one ordering, starting model first, then methods best first)."""
    methods = [row for row in rows if row.kind == "method"]
    draws = {row.method: row_draws(store, row, runs, values) for row in rows}
    pooled = {method: pooled_draws(steps, f"{rows[0].ordering}|{method}") for method, steps in draws.items()}
    reference = next((row for row in methods if row.method == REFERENCE_METHOD), None)
    ranked = [row for row in methods if row.final_mean is not None]
    # Every pair once, the higher-ranked row first: the ranks read all of them, "vs next" the neighbours'.
    pairs = {(row.method, below.method): comparison(row, below, draws, pooled)
             for i, row in enumerate(ranked) for below in ranked[i + 1:]}
    vs_next = {row.method: pairs[(row.method, below.method)] for row, below in zip(ranked, ranked[1:], strict=False)}
    ranks = dict(zip((row.method for row in ranked), significance_ranks(beaten_by(ranked, pairs)), strict=True))
    out = {}
    for row in rows:
        intervals = {key: found for key, values in pooled[row.method].items() if (found := interval(values)) is not None}
        tested = reference is not None and row.kind == "method" and row is not reference
        against = comparison(row, reference, draws, pooled) if tested else None
        out[row_key(row)] = RowStats(intervals, ranks.get(row.method, "") if row.kind == "method" else "",
                                     against, vs_next.get(row.method), len(draws[row.method]))
    return out


def with_learning_retained(main: pd.DataFrame, utility: pd.DataFrame) -> pd.DataFrame:
    """Each main row's learning retained (% of Standard LoRA's, continual.py), by held-out NLL where
    measured, else by task metric: the main table shows what a method's safety cost in learning."""
    if main.empty or utility.empty:
        return main.assign(learning_retained=None)
    methods = utility[utility["kind"] == "method"]  # the starting model learns nothing by definition: no number
    measured = methods.assign(value=methods["learning_retained"].map(lambda found: found["mean"]).astype(float),
                              order=methods["measure"].map({"nll": 0}).fillna(1)).dropna(subset=["value"])
    first = measured.sort_values("order", kind="stable").groupby(CELL)["value"].first()
    found = main.join(first.rename("learning_retained"), on=CELL)["learning_retained"]
    return main.assign(learning_retained=found.astype(object).where(found.notna(), None))


# --- everything --------------------------------------------------------------------------------
def build_board(results_dir: str | Path) -> Board:
    """Read ``results_dir`` (a folder written by ResultStore) and compute every table."""
    store = ResultStore(results_dir, create=False)
    runs, values, spectra = read_frames(store)
    current = runs[runs["superseded_by"].isna()]
    usable = current.loc[current["usable"], ["run_id", *CELL, "n_steps"]]
    table = values.merge(usable, on="run_id")  # the usable runs' values, with their table columns
    spectra = spectra.merge(usable[["run_id", *CELL[:2], "method"]], on="run_id")
    marker = read_json(store.root / MARKER) or {}
    utility = utility_frame(current, table)
    main = with_learning_retained(main_frame(current, table), utility)
    board = Board(root=store.root, generated_at=time.time(), created_at=number_or_none(marker.get("created")),
                  reports=model_reports(store), frames={
                      "runs": runs, "values": table, "spectra": spectra, "fisher": fisher_frame(spectra), "main": main,
                      "orderings": ordering_frame(current), "horizons": horizon_frame(current),
                      "utility": utility})
    for (model, scale, _), rows in (main.groupby(["model", "scale", "ordering"], sort=False) if len(main) else []):
        scoped = current[(current["model"] == model) & (current["scale"] == scale)]
        board.stats |= table_stats(store, frame_rows(rows), scoped, values)
    main["stats"] = [board.stats.get(row_key(row)) for row in board.main]
    return board
