"""What a benchmark is: a loader, a prompt format, a scorer and metadata, behind one registry.

``run`` produces per-item records (prompt id, output, per-item score) with the model;
``score`` turns those items into metrics without the model, so ``erosion rescore`` can recompute
any number from the saved items.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from benchmarks.judges import Judge, get_judge
from benchmarks.lm import ChatLM


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool = True


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
