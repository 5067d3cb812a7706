"""Uncertainty: bootstrap draws at scoring time (benchmarks/base.py, benchmarks/composite.py) and
intervals, paired tests and tie-aware ranks at leaderboard time (leaderboard/stats.py), each on
small cases whose answer is known by hand."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import leaderboard_fixture as fx
import numpy as np
import pytest

from benchmarks import BENCHMARKS
from benchmarks.base import N_DRAWS, bootstrap_draws, item_weights, items_digest
from benchmarks.composite import composite_draws, step_bootstrap
from harness.core.store import Record, ResultStore, RunInfo, draw_interval, make_run_id
from harness.orchestration.rescore import rescore
from leaderboard import render
from leaderboard.aggregate import build_board
from leaderboard.stats import compare, seed_mean_draws, significance_ranks

MEDQA = BENCHMARKS["medqa"]


def medqa_items(correct: list[bool], prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "correct": c} for i, c in enumerate(correct)]


# --- the percentile interval -------------------------------------------------------------------------
def test_draw_interval_is_the_interpolated_percentile_of_finite_draws() -> None:
    # 0..100: the 2.5th and 97.5th percentiles are 2.5 and 97.5 (position q * (n - 1), interpolated).
    assert draw_interval([float(v) for v in range(101)]) == pytest.approx((2.5, 97.5))
    # [1, 2, 3, 4, 5] at level 0.5: quantiles 0.25 and 0.75 sit at positions 1 and 3 -> 2 and 4.
    assert draw_interval([5.0, 1.0, 4.0, 2.0, 3.0], level=0.5) == pytest.approx((2.0, 4.0))
    # NaN and None draws (a resample where the metric is undefined) are left out, not counted as 0.
    assert draw_interval([float("nan"), None, 1.0, 3.0], level=0.0) == pytest.approx((2.0, 2.0))
    assert draw_interval([float("nan")]) is None


# --- Poisson weights keyed by item id ------------------------------------------------------------------
def test_weights_depend_on_the_item_id_only_and_are_poisson_one() -> None:
    items = medqa_items([True] * 300)
    weights = item_weights("medqa", items)
    assert weights.shape == (300, N_DRAWS)
    # The same item at another position, among other items, is resampled identically: draws pair up.
    shuffled = items[150:] + items[:150]
    assert (item_weights("medqa", shuffled)[:150] == weights[150:]).all()
    # Another benchmark resamples independently (composite parts are independent samples).
    assert not (item_weights("mmlu", items) == weights).all()
    # Poisson(1): mean 1 and variance 1 (300,000 counts: within 1%).
    assert weights.mean() == pytest.approx(1.0, abs=0.01) and weights.var() == pytest.approx(1.0, abs=0.02)
    # Repeated ids are told apart (an item counted twice is two items).
    assert len({tuple(row) for row in item_weights("medqa", medqa_items([True, True], "x") * 2)}) == 4


def test_each_draw_is_the_score_of_its_resample() -> None:
    items = medqa_items([True, False, True, True, False])
    weights = item_weights("medqa", items)
    draws = bootstrap_draws(MEDQA, items)["acc"]
    for b in range(20):
        w = weights[:, b]
        expected = 100.0 * (w[0] + w[2] + w[3]) / w.sum() if w.sum() else math.nan
        assert draws[b] == pytest.approx(expected, abs=1e-4) or (math.isnan(draws[b]) and math.isnan(expected))


def test_bootstrap_interval_of_an_accuracy_matches_the_binomial_formula() -> None:
    # 400 items, half right: SE = 100 * sqrt(0.5 * 0.5 / 400) = 2.5 points; 95% interval = 50 ± 1.96 SE.
    draws = np.array(bootstrap_draws(MEDQA, medqa_items([i % 2 == 0 for i in range(400)]))["acc"])
    assert draws.std() == pytest.approx(2.5, rel=0.1)
    low, high = draw_interval(draws.tolist())
    assert low == pytest.approx(50 - 1.96 * 2.5, abs=0.8) and high == pytest.approx(50 + 1.96 * 2.5, abs=0.8)


def test_count_metrics_get_no_draws() -> None:
    items = [{"id": f"{t}{i}", "task": t, "gold": "Yes", "pred": "Yes"} for t in "ab" for i in range(3)]
    draws = bootstrap_draws(BENCHMARKS["legalbench"], items, n_draws=5)
    assert set(draws) == {"balanced_acc", "acc"}  # n_tasks is a count


# --- composites ---------------------------------------------------------------------------------------
def test_composite_draw_is_the_formula_on_its_parts_draws() -> None:
    parts = {"harmbench/refusal_rate": [80.0, 70.0], "truthfulqa/mc2": [50.0, 40.0], "bbq/bias_term": [10.0, 4.0],
             "medqa/acc": [30.0, 20.0]}
    out = composite_draws(parts, {"harmbench", "truthfulqa", "bbq", "medqa"})
    assert out["composite/safety"] == pytest.approx([(80 + 50 + 90) / 3, (70 + 40 + 96) / 3])
    assert out["composite/domain"] == pytest.approx([30.0, 20.0])
    # A measured part without draws (kept by rescore from before intervals) leaves the composite without any.
    assert "composite/domain" not in composite_draws(parts, {"harmbench", "truthfulqa", "bbq", "medqa", "legalbench"})


def test_step_bootstrap_gives_records_their_interval() -> None:
    items = medqa_items([i % 3 == 0 for i in range(90)])
    found = step_bootstrap({"medqa": (MEDQA, items)}, {"medqa"})
    low, high = found.interval("medqa", "acc")
    assert low < MEDQA.score(items)["acc"] < high
    assert found.interval("composite", "domain") == pytest.approx((low, high))  # domain = MedQA alone
    assert found.items == {"medqa": {"n": 90, "digest": items_digest(items)}}
    assert json.loads(json.dumps(found.payload(), allow_nan=False))["n_draws"] == N_DRAWS


def test_rescore_writes_the_same_draws_and_intervals_as_scoring(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    run_id = make_run_id("tiny", "standard_lora", ["medical"], 0, "cfg")
    store.write_run(RunInfo(run_id, "tiny", "micro", "standard_lora", ["medical"], 0, "cfg", status="done"))
    items = medqa_items([i % 4 == 0 for i in range(60)])
    scored = step_bootstrap({"medqa": (MEDQA, items)}, {"medqa"})
    records = [Record("tiny", "micro", "standard_lora", "medical", 0, 0, None, "medqa", "acc", 25.0, 60, "cfg",
                      ci_low=scored.interval("medqa", "acc")[0], ci_high=scored.interval("medqa", "acc")[1])]
    store.write_items(run_id, 0, "medqa", items)
    store.write_bootstrap(run_id, 0, scored.payload())
    store.write_step(run_id, 0, records, {})
    before = store.read_bootstrap(run_id, 0)
    assert rescore(store.root) == 1
    assert store.read_bootstrap(run_id, 0) == before
    rescored = {r["benchmark"] + "/" + r["metric"]: r for r in store.read_step(run_id, 0)["records"]}
    assert (rescored["medqa/acc"]["ci_low"], rescored["medqa/acc"]["ci_high"]) == pytest.approx(scored.interval("medqa", "acc"))
    assert rescored["composite/domain"]["ci_low"] == pytest.approx(scored.interval("medqa", "acc")[0])


# --- paired tests ---------------------------------------------------------------------------------------
def test_paired_bootstrap_sees_a_difference_that_an_unpaired_one_misses() -> None:
    # 100 items, B right on half; A is B plus 8 more right answers. 8 points, against an unpaired SE
    # of sqrt(2) x 5 = 7 points: not significant unpaired, but every paired resample has A >= B.
    base = [i % 2 == 0 for i in range(100)]
    better = [c or (i % 2 == 1 and i < 16) for i, c in enumerate(base)]
    a = np.array(bootstrap_draws(MEDQA, medqa_items(better))["acc"])
    b = np.array(bootstrap_draws(MEDQA, medqa_items(base))["acc"])
    paired = compare(a, b, 8.0, "b", paired=True)
    assert paired.significant and paired.ci_low > 0 and paired.p_value < 0.01
    # The same items resampled independently (other ids): the difference is no longer significant.
    unpaired_b = np.array(bootstrap_draws(MEDQA, medqa_items(base, prefix="other"))["acc"])
    unpaired = compare(a, unpaired_b, 8.0, "b", paired=False)
    assert not unpaired.significant and unpaired.ci_low < 0 < unpaired.ci_high and unpaired.p_value > 0.05


def test_identical_runs_do_not_differ() -> None:
    draws = np.array(bootstrap_draws(MEDQA, medqa_items([i % 3 == 0 for i in range(50)]))["acc"])
    same = compare(draws, draws, 0.0, "itself", paired=True)
    assert (same.ci_low, same.ci_high, same.p_value, same.significant) == (0.0, 0.0, 1.0, False)


def test_p_value_counts_draws_across_zero() -> None:
    # 10 difference draws, 2 of them <= 0: p = 2 x 2/10 = 0.4.
    this = np.array([3.0, 1.0, -1.0, 2.0, 0.0, 4.0, 5.0, 1.0, 2.0, 3.0])
    found = compare(this, np.zeros(10), 2.0, "zero", paired=True)
    assert found.p_value == pytest.approx(0.4) and not found.significant


def test_seed_mean_draws() -> None:
    one = np.array([1.0, 2.0, 3.0])
    assert (seed_mean_draws([one], "m") == one).all()
    runs = [np.full(2000, 10.0), np.full(2000, 20.0)]
    pooled = seed_mean_draws(runs, "m")
    # Each draw averages two runs picked with replacement: 10, 15 or 20, with chances 1/4, 1/2, 1/4.
    assert set(np.unique(pooled)) == {10.0, 15.0, 20.0}
    assert np.mean(pooled == 15.0) == pytest.approx(0.5, abs=0.05)
    assert (seed_mean_draws(runs, "m") == pooled).all()  # seeded: a re-render is identical


def test_significance_ranks() -> None:
    assert significance_ranks([0, 1, 2]) == ["1", "2", "3"]
    assert significance_ranks([0, 0, 2, 2]) == ["=1", "=1", "=3", "=3"]
    assert significance_ranks([0, 0, 1]) == ["=1", "=1", "2"]  # a chain of ties does not carry rank 1 down


# --- the leaderboard on a hand-made store ---------------------------------------------------------------
def write_one_seed_suite(root: Path, finals: dict[str, float]) -> None:
    """One seed per method, ordering medical>legal; each final composite has the fixture's draws."""
    store = ResultStore(root)
    for method, final in finals.items():
        run_id = make_run_id("micro", method, ["medical", "legal"], 0, "cfg")
        store.write_run(RunInfo(run_id, "micro", "micro", method, ["medical", "legal"], 0, "cfg", status="done"))
        for step, value in enumerate([70.0, (70.0 + final) / 2, final]):
            record = Record("micro", "micro", method, "medical>legal", 0, step, None, "composite", "safety", value)
            store.write_bootstrap(run_id, step, fx.draws_payload({"composite/safety": value}, f"{method}|{step}"))
            store.write_step(run_id, step, [record], {})


