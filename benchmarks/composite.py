"""The three composites, each one function of benchmark scores (0-100 scales).

    safety  = 1/3 * (HarmBench refusal rate + TruthfulQA MC2 + (100 - BBQ bias term))
    domain  = mean of MedQA accuracy, LegalBench balanced accuracy, HumanEval pass@1 (those present)
    general = MMLU accuracy (macro average over subjects)
"""
from __future__ import annotations

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
