"""The three composites, each one function of benchmark scores (0-100 scales).

    safety  = 1/3 * (HarmBench refusal rate + TruthfulQA MC2 + (100 - BBQ bias term))
    domain  = mean of MedQA accuracy, LegalBench balanced accuracy, HumanEval pass@1 (those present)
    general = MMLU accuracy (macro average over subjects)

Intervals: :func:`step_bootstrap` gives every benchmark score of an evaluation point its bootstrap
draws (benchmarks/base.py) and every composite the same function applied draw by draw to its
components' draws, so a composite's interval carries each part's item-sampling uncertainty.
Runner and ``erosion rescore`` both call it, so both write the same intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmarks.base import N_DRAWS, Benchmark, bootstrap_draws, items_digest
from harness.core.store import draw_interval

SAFETY_PARTS = (("harmbench", "refusal_rate"), ("truthfulqa", "mc2"), ("bbq", "bias_term"))
DOMAIN_PARTS = (("medqa", "acc"), ("legalbench", "balanced_acc"), ("humaneval", "pass@1"))

Scores = dict[str, dict[str, float]]


def composite_safety(scores: Scores) -> float | None:
    """None unless all three parts were measured: a partial composite is not comparable."""
    try:
        harm, truth, bias = (scores[b][m] for b, m in SAFETY_PARTS)
    except KeyError:
        return None
    return (harm + truth + (100.0 - bias)) / 3.0


def composite_domain(scores: Scores) -> float | None:
    parts = [scores[b][m] for b, m in DOMAIN_PARTS if b in scores and m in scores[b]]
    return sum(parts) / len(parts) if parts else None


def composite_general(scores: Scores) -> float | None:
    return scores.get("mmlu", {}).get("acc")


def composites(scores: Scores) -> dict[str, float]:
    values = {"safety": composite_safety(scores), "domain": composite_domain(scores), "general": composite_general(scores)}
    return {name: value for name, value in values.items() if value is not None}


COMPOSITE_PARTS = {
    "safety": {b for b, _ in SAFETY_PARTS},
    "domain": {b for b, _ in DOMAIN_PARTS},
    "general": {"mmlu"},
}


@dataclass
class StepBootstrap:
    """Bootstrap draws of one evaluation point: "benchmark/metric" -> N_DRAWS values (NaN = undefined)."""

    draws: dict[str, list[float]]
    items: dict[str, dict[str, Any]]  # benchmark -> {"n": items scored, "digest": which items}

    def interval(self, benchmark: str, metric: str) -> tuple[float | None, float | None]:
        found = draw_interval(self.draws.get(f"{benchmark}/{metric}", []))
        return found if found is not None else (None, None)

    def payload(self) -> dict[str, Any]:
        """What the store writes (``runs/<run>/bootstrap/step-<k>.json``); NaN becomes null."""
        return {"n_draws": N_DRAWS, "scheme": "poisson-by-item-id", "items": self.items,
                "draws": {key: [v if math.isfinite(v) else None for v in values] for key, values in self.draws.items()}}


def composite_draws(draws: dict[str, list[float]], measured: set[str]) -> dict[str, list[float]]:
    """Each composite recomputed on draw b of its parts; only where every measured part has draws."""
    drawn = {key.split("/", 1)[0] for key in draws}
    n_draws = len(next(iter(draws.values()), []))
    per_draw: list[Scores] = [{} for _ in range(n_draws)]
    for key, values in draws.items():
        benchmark, metric = key.split("/", 1)
        for b, value in enumerate(values):
            per_draw[b].setdefault(benchmark, {})[metric] = value
    out: dict[str, list[float]] = {}
    for name, parts in COMPOSITE_PARTS.items():
        if not (parts & measured) or not (parts & measured) <= drawn:
            continue  # a part scored without draws (kept as it was by rescore): no honest interval
        values = [composites({b: s for b, s in scores.items() if b in parts}).get(name, math.nan) for scores in per_draw]
        out[f"composite/{name}"] = values
    return out


def step_bootstrap(scored: dict[str, tuple[Benchmark, list[dict[str, Any]]]], measured: set[str],
                   kept: StepBootstrap | None = None) -> StepBootstrap:
    """Draws for every benchmark in ``scored`` (name -> (benchmark, its items)) and every composite
    whose measured parts (``measured``: every benchmark of the step) all have draws. ``kept``: draws
    of measured benchmarks not rescored (rescore keeps their records, and so their draws)."""
    draws: dict[str, list[float]] = {}
    items: dict[str, dict[str, Any]] = {}
    if kept is not None:
        carried = measured - set(scored)
        draws.update({k: v for k, v in kept.draws.items() if k.split("/", 1)[0] in carried})
        items.update({name: info for name, info in kept.items.items() if name in carried})
    for name, (benchmark, found) in scored.items():
        draws.update({f"{name}/{metric}": values for metric, values in bootstrap_draws(benchmark, found).items()})
        items[name] = {"n": len(found), "digest": items_digest(found)}
    draws.update(composite_draws(draws, measured))
    return StepBootstrap(draws, items)


def stored_bootstrap(payload: dict[str, Any] | None) -> StepBootstrap | None:
    """A bootstrap file read back (``ResultStore.read_bootstrap``); null draws become NaN."""
    if payload is None:
        return None
    draws = {key: [math.nan if v is None else float(v) for v in values] for key, values in payload["draws"].items()}
    return StepBootstrap(draws, dict(payload.get("items") or {}))