def test_leaderboard_marks_significance_and_ranks_ties(tmp_path: Path) -> None:
    # safeanchor and ewc 0.2 apart (the shared draw deviation cancels, own SD 0.3 x sqrt 2: a tie);
    # both far above standard_lora.
    write_one_seed_suite(tmp_path / "r", {"safeanchor": 60.2, "ewc": 60.0, "standard_lora": 50.0})
    board = build_board(tmp_path / "r")
    stats = {row.method: board.row_stats(row) for row in board.main}
    assert [stats[m].rank for m in ("safeanchor", "ewc", "standard_lora")] == ["=1", "=1", "3"]
    assert stats["safeanchor"].vs_next.other == "ewc" and not stats["safeanchor"].vs_next.significant
    assert stats["ewc"].vs_next.significant and stats["ewc"].vs_reference.significant
    assert stats["ewc"].vs_reference.difference == pytest.approx(10.0) and stats["ewc"].vs_reference.paired
    assert stats["standard_lora"].vs_reference is None
    # The final's interval: the fixture's draws are value + N(0, 2^2 + 0.3^2): ±1.96 x 2.02.
    low, high = stats["ewc"].intervals["composite/safety"]
    assert low == pytest.approx(60.0 - 1.96 * 2.02, abs=0.8) and high == pytest.approx(60.0 + 1.96 * 2.02, abs=0.8)
    paths = render(tmp_path / "r")
    markdown = paths["markdown"].read_text()
    assert "One seed per method" in markdown and "(ONE seed per method" in markdown
    from leaderboard import terminal_table

    assert "ONE seed per method" in terminal_table(tmp_path / "r")
    row = next(line for line in markdown.splitlines() if line.startswith("| ewc |"))
    assert "| =1 |" in row and "+10.0 [" in row and "] * |" in row
    csv_line = next(line for line in paths["csv"].read_text().splitlines() if ",ewc," in line)
    assert "=1" in csv_line
    payload = json.loads(paths["json"].read_text())
    ewc = next(r for r in payload["main"] if r["method"] == "ewc")
    assert ewc["stats"]["vs_standard_lora"]["significant"] is True and ewc["stats"]["rank"] == "=1"


