"""Continual-learning metrics of the utility axis, from the matrix R[t][i] a run stores.

R[t][i] is a measure of the i-th domain of a run's ordering (i = 0 .. T-1) on the model after
domain t (t = 0: the starting model; t = i + 1: right after domain i was trained). Two measures:

* ``nll``: held-out response NLL of domain i (``domain_nll/<domain>``, nats per token, lower is
  better), the measure that moves at micro scale;
* ``task``: domain i's task metric (MedQA accuracy, LegalBench balanced accuracy, HumanEval pass@1;
  higher is better), where the suite evaluated it.

Every metric is oriented so that positive means better (s = +1 if higher is better, -1 if not):

    plasticity P_i          = s (R[i+1][i] - R[i][i])              gain on domain i from training it
    learning retained       = 100 * mean_i P_i / mean_i P_i(Standard LoRA, same model and ordering)
    forgetting F            = mean_{i<T-1} [ max_{i+1 <= l <= T-1} s R[l][i] - s R[T][i] ]   (Chaudhry et al. 2018)
    backward transfer BWT   = mean_{i<T-1} s (R[T][i] - R[i+1][i])                        (Lopez-Paz & Ranzato 2017)
    forward transfer FWT    = mean_{i>=1}  s (R[i][i] - R[0][i])    gain on i from the domains before it
    final average A_T       = mean_i R[T][i]                         (raw units)
    final gain              = mean_i s (R[T][i] - R[0][i])           what is left of the learning at the end

Torch-free: reads only the run summaries (``leaderboard.aggregate``) built from the result store.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from leaderboard.aggregate import REFERENCE_METHOD, RunSummary, clean, group_by, mean, mean_sd  # noqa: F401 (learning retained is a share of its plasticity)

NO_TRAINING_METHOD = "no_training"  # the built-in reference that learns nothing
# Task metric of each domain's benchmark (the domain composite's terms).
TASK_METRICS = {"medical": "medqa/acc", "legal": "legalbench/balanced_acc", "code": "humaneval/pass@1"}

Matrix = list[list[float | None]]


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


# --- one run -------------------------------------------------------------------------------------
def matrix(run: RunSummary, measure: Measure) -> Matrix:
    """R[t][i] over the run's steps 0..T and its domains in training order (None where not measured)."""
    keys = [measure.key(domain) for domain in run.domains]
    return [[run.value(t, key) if key else None for key in keys] for t in range(run.n_steps + 1)]


def measured(r: Matrix) -> bool:
    return any(v is not None for row in r for v in row)


