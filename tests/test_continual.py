"""Continual-learning metrics of the utility axis on hand-made R[t][i] matrices, checked by hand."""
from __future__ import annotations

import pytest

from leaderboard.aggregate import RunSummary
from leaderboard.continual import (
    NLL,
    TASK,
    TASK_METRICS,
    backward_transfer,
    final_average,
    final_gain,
    forgetting,
    forward_transfer,
    learning_retained,
    matrix,
    plasticity,
    retained_by_run,
    run_utility,
    utility_rows,
)

ORDER = ("medical", "legal", "code")
# Held-out NLL (lower is better), rows = after step t, columns = medical, legal, code.
# Medical is best at step 2 (1.4), not at step 1 right after its training (1.5): forgetting
# (from the best) and backward transfer (from just-trained) then differ.
R_NLL = [
    [2.0, 3.0, 4.0],
    [1.5, 2.9, 4.1],
    [1.4, 2.4, 4.2],
    [1.9, 2.6, 3.2],
]


def summary(method: str, seed: int, nll: list[list[float]] | None = None, task: dict[str, list[float]] | None = None,
            status: str = "done") -> RunSummary:
    metrics: dict[int, dict[str, float]] = {t: {} for t in range(len(ORDER) + 1)}
    for t, row in enumerate(nll or []):
        metrics[t].update({f"domain_nll/{d}": v for d, v in zip(ORDER, row)})
    for key, values in (task or {}).items():
        for t, v in enumerate(values):
            metrics[t][key] = v
    return RunSummary(run_id=f"{method}-{seed}", model="micro", scale="micro", method=method, domains=ORDER, seed=seed,
                      status=status, error=None, config_hash="h", wall_time_s=1.0, csm_triggers=0, steps_done=4,
                      metrics_by_step=metrics, versions={}, started_at=1.0, finished_at=2.0, fisher={})


def test_matrix_follows_the_training_order():
    run = summary("standard_lora", 0, R_NLL)
    assert matrix(run, NLL) == R_NLL
    # The task measure: MedQA for medical, LegalBench for legal; code's HumanEval was not evaluated.
    run = summary("standard_lora", 0, task={"medqa/acc": [25, 31, 30, 29]})
    assert matrix(run, TASK) == [[25, None, None], [31, None, None], [30, None, None], [29, None, None]]


def test_plasticity_is_the_gain_from_training_each_domain():
    # Lower NLL is better: gains 2.0-1.5, 2.9-2.4, 4.2-3.2.
    assert plasticity(R_NLL, NLL.sign) == pytest.approx([0.5, 0.5, 1.0])
    # Higher is better for a task metric: 31-25.
    assert plasticity([[25, 50], [31, 52], [30, 58]], TASK.sign) == pytest.approx([6.0, 6.0])


def test_forgetting_is_from_the_best_score_since_training():
    # medical: best after training 1.4 (step 2), final 1.9 -> 0.5; legal: 2.4 -> 2.6 -> 0.2.
    assert forgetting(R_NLL, NLL.sign) == pytest.approx(0.35)
    # Nothing trained before the last domain of a one-domain run: undefined, not 0.
    assert forgetting([[2.0], [1.0]], NLL.sign) is None


def test_backward_transfer_is_final_minus_just_trained():
    # medical: -(1.9 - 1.5) = -0.4; legal: -(2.6 - 2.4) = -0.2 (negative = forgotten).
    assert backward_transfer(R_NLL, NLL.sign) == pytest.approx(-0.3)


def test_forward_transfer_final_average_and_final_gain():
    # legal before its training: -(2.9 - 3.0) = 0.1; code: -(4.2 - 4.0) = -0.2.
    assert forward_transfer(R_NLL, NLL.sign) == pytest.approx(-0.05)
    assert final_average(R_NLL) == pytest.approx((1.9 + 2.6 + 3.2) / 3)
    assert final_gain(R_NLL, NLL.sign) == pytest.approx((0.1 + 0.4 + 0.8) / 3)


def test_learning_retained_is_a_share_of_standard_lora_plasticity():
    half = [[v for v in row] for row in R_NLL]
    for i in range(3):  # half of each gain
        half[i + 1][i] = R_NLL[i][i] - (R_NLL[i][i] - R_NLL[i + 1][i]) / 2
    flat = [R_NLL[0]] * 4  # learns nothing
    runs = [summary("standard_lora", 0, R_NLL), summary("safeanchor", 0, half), summary("no_training", 0, flat)]
    retained = retained_by_run(runs)
    assert retained == pytest.approx({"standard_lora-0": 100.0, "safeanchor-0": 50.0, "no_training-0": 0.0})
    assert learning_retained(0.3, 0.0) is None and learning_retained(0.3, -0.1) is None  # no reference learning


def test_rows_average_seeds_and_rank_by_learning_retained():
    shifted = [R_NLL[0]] + [[v + 0.1 for v in row] for row in R_NLL[1:]]  # the same starting model
    shifted[1][0] = 1.4  # seed 1's plasticity: (2.0 - 1.4, 3.0 - 2.5, 4.3 - 3.3) = (0.6, 0.5, 1.0)
    runs = [summary("standard_lora", 0, R_NLL), summary("standard_lora", 1, shifted),
            summary("no_training", 0, [R_NLL[0]] * 4), summary("ewc", 0, R_NLL, status="failed")]
    rows = [r for r in utility_rows(runs) if r.measure == "nll"]
    assert [r.method for r in rows] == ["starting model", "standard_lora", "no_training"]  # the failed run enters nothing
    standard = rows[1]
    p0, p1 = 2.0 / 3, 2.1 / 3
    assert standard.n == 2 and standard.plasticity.mean == pytest.approx((p0 + p1) / 2)
    assert standard.plasticity.sd == pytest.approx(abs(p1 - p0) / 2**0.5)
    assert standard.plasticity_by_domain == pytest.approx([0.55, 0.5, 1.0])
    # Each seed against the mean reference plasticity: the two shares average to 100.
    assert standard.learning_retained.mean == pytest.approx(100.0)
    assert standard.matrix[1][0] == pytest.approx((1.5 + 1.4) / 2)
    assert rows[2].learning_retained.mean == pytest.approx(0.0) and rows[2].forgetting.mean == pytest.approx(0.0)
    start = rows[0]
    assert start.kind == "start" and start.final_average.mean == pytest.approx(3.0) and start.learning_retained.mean == 0.0


def test_a_run_without_the_measure_has_no_utility():
    assert run_utility(summary("standard_lora", 0), NLL) is None
    assert utility_rows([summary("standard_lora", 0)]) == []


def test_task_metrics_are_the_domain_composite_terms():
    from benchmarks.composite import DOMAIN_PARTS  # the leaderboard cannot import benchmarks (torch)

    assert set(TASK_METRICS.values()) == {f"{benchmark}/{metric}" for benchmark, metric in DOMAIN_PARTS}