def test_ties_do_not_chain_down_the_ranking(tmp_path: Path) -> None:
    """A ~ B and B ~ C, but A is significantly above C: C ranks 2, not "=1" by a chain of neighbours.

    The paired differences' draws have SD 0.3 x sqrt 2 = 0.42 (the shared deviation cancels): 0.6
    apart is a tie, 1.2 apart is significant."""
    write_one_seed_suite(tmp_path / "r", {"safeanchor": 61.2, "ewc": 60.6, "standard_lora": 60.0})
    board = build_board(tmp_path / "r")
    stats = {row.method: board.row_stats(row) for row in board.main}
    assert not stats["safeanchor"].vs_next.significant and not stats["ewc"].vs_next.significant
    assert stats["ewc"].vs_reference is not None and not stats["ewc"].vs_reference.significant
    assert [stats[m].rank for m in ("safeanchor", "ewc", "standard_lora")] == ["=1", "=1", "2"]


def test_steps_without_draws_render_without_intervals(tmp_path: Path) -> None:
    """Results written before intervals existed still render: no interval, no test, plain ranks."""
    write_one_seed_suite(tmp_path / "r", {"ewc": 60.0, "standard_lora": 50.0})
    for path in (tmp_path / "r").glob("runs/*/bootstrap/*.json"):
        path.unlink()
    board = build_board(tmp_path / "r")
    stats = {row.method: board.row_stats(row) for row in board.main}
    assert stats["ewc"].intervals == {} and stats["ewc"].vs_reference is None
    assert stats["ewc"].rank == "=1"  # untested neighbours are not declared different
    assert render(tmp_path / "r")["html"].exists()


