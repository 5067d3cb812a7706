"""Continual-learning metrics of the utility axis, from the matrix R[t][i] a run stores.

R[t][i] is a measure of the i-th domain of a run's ordering (i = 0 .. T-1) on the model after domain t
(t = 0: the starting model); the measures (held-out NLL, task metric) and the metrics over R, each
oriented so that positive means better, are defined in docs/leaderboard.md ("The utility axis").
A matrix is a float array with NaN where a value was not measured; a mean skips NaN and is NaN when
nothing is left (undefined, never 0). Reads the frames of ``leaderboard.aggregate``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leaderboard.columns import best_first, optional

REFERENCE_METHOD = "standard_lora"  # learning retained is a share of its plasticity
NO_TRAINING_METHOD = "no_training"  # the built-in reference that learns nothing
START_METHOD = "starting model"
# Task metric of each domain's benchmark (the domain composite's terms).
TASK_METRICS = {"medical": "medqa/acc", "legal": "legalbench/balanced_acc", "code": "humaneval/pass@1"}
TABLE = ["model", "scale", "ordering"]  # one utility table per measure
RUN_METRICS = ("plasticity", "learning_retained", "forgetting", "backward_transfer", "forward_transfer",
               "final_average", "final_gain")


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    unit: str
    higher_is_better: bool
    key: Callable[[str], str | None]  # record key "benchmark/metric" of a domain, None if it has none

    @property
    def sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0


NLL = Measure("nll", "held-out NLL", "nats/token", False, lambda domain: f"domain_nll/{domain}")
TASK = Measure("task", "task metric", "points", True, TASK_METRICS.get)
MEASURES = (NLL, TASK)


def nan_mean(values: np.ndarray) -> float:
    """Mean of the measured values; NaN when none is (pandas skips NaN without a warning)."""
    return float(pd.Series(np.asarray(values, dtype=float).ravel()).mean())


# --- one run's matrix ----------------------------------------------------------------------------
def matrix(steps: pd.DataFrame, domains: list[str], measure: Measure) -> np.ndarray:
    """R[t][i] over steps 0..T and the domains in training order, from one run's (step x key) values."""
    keys = [measure.key(domain) or "" for domain in domains]
    return steps.reindex(index=range(len(domains) + 1), columns=keys).to_numpy(dtype=float)


def plasticity(r: np.ndarray, sign: float) -> np.ndarray:
    """P_i = s (R[i+1][i] - R[i][i]): what training domain i did to domain i."""
    return sign * (np.diagonal(r[1:]) - np.diagonal(r[:-1]))


def forgetting(r: np.ndarray, sign: float) -> float:
    """Mean over the domains before the last of the best score after training them minus the final one."""
    last = len(r) - 1
    best = [np.fmax.reduce(sign * r[i + 1:last, i]) for i in range(last - 1)]
    return nan_mean(np.array(best) - sign * r[last, :last - 1])


def backward_transfer(r: np.ndarray, sign: float) -> float:
    """Mean over the domains before the last of final minus just-trained (negative = forgotten)."""
    return nan_mean(sign * (r[-1, :-1] - np.diagonal(r[1:])[:-1]))


def forward_transfer(r: np.ndarray, sign: float) -> float:
    """Mean over the domains after the first of their gain from the domains trained before them."""
    return nan_mean(sign * (np.diagonal(r[:-1])[1:] - r[0, 1:]))


def final_average(r: np.ndarray) -> float:
    return nan_mean(r[-1])


def final_gain(r: np.ndarray, sign: float) -> float:
    return nan_mean(sign * (r[-1] - r[0]))


def run_utility(r: np.ndarray, measure: Measure) -> dict[str, object]:
    """The continual-learning metrics of one run's matrix (learning retained needs the reference)."""
    sign, gains = measure.sign, plasticity(r, measure.sign)
    return {"matrix": r, "plasticity_by_domain": gains, "plasticity": nan_mean(gains), "forgetting": forgetting(r, sign),
            "backward_transfer": backward_transfer(r, sign), "forward_transfer": forward_transfer(r, sign),
            "final_average": final_average(r), "final_gain": final_gain(r, sign)}


