"""``harness.orchestration.rescore.rescore``: every step's scores recomputed from the saved items, composites included."""
from __future__ import annotations

import json

import pytest

from benchmarks.composite import composites
from harness.orchestration.rescore import rescore
from harness.core.store import Record, ResultStore, RunInfo

RUN = "tiny__standard_lora__medical-legal__s0__abcdef12"
IDENTITY = dict(model="tiny", scale="micro", method="standard_lora", ordering="medical>legal", seed=0,
                config_hash="abcdef1234", wall_time_s=3.5, versions={"torch": "x"})


def make_records(step: int, scores: dict[str, dict[str, float]], n: dict[str, int]) -> list[Record]:
    domain = [None, "medical", "legal"][step]
    rows = [(b, m, v, n.get(b)) for b, metrics in scores.items() for m, v in metrics.items()]
    rows += [("composite", k, v, None) for k, v in composites(scores).items()]
    return [Record(step=step, domain=domain, benchmark=b, metric=m, value=v, n=k, **IDENTITY) for b, m, v, k in rows]


MEDQA_ITEMS = [{"id": str(i), "correct": c} for i, c in enumerate([True, False, False, True])]  # 50
MMLU_ITEMS = [{"id": f"a-{i}", "subject": "a", "correct": c} for i, c in enumerate([True, True])] + \
             [{"id": f"b-{i}", "subject": "b", "correct": c} for i, c in enumerate([True, False, False, False])]  # (100 + 25) / 2
LEGAL_ITEMS = [{"id": str(i), "task": "t", "gold": g, "pred": p} for i, (g, p) in enumerate([("Yes", "Yes"), ("No", "Yes")])]  # 50


@pytest.fixture
def results(tmp_path):
    store = ResultStore(tmp_path / "results")
    store.write_run(RunInfo(RUN, "tiny", "micro", "standard_lora", ["medical", "legal"], 0, "abcdef1234", status="done"))
    stale = {"medqa": {"acc": 99.0}, "mmlu": {"acc": 1.0, "acc_micro": 1.0, "n_subjects": 2.0},
             "harmbench": {"refusal_rate": 80.0, "refusal_nll": 1.5, "unparseable": 0.0}}
    for step in (0, 1):
        store.write_step(RUN, step, make_records(step, stale, {"medqa": 4, "mmlu": 6, "harmbench": 12}),
                         {"eval_seconds": 1.25, "events": [{"kind": "csm"}], "domain": None})
        store.write_items(RUN, step, "medqa", MEDQA_ITEMS)
        store.write_items(RUN, step, "mmlu", MMLU_ITEMS)
    store.write_items(RUN, 1, "legalbench", LEGAL_ITEMS)  # items saved, records lost
    return store


def values(store: ResultStore, step: int) -> dict[str, float]:
    return {f"{r['benchmark']}/{r['metric']}": r["value"] for r in store.read_step(RUN, step)["records"]}


def test_rescore_recomputes_scores_and_composites(results):
    assert rescore(results.root) == 2
    step0, step1 = values(results, 0), values(results, 1)
    assert step0["medqa/acc"] == pytest.approx(50.0)
    assert step0["mmlu/acc"] == pytest.approx(62.5) and step0["mmlu/acc_micro"] == pytest.approx(50.0)
    assert step0["harmbench/refusal_rate"] == 80.0  # no saved items: kept as it was
    assert step0["composite/general"] == pytest.approx(62.5)
    assert step0["composite/domain"] == pytest.approx(50.0)
    assert "composite/safety" not in step0  # truthfulqa and bbq were never measured
    assert step1["legalbench/balanced_acc"] == pytest.approx(50.0)
    assert step1["composite/domain"] == pytest.approx((50.0 + 50.0) / 2)


def test_rescore_keeps_identity_counts_and_extras(results):
    rescore(results.root)
    payload = results.read_step(RUN, 1)
    assert payload["eval_seconds"] == 1.25 and payload["events"] == [{"kind": "csm"}] and payload["step"] == 1
    for record in payload["records"]:
        assert {k: record[k] for k in IDENTITY} == IDENTITY and record["step"] == 1 and record["domain"] == "medical"
    n = {(r["benchmark"], r["metric"]): r["n"] for r in payload["records"]}
    assert n[("medqa", "acc")] == 4 and n[("mmlu", "acc")] == 6 and n[("harmbench", "refusal_rate")] == 12
    assert n[("composite", "domain")] is None
    benchmarks = [r["benchmark"] for r in payload["records"]]
    assert benchmarks.index("composite") > max(i for i, b in enumerate(benchmarks) if b != "composite")


def test_rescore_is_idempotent_and_matches_the_leaderboard_reader(results):
    rescore(results.root)
    first = json.loads(results.step_path(RUN, 0).read_text())
    assert rescore(results.root) == 2
    assert json.loads(results.step_path(RUN, 0).read_text()) == first
    assert len(results.records()) == len(first["records"]) + len(results.read_step(RUN, 1)["records"])


def test_rescore_skips_a_run_held_by_another_process(results):
    with results.lock(RUN) as acquired:
        assert acquired
        with pytest.warns(UserWarning, match="held by another process"):
            assert rescore(results.root) == 0


def test_rescore_rebuilds_lost_records_from_run_info(results):
    payload = results.read_step(RUN, 1)
    results.write_step(RUN, 1, [], {k: v for k, v in payload.items() if k not in ("records", "step")})
    assert rescore(results.root) == 2
    records = results.read_step(RUN, 1)["records"]
    got = {f"{r['benchmark']}/{r['metric']}": r["value"] for r in records}
    assert got["medqa/acc"] == pytest.approx(50.0) and got["legalbench/balanced_acc"] == pytest.approx(50.0)
    assert {r["model"] for r in records} == {"tiny"} and {r["ordering"] for r in records} == {"medical>legal"}
    assert {r["step"] for r in records} == {1}