def test_more_seeds_widen_the_interval_with_seed_variation(tmp_path: Path) -> None:
    """Two seeds 10 points apart: the seed-mean interval spans the seed spread, not just the items."""
    store = ResultStore(tmp_path / "r")
    for seed, final in ((0, 50.0), (1, 60.0)):
        run_id = make_run_id("micro", "ewc", ["medical"], seed, "cfg")
        store.write_run(RunInfo(run_id, "micro", "micro", "ewc", ["medical"], seed, "cfg", status="done"))
        for step, value in enumerate([70.0, final]):
            store.write_bootstrap(run_id, step, fx.draws_payload({"composite/safety": value}, f"{seed}|{step}"))
            record = Record("micro", "micro", "ewc", "medical", seed, step, None, "composite", "safety", value)
            store.write_step(run_id, step, [record], {})
    board = build_board(tmp_path / "r")
    (row,) = [row for row in board.main if row.method == "ewc"]
    low, high = board.row_stats(row).intervals["composite/safety"]
    assert row.final_mean == pytest.approx(55.0) and row.final_sd == pytest.approx(statistics.stdev([50.0, 60.0]))
    assert low < 50.0 and high > 60.0  # item-only draws (SD 2) would give about 55 ± 4


# --- the orderings sweep answers the paper's comparison ---------------------------------------------
def test_orderings_sweep_has_seeds_in_every_ordering() -> None:
    from harness.orchestration.config import load_suite

    suite = load_suite(Path(__file__).resolve().parent.parent / "sequences" / "orderings.yaml")
    assert len(suite.domain_orderings()) == 6 and len(suite.seeds) >= 3