# --- every run -----------------------------------------------------------------------------------
def utility_by_run(runs: pd.DataFrame, values: pd.DataFrame, measure: Measure = NLL) -> pd.DataFrame:
    """A row per usable run that has this measure: its identity, R, the metrics and learning
    retained (100 P / mean P of Standard LoRA in the same model, scale and ordering; undefined
    unless that reference learned something, P_ref > 0)."""
    wide = values.pivot_table(index=["run_id", "step"], columns="key", values="value", aggfunc="last")
    rows = []
    for run in runs[runs["usable"] & runs["run_id"].isin(values["run_id"])].itertuples():
        r = matrix(wide.loc[run.run_id], run.ordering.split(">"), measure)
        if not np.isnan(r).all():  # e.g. results from before domain_nll
            rows.append({"run_id": run.run_id, "method": run.method, **{c: getattr(run, c) for c in TABLE},
                         **run_utility(r, measure)})
    found = pd.DataFrame(rows, columns=["run_id", "method", *TABLE, "matrix", "plasticity_by_domain",
                                        *(key for key in RUN_METRICS if key != "learning_retained")])
    reference = found[found["method"] == REFERENCE_METHOD].groupby(TABLE)["plasticity"].mean().rename("reference")
    found = found.join(reference, on=TABLE)
    return found.assign(learning_retained=100.0 * found["plasticity"] / found["reference"].where(found["reference"] > 0))


def retained_by_run(runs: pd.DataFrame, values: pd.DataFrame, measure: Measure = NLL) -> pd.Series:
    """run_id -> learning retained (%), each run against Standard LoRA of its own model and ordering."""
    return utility_by_run(runs, values, measure).set_index("run_id")["learning_retained"]


# --- rows of a table -----------------------------------------------------------------------------
def stat(values: pd.Series) -> dict[str, float | None]:
    """Mean and SD over seeds of the measured values (SD undefined below two)."""
    return {"mean": optional(values.mean()), "sd": optional(values.std())}


def mean_of(arrays: pd.Series) -> list:
    """The element-wise mean over runs of their arrays (NaN skipped), as nested lists with None."""
    stacked = np.stack(list(arrays))
    means = pd.DataFrame(stacked.reshape(len(stacked), -1)).mean().to_numpy().reshape(stacked.shape[1:])
    return np.vectorize(optional, otypes=[object])(means).tolist()


def method_row(members: pd.DataFrame) -> dict[str, object]:
    return {"kind": "method", "n": len(members), **{key: stat(members[key]) for key in RUN_METRICS},
            "plasticity_by_domain": mean_of(members["plasticity_by_domain"]), "matrix": mean_of(members["matrix"])}


def start_row(group: pd.DataFrame) -> dict[str, object]:
    """The starting model: row 0 of every run's matrix (all evaluate the same model); it learned nothing."""
    starts = group["matrix"].map(lambda r: r[0])
    none = {"mean": None, "sd": None}
    return {"method": START_METHOD, "kind": "start", "n": len(group), **{key: none for key in RUN_METRICS},
            "learning_retained": {"mean": 0.0, "sd": None}, "final_average": stat(starts.map(nan_mean)),
            "plasticity_by_domain": [None] * len(starts.iloc[0]), "matrix": [mean_of(starts)]}


def utility_frame(runs: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """Per (measure, model, scale, ordering): the starting model, then methods by learning retained."""
    rows = []
    for measure in MEASURES:
        about = {"measure": measure.name, "unit": measure.unit, "higher_is_better": measure.higher_is_better}
        for table, group in utility_by_run(runs, values, measure).groupby(TABLE):
            methods = pd.DataFrame([{"method": m, **method_row(g)} for m, g in group.groupby("method")])
            retained = methods["learning_retained"].map(lambda s: s["mean"]).astype(float)
            for row in [start_row(group), *best_first(methods, retained).to_dict("records")]:
                rows.append({**dict(zip(TABLE, table, strict=True)), **about, **row})
    return pd.DataFrame(rows)