def difference(sign: float, after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else sign * (after - before)


def plasticity(r: Matrix, sign: float) -> list[float | None]:
    """P_i = s (R[i+1][i] - R[i][i]): what training domain i did to domain i."""
    return [difference(sign, r[i + 1][i], r[i][i]) for i in range(len(r) - 1)]


def forgetting(r: Matrix, sign: float) -> float | None:
    """Mean over the domains before the last of the best score after training them minus the final one."""
    last = len(r) - 1
    drops = []
    for i in range(last - 1):
        since = clean(sign * v for v in (r[l][i] for l in range(i + 1, last)) if v is not None)
        if since and r[last][i] is not None:
            drops.append(max(since) - sign * r[last][i])
    return statistics.fmean(drops) if drops else None


def backward_transfer(r: Matrix, sign: float) -> float | None:
    """Mean over the domains before the last of final minus just-trained (negative = forgotten)."""
    last = len(r) - 1
    return mean(difference(sign, r[last][i], r[i + 1][i]) for i in range(last - 1))


def forward_transfer(r: Matrix, sign: float) -> float | None:
    """Mean over the domains after the first of their gain from the domains trained before them."""
    return mean(difference(sign, r[i][i], r[0][i]) for i in range(1, len(r) - 1))


def final_average(r: Matrix) -> float | None:
    return mean(r[-1])


def final_gain(r: Matrix, sign: float) -> float | None:
    return mean(difference(sign, r[-1][i], r[0][i]) for i in range(len(r) - 1))


@dataclass(frozen=True)
class RunUtility:
    """The continual-learning metrics of one run under one measure."""

    run: RunSummary
    measure: str
    matrix: Matrix
    plasticity_by_domain: list[float | None]
    plasticity: float | None  # mean over domains
    forgetting: float | None
    backward_transfer: float | None
    forward_transfer: float | None
    final_average: float | None
    final_gain: float | None


def run_utility(run: RunSummary, measure: Measure) -> RunUtility | None:
    """None when the run has no value of this measure (e.g. results from before domain_nll)."""
    r = matrix(run, measure)
    if not measured(r):
        return None
    per_domain = plasticity(r, measure.sign)
    return RunUtility(run, measure.name, r, per_domain, mean(per_domain), forgetting(r, measure.sign),
                      backward_transfer(r, measure.sign), forward_transfer(r, measure.sign), final_average(r),
                      final_gain(r, measure.sign))


def learning_retained(plasticity_value: float | None, reference: float | None) -> float | None:
    """100 * P / P_ref; undefined unless the reference learned something (P_ref > 0)."""
    if plasticity_value is None or reference is None or reference <= 0:
        return None
    return 100.0 * plasticity_value / reference


def reference_plasticity(utilities: list[RunUtility]) -> dict[tuple[str, str, str], float | None]:
    """(model, scale, ordering) -> mean plasticity of the reference method's runs there."""
    refs = [u for u in utilities if u.run.method == REFERENCE_METHOD]
    groups = group_by(refs, lambda u: (u.run.model, u.run.scale, u.run.ordering))
    return {cell: mean(u.plasticity for u in group) for cell, group in groups.items()}


def retained_by_run(runs: list[RunSummary], measure: Measure = NLL) -> dict[str, float | None]:
    """run_id -> learning retained (%), each run against Standard LoRA of its own model and ordering."""
    utilities = [u for u in (run_utility(r, measure) for r in runs if r.usable) if u is not None]
    refs = reference_plasticity(utilities)
    return {u.run.run_id: learning_retained(u.plasticity, refs.get((u.run.model, u.run.scale, u.run.ordering)))
            for u in utilities}


# --- rows of a table -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Stat:
    mean: float | None
    sd: float | None  # over seeds; None below two


def stat(values) -> Stat:
    return Stat(*mean_sd(values))


@dataclass(frozen=True)
class UtilityRow:
    """One method (over its seeds) or the starting model, in one ordering, under one measure."""

    model: str
    scale: str
    ordering: str
    measure: str
    unit: str
    higher_is_better: bool
    method: str
    kind: str  # "start" or "method"
    n: int  # runs measured
    plasticity: Stat
    plasticity_by_domain: list[float | None]  # means over seeds
    learning_retained: Stat
    forgetting: Stat
    backward_transfer: Stat
    forward_transfer: Stat
    final_average: Stat
    final_gain: Stat
    matrix: Matrix  # mean over seeds


def mean_matrix(matrices: list[Matrix]) -> Matrix:
    rows, cols = len(matrices[0]), len(matrices[0][0])
    return [[mean(m[t][i] for m in matrices) for i in range(cols)] for t in range(rows)]


def utility_rows(runs: list[RunSummary]) -> list[UtilityRow]:
    """Per (model, scale, ordering, measure): the starting model, then methods by learning retained."""
    out: list[UtilityRow] = []
    for measure in MEASURES:
        utilities = [u for u in (run_utility(r, measure) for r in runs if r.usable) if u is not None]
        refs = reference_plasticity(utilities)
        for (model, scale, ordering), group in sorted(group_by(utilities, lambda u: (u.run.model, u.run.scale, u.run.ordering)).items()):
            ref = refs.get((model, scale, ordering))
            rows = [method_utility(method, members, measure, ref)
                    for method, members in group_by(group, lambda u: u.run.method).items()]
            rows.sort(key=lambda row: (row.learning_retained.mean is None, -(row.learning_retained.mean or 0.0), row.method))
            out.append(start_utility(group, measure))
            out.extend(rows)
    return out


def method_utility(method: str, members: list[RunUtility], measure: Measure, reference: float | None) -> UtilityRow:
    first = members[0].run
    return UtilityRow(
        model=first.model, scale=first.scale, ordering=first.ordering, measure=measure.name, unit=measure.unit,
        higher_is_better=measure.higher_is_better, method=method, kind="method", n=len(members),
        plasticity=stat(u.plasticity for u in members),
        plasticity_by_domain=[mean(u.plasticity_by_domain[i] for u in members) for i in range(first.n_steps)],
        learning_retained=stat(learning_retained(u.plasticity, reference) for u in members),
        forgetting=stat(u.forgetting for u in members),
        backward_transfer=stat(u.backward_transfer for u in members),
        forward_transfer=stat(u.forward_transfer for u in members),
        final_average=stat(u.final_average for u in members),
        final_gain=stat(u.final_gain for u in members),
        matrix=mean_matrix([u.matrix for u in members]),
    )


def start_utility(group: list[RunUtility], measure: Measure) -> UtilityRow:
    """The starting model: row 0 of every run's matrix (all evaluate the same model); it learned nothing."""
    first = group[0].run
    starts = [u.matrix[0] for u in group]
    none = Stat(None, None)
    return UtilityRow(
        model=first.model, scale=first.scale, ordering=first.ordering, measure=measure.name, unit=measure.unit,
        higher_is_better=measure.higher_is_better, method="starting model", kind="start", n=len(group),
        plasticity=none, plasticity_by_domain=[None] * first.n_steps, learning_retained=Stat(0.0, None),
        forgetting=none, backward_transfer=none, forward_transfer=none,
        final_average=stat(mean(row) for row in starts), final_gain=none,
        matrix=[mean_matrix([[row] for row in starts])[0]],
    )