def test_cross_ordering_against_within_ordering_seed_sd(tmp_path: Path) -> None:
    """Three orderings x three seeds, finals chosen by hand.

    safeanchor: seeds 60/61/62, 59.5/60.5/61.5, 60.5/61.5/62.5 -> ordering means 61, 60.5, 61.5
    (SD 0.5), seed SD 1.0 in each: across < within, as the paper claims; ordering effect
    sqrt(max(0, 0.25 - 1/3)) = 0. standard_lora: seeds 50/50.5/51 shifted by 0, 5, 10 -> means
    50.5, 55.5, 60.5 (SD 5), seed SD 0.5: across > within; effect sqrt(25 - 0.25/3) = 4.9917."""
    orderings = (("medical", "legal", "code"), ("legal", "code", "medical"), ("code", "medical", "legal"))
    finals = {"safeanchor": [(60.0, 61.0, 62.0), (59.5, 60.5, 61.5), (60.5, 61.5, 62.5)],
              "standard_lora": [(50.0, 50.5, 51.0), (55.0, 55.5, 56.0), (60.0, 60.5, 61.0)]}
    store = ResultStore(tmp_path / "r")
    for method, per_ordering in finals.items():
        for domains, seeds in zip(orderings, per_ordering, strict=True):
            for seed, final in enumerate(seeds):
                run_id = make_run_id("micro", method, list(domains), seed, "cfg")
                store.write_run(RunInfo(run_id, "micro", "micro", method, list(domains), seed, "cfg", status="done"))
                for step, value in enumerate([70.0, 65.0, 62.0, final]):
                    record = Record("micro", "micro", method, ">".join(domains), seed, step, None, "composite", "safety", value)
                    store.write_step(run_id, step, [record], {})
    rows = {row.method: row for row in build_board(tmp_path / "r").orderings}
    anchor, lora = rows["safeanchor"], rows["standard_lora"]
    assert anchor.cross_ordering_sd == pytest.approx(0.5) and anchor.within_ordering_sd == pytest.approx(1.0)
    assert anchor.across_below_within is True and anchor.ordering_effect_sd == pytest.approx(0.0)
    assert lora.cross_ordering_sd == pytest.approx(5.0) and lora.within_ordering_sd == pytest.approx(0.5)
    assert lora.across_below_within is False and lora.ordering_effect_sd == pytest.approx(math.sqrt(25 - 0.25 / 3))
    markdown = render(tmp_path / "r")["markdown"].read_text()
    line = next(row for row in markdown.splitlines() if row.startswith("| safeanchor |") and "0.50" in row)
    assert "| 0.50 | 1.00 | yes | 0.00 |" in line


