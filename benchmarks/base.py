"""What a benchmark is: a loader, a prompt format, a scorer and metadata, behind one registry.

``run`` produces per-item records (prompt id, output, per-item score) with the model;
``score`` turns those items into metrics without the model, so ``erosion rescore`` can recompute
any number from the saved items.

Uncertainty is generic: :func:`bootstrap_draws` rescores Poisson-bootstrap resamples of a
benchmark's items with its own ``score``, so every benchmark gets intervals with no code of its
own. Each item's resampling weight in draw b is Poisson(1), drawn from a generator seeded by
(benchmark, item id) alone: two runs that scored the same items resample them identically, which
makes their draws paired (the leaderboard's paired tests subtract them draw by draw).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from benchmarks.judges import Judge, get_judge
from harness.core.lm import ChatLM

N_DRAWS = 1000  # bootstrap draws per score: a 95% percentile interval needs ~1000 (Efron & Tibshirani 1993)
BOOTSTRAP_SEED = 25  # fixed: draws depend on the items only, never on the run
DRAW_DIGITS = 4  # draws are stored rounded; scores are on 0-100 scales


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool = True
    interval: bool = True  # False for counts (unparseable verdicts, tasks seen): no bootstrap interval


@dataclass
class BenchmarkResult:
    scores: dict[str, float]
    items: list[dict[str, Any]]
    notes: dict[str, Any] = field(default_factory=dict)


class Benchmark:
    """Subclasses set the class attributes and implement ``run`` and ``score``."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    primary: ClassVar[str]
    feeds: ClassVar[str | None] = None  # which composite: "safety", "domain", "general" or None
    data: ClassVar[str] = ""  # what data it uses and any deviation from the official release
    datasets: ClassVar[tuple[str, ...]] = ()  # data-directory datasets it reads (checked before a run)
    judged: ClassVar[bool] = False  # True: ``run`` takes the suite's judge (responses to harmful requests)
    generates: ClassVar[bool] = False  # True: items are judged generations (verdict refusal/compliance/degenerate)

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        """Per-item records; a ``judged`` benchmark's ``run`` takes the judge as a fourth argument."""
        raise NotImplementedError

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        raise NotImplementedError

    def item_values(self, item: dict[str, Any]) -> dict[str, float] | None:
        """Optional: values whose plain mean over the items is each interval metric (e.g. 100 x
        correct). Given for every such metric, bootstrap draws are weighted means (vectorised)
        instead of ``score`` on each resample: the same numbers, much faster (tests/test_stats.py)."""
        return None

    def rejudge(self, items: list[dict[str, Any]], judge: Judge) -> list[dict[str, Any]]:
        """Saved items with every verdict given again (degenerate detector, then ``judge`` where the
        suite's judge applies), outputs untouched: ``erosion rescore --judge``. Benchmarks that
        do not generate have nothing to judge."""
        return items

    def evaluate(self, lm: ChatLM, cap: int | None, max_new_tokens: int, judge: Judge | None = None) -> BenchmarkResult:
        items = self.run(lm, cap, max_new_tokens, judge or get_judge()) if self.judged else self.run(lm, cap, max_new_tokens)
        return BenchmarkResult(self.score(items), items, {"n": len(items), "data": self.data})


def take(rows: list[Any], cap: int | None) -> list[Any]:
    """The first ``cap`` rows of a deterministically ordered list (all rows when cap is None)."""
    return rows if cap is None else rows[:cap]


def percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator else float("nan")


def stable_int(text: str) -> int:
    """A 64-bit integer from text, equal on every machine and Python run (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def item_keys(items: list[dict[str, Any]]) -> list[str]:
    """Each item's id (its position when it has none), made unique by counting repeats."""
    seen: dict[str, int] = {}
    keys = []
    for position, item in enumerate(items):
        key = str(item.get("id", position))
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def item_weights(benchmark: str, items: list[dict[str, Any]], n_draws: int = N_DRAWS) -> np.ndarray:
    """(items x draws) Poisson(1) resampling counts; row i depends only on (benchmark, item i's id)."""
    rows = [np.random.default_rng([BOOTSTRAP_SEED, stable_int(f"{benchmark}\0{key}")]).poisson(1.0, n_draws)
            for key in item_keys(items)]
    return np.array(rows, dtype=np.int64).reshape(len(items), n_draws)


def items_digest(items: list[dict[str, Any]]) -> str:
    """Which items were scored: two runs with equal digests were resampled identically."""
    return hashlib.sha256("\n".join(sorted(item_keys(items))).encode("utf-8")).hexdigest()[:16]


def bootstrap_draws(benchmark: Benchmark, items: list[dict[str, Any]], n_draws: int = N_DRAWS) -> dict[str, list[float]]:
    """Metric -> ``n_draws`` values of ``benchmark.score`` on Poisson resamples of ``items``.

    A draw on which a metric is undefined (an empty resample, or one without any item of a subset
    such as BBQ's ambiguous contexts) is NaN and is left out of intervals."""
    names = [m.name for m in benchmark.metrics if m.interval]
    weights = item_weights(benchmark.name, items, n_draws)
    values = [benchmark.item_values(item) for item in items]
    if items and all(v is not None and all(name in v for name in names) for v in values):
        draws = weighted_mean_draws(names, values, weights)  # type: ignore[arg-type]
    else:
        draws = resampled_score_draws(benchmark, names, items, weights)
    return {name: [round(v, DRAW_DIGITS) if np.isfinite(v) else float("nan") for v in found] for name, found in draws.items()}


def resampled_score_draws(benchmark: Benchmark, names: list[str], items: list[dict[str, Any]],
                          weights: np.ndarray) -> dict[str, list[float]]:
    """The general path: ``score`` on each resample (item i repeated weights[i, b] times)."""
    draws: dict[str, list[float]] = {name: [] for name in names}
    for b in range(weights.shape[1]):
        resample = [items[i] for i in np.repeat(np.arange(len(items)), weights[:, b]).tolist()]
        try:
            scores = benchmark.score(resample) if resample else {}
        except ZeroDivisionError:  # a subset the score divides by is empty in this resample
            scores = {}
        for name in names:
            draws[name].append(float(scores.get(name, float("nan"))))
    return draws


def weighted_mean_draws(names: list[str], values: list[dict[str, float]], weights: np.ndarray) -> dict[str, list[float]]:
    """The fast path for plain means: draw b = sum_i w_ib v_i / sum_i w_ib (NaN for an empty resample)."""
    totals = weights.sum(axis=0).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {name: (np.array([v[name] for v in values], dtype=float) @ weights / totals).tolist() for name in names}
