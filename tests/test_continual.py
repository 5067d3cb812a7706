"""Continual-learning metrics of the utility axis on hand-made R[t][i] matrices, checked by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leaderboard.continual import (
    NLL,
    TASK,
    TASK_METRICS,
    backward_transfer,
    final_average,
    final_gain,
    forgetting,
    forward_transfer,
    matrix,
    plasticity,
    retained_by_run,
    utility_by_run,
    utility_frame,
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


def run(method: str, seed: int, nll: list[list[float]] | None = None, task: dict[str, list[float]] | None = None,
        status: str = "done") -> tuple[dict, list[dict]]:
    """One run as the leaderboard's frames have it: its row of the runs frame and its value rows."""
    values = [(t, f"domain_nll/{d}", v) for t, row in enumerate(nll or []) for d, v in zip(ORDER, row, strict=True)]
    values += [(t, key, v) for key, steps in (task or {}).items() for t, v in enumerate(steps)]
    run_id = f"{method}-{seed}"
    info = {"run_id": run_id, "model": "micro", "scale": "micro", "ordering": ">".join(ORDER), "method": method,
            "seed": seed, "usable": status != "failed"}
    return info, [{"run_id": run_id, "step": t, "key": key, "value": v} for t, key, v in values]


def frames(*runs: tuple[dict, list[dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs frame and the values frame of these runs."""
    values = [row for _, rows in runs for row in rows]
    return pd.DataFrame([info for info, _ in runs]), pd.DataFrame(values, columns=["run_id", "step", "key", "value"])


def steps(values: pd.DataFrame) -> pd.DataFrame:
    return values.pivot_table(index="step", columns="key", values="value")


def test_matrix_follows_the_training_order():
    _, values = frames(run("standard_lora", 0, R_NLL))
    assert matrix(steps(values), list(ORDER), NLL).tolist() == R_NLL
    # The task measure: MedQA for medical, LegalBench for legal; code's HumanEval was not evaluated (NaN, never 0).
    _, values = frames(run("standard_lora", 0, task={"medqa/acc": [25, 31, 30, 29]}))
    found = matrix(steps(values), list(ORDER), TASK)
    assert found[:, 0].tolist() == [25, 31, 30, 29] and np.isnan(found[:, 1:]).all()


def test_plasticity_is_the_gain_from_training_each_domain():
    # Lower NLL is better: gains 2.0-1.5, 2.9-2.4, 4.2-3.2.
    assert plasticity(np.array(R_NLL), NLL.sign) == pytest.approx([0.5, 0.5, 1.0])
    # Higher is better for a task metric: 31-25.
    assert plasticity(np.array([[25, 50], [31, 52], [30, 58]]), TASK.sign) == pytest.approx([6.0, 6.0])


def test_forgetting_is_from_the_best_score_since_training():
    # medical: best after training 1.4 (step 2), final 1.9 -> 0.5; legal: 2.4 -> 2.6 -> 0.2.
    assert forgetting(np.array(R_NLL), NLL.sign) == pytest.approx(0.35)
    # Nothing trained before the last domain of a one-domain run: undefined (NaN), not 0.
    assert np.isnan(forgetting(np.array([[2.0], [1.0]]), NLL.sign))


def test_backward_transfer_is_final_minus_just_trained():
    # medical: -(1.9 - 1.5) = -0.4; legal: -(2.6 - 2.4) = -0.2 (negative = forgotten).
    assert backward_transfer(np.array(R_NLL), NLL.sign) == pytest.approx(-0.3)


def test_forward_transfer_final_average_and_final_gain():
    # legal before its training: -(2.9 - 3.0) = 0.1; code: -(4.2 - 4.0) = -0.2.
    assert forward_transfer(np.array(R_NLL), NLL.sign) == pytest.approx(-0.05)
    assert final_average(np.array(R_NLL)) == pytest.approx((1.9 + 2.6 + 3.2) / 3)
    assert final_gain(np.array(R_NLL), NLL.sign) == pytest.approx((0.1 + 0.4 + 0.8) / 3)


def test_learning_retained_is_a_share_of_standard_lora_plasticity():
    half = [[v for v in row] for row in R_NLL]
    for i in range(3):  # half of each gain
        half[i + 1][i] = R_NLL[i][i] - (R_NLL[i][i] - R_NLL[i + 1][i]) / 2
    flat = [R_NLL[0]] * 4  # learns nothing
    retained = retained_by_run(*frames(run("standard_lora", 0, R_NLL), run("safeanchor", 0, half), run("no_training", 0, flat)))
    assert retained.to_dict() == pytest.approx({"standard_lora-0": 100.0, "safeanchor-0": 50.0, "no_training-0": 0.0})
    # No reference learning (Standard LoRA's plasticity 0 or below): undefined, not a share.
    unlearned = retained_by_run(*frames(run("standard_lora", 0, flat), run("safeanchor", 0, half)))
    assert unlearned.isna().all()
    # Without a Standard LoRA run nothing is retained of anything: the rows say so and sort by name.
    rows = utility_frame(*frames(run("safeanchor", 0, half), run("no_training", 0, flat))).to_dict("records")
    nll = [r for r in rows if r["measure"] == "nll"]
    assert [r["method"] for r in nll] == ["starting model", "no_training", "safeanchor"]
    assert [r["learning_retained"]["mean"] for r in nll[1:]] == [None, None]


def test_rows_average_seeds_and_rank_by_learning_retained():
    shifted = [R_NLL[0]] + [[v + 0.1 for v in row] for row in R_NLL[1:]]  # the same starting model
    shifted[1][0] = 1.4  # seed 1's plasticity: (2.0 - 1.4, 3.0 - 2.5, 4.3 - 3.3) = (0.6, 0.5, 1.0)
    runs = frames(run("standard_lora", 0, R_NLL), run("standard_lora", 1, shifted),
                  run("no_training", 0, [R_NLL[0]] * 4), run("ewc", 0, R_NLL, status="failed"))
    rows = [r for r in utility_frame(*runs).to_dict("records") if r["measure"] == "nll"]
    assert [r["method"] for r in rows] == ["starting model", "standard_lora", "no_training"]  # the failed run enters nothing
    standard = rows[1]
    p0, p1 = 2.0 / 3, 2.1 / 3
    assert standard["n"] == 2 and standard["plasticity"]["mean"] == pytest.approx((p0 + p1) / 2)
    assert standard["plasticity"]["sd"] == pytest.approx(abs(p1 - p0) / 2**0.5)
    assert standard["plasticity_by_domain"] == pytest.approx([0.55, 0.5, 1.0])
    # Each seed against the mean reference plasticity: the two shares average to 100.
    assert standard["learning_retained"]["mean"] == pytest.approx(100.0)
    assert standard["matrix"][1][0] == pytest.approx((1.5 + 1.4) / 2)
    assert rows[2]["learning_retained"]["mean"] == pytest.approx(0.0) and rows[2]["forgetting"]["mean"] == pytest.approx(0.0)
    start = rows[0]
    assert start["kind"] == "start" and start["final_average"]["mean"] == pytest.approx(3.0)
    assert start["learning_retained"]["mean"] == 0.0


def test_a_run_without_the_measure_has_no_utility():
    runs = frames(run("standard_lora", 0, task={"mmlu/acc": [40, 39, 38, 37]}))
    assert utility_by_run(*runs, NLL).empty
    assert utility_frame(*runs).empty


def test_task_metrics_are_the_domain_composite_terms():
    from benchmarks.composite import DOMAIN_PARTS  # the leaderboard cannot import benchmarks (torch)

    assert set(TASK_METRICS.values()) == {f"{benchmark}/{metric}" for benchmark, metric in DOMAIN_PARTS}