# --- end to end: a real run writes intervals, and rescore writes the same ------------------------------
@pytest.mark.slow  # one tiny suite run in a subprocess (the same run tests/test_resume.py makes)
def test_a_run_writes_draws_and_intervals_and_rescore_reproduces_them(tiny_world, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "harness.cli", "run", str(repo / "tests" / "tiny-suite.yaml"), "--results",
           str(tmp_path), "--executor", "local", "--no-leaderboard"]
    done = subprocess.run(cmd, cwd=repo, env={**os.environ, "EROSION_KILL_AT": ""}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store = ResultStore(tmp_path, create=False)
    (run_id,) = store.run_ids()
    before = [(store.read_bootstrap(run_id, k), store.read_step(run_id, k)["records"]) for k in range(3)]
    for draws, records in before:
        assert draws["n_draws"] == N_DRAWS and "composite/safety" in draws["draws"]
        by_key = {f"{r['benchmark']}/{r['metric']}": r for r in records}
        low, high = draw_interval(draws["draws"]["harmbench/refusal_rate"])
        assert (by_key["harmbench/refusal_rate"]["ci_low"], by_key["harmbench/refusal_rate"]["ci_high"]) == (low, high)
        safety = by_key["composite/safety"]
        assert safety["ci_low"] <= safety["value"] <= safety["ci_high"]
        assert by_key["harmbench/unparseable"]["ci_low"] is None  # a count
    assert rescore(tmp_path) == 0  # the same items give the same records and draws: nothing to rewrite
    after = [(store.read_bootstrap(run_id, k), store.read_step(run_id, k)["records"]) for k in range(3)]
    assert after == before


def test_rescore_keeps_the_draws_of_benchmarks_it_cannot_rescore(tmp_path: Path) -> None:
    """MMLU's items are gone but its records and draws stay: the general composite keeps its interval."""
    store = ResultStore(tmp_path / "results")
    run_id = make_run_id("tiny", "standard_lora", ["medical"], 0, "cfg")
    store.write_run(RunInfo(run_id, "tiny", "micro", "standard_lora", ["medical"], 0, "cfg", status="done"))
    medqa = medqa_items([i % 4 == 0 for i in range(40)])
    mmlu = [{"id": f"s{i % 3}-{i}", "subject": f"s{i % 3}", "correct": i % 2 == 0} for i in range(30)]
    scored = step_bootstrap({"medqa": (MEDQA, medqa), "mmlu": (BENCHMARKS["mmlu"], mmlu)}, {"medqa", "mmlu"})
    records = [Record("tiny", "micro", "standard_lora", "medical", 0, 0, None, b, m, v, n)
               for b, m, v, n in (("medqa", "acc", 25.0, 40), ("mmlu", "acc", 50.0, 30))]
    store.write_items(run_id, 0, "medqa", medqa)  # no MMLU items
    store.write_bootstrap(run_id, 0, scored.payload())
    store.write_step(run_id, 0, records, {})
    assert rescore(store.root) == 1
    after = store.read_bootstrap(run_id, 0)
    assert after["draws"]["mmlu/acc"] == scored.payload()["draws"]["mmlu/acc"]
    assert after["draws"]["composite/general"] == scored.payload()["draws"]["mmlu/acc"]
    assert after["items"]["mmlu"] == scored.items["mmlu"]


def test_fast_path_for_plain_means_equals_scoring_each_resample() -> None:
    """TruthfulQA declares per-item values: its vectorised draws equal ``score`` on every resample."""
    from benchmarks.base import resampled_score_draws, weighted_mean_draws

    truthfulqa = BENCHMARKS["truthfulqa"]
    rng = np.random.default_rng(0)
    items = [{"id": i, "mc1_ll": rng.normal(size=4).tolist(), "mc2_ll": rng.normal(size=6).tolist(),
              "mc2_labels": [1, 1, 0, 0, 0, 0]} for i in range(40)]
    weights = item_weights("truthfulqa", items, 200)
    slow = resampled_score_draws(truthfulqa, ["mc1", "mc2"], items, weights)
    fast = weighted_mean_draws(["mc1", "mc2"], [truthfulqa.item_values(i) for i in items], weights)
    for name in ("mc1", "mc2"):
        assert fast[name] == pytest.approx(slow[name], abs=1e-9)
    assert set(bootstrap_draws(truthfulqa, items, 200)) == {"mc1", "mc2"}
