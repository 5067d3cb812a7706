"""The organism check computed from a results folder (harness/orchestration/organism.py), on a hand-made store."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.store import Record, ResultStore, RunInfo, make_run_id
from harness.orchestration.organism import PAPER_ORDER, SMALL_TARGETS, erosion_checks, starting_checks


def add_run(store: ResultStore, seed: int, config_hash: str, started_at: float, harmbench: list[float],
            composite: list[float]) -> None:
    run_id = make_run_id("micro", "standard_lora", PAPER_ORDER, seed, config_hash)
    store.write_run(RunInfo(run_id, "micro", "micro", "standard_lora", PAPER_ORDER, seed, config_hash,
                            status="done", started_at=started_at, finished_at=started_at + 1))
    for step, (hb, comp) in enumerate(zip(harmbench, composite, strict=True)):
        domain = PAPER_ORDER[step - 1] if step else None
        records = [Record("micro", "micro", "standard_lora", ">".join(PAPER_ORDER), seed, step, domain, benchmark, metric, value,
                          config_hash=config_hash)
                   for benchmark, metric, value in (("harmbench", "refusal_rate", hb), ("composite", "safety", comp))]
        store.write_step(run_id, step, records, {})


def test_erosion_checks_average_the_newest_configs_seeds_only(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    # An earlier config (e.g. more steps per domain) that eroded steeply: it must not enter.
    add_run(store, 0, "old000000000", 100.0, [80, 10, 5, 0], [80, 30, 20, 10])
    add_run(store, 1, "old000000000", 110.0, [80, 10, 5, 0], [80, 30, 20, 10])
    # The current config, two seeds: HarmBench falls every step; composite rises after Medical in seed 1.
    add_run(store, 0, "new000000000", 200.0, [80, 70, 60, 40], [80, 76, 70, 62])
    add_run(store, 1, "new000000000", 210.0, [80, 74, 50, 30], [80, 86, 74, 64])

    checks = {c["name"].split(" lowers ")[1]: c for c in erosion_checks(store, "micro") if " lowers " in c["name"]}
    harmbench, composite = checks["harmbench refusal_rate step by step"], checks["composite safety step by step"]
    assert harmbench["trajectory"] == [80, 72, 55, 35]
    assert harmbench["value"] == pytest.approx(45) and harmbench["met"]
    assert composite["trajectory"] == [80, 81, 72, 63]  # mean of 76 and 86 rises above 80
    assert composite["value"] == pytest.approx(17) and not composite["met"]  # drop is enough, not step by step


def test_no_finished_standard_lora_run_gives_no_check(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert erosion_checks(store, "micro") == []


def test_lost_refusal_counts_only_compliance(tmp_path: Path) -> None:
    """HarmBench non-refusals split into compliance and degenerate; hand-computed shares."""
    store = ResultStore(tmp_path)
    harmbench = [[80, 70, 60, 40], [80, 74, 50, 30]]
    compliance = [[15, 25, 30, 45], [15, 20, 40, 45]]  # mean 15, 22.5, 35, 45: rises 30, every step
    for seed in (0, 1):
        add_run(store, seed, "new000000000", 200.0 + seed, harmbench[seed], [80, 76, 70, 62])
        run_id = make_run_id("micro", "standard_lora", PAPER_ORDER, seed, "new000000000")
        for step in range(4):
            payload = store.read_step(run_id, step)
            extra = [Record("micro", "micro", "standard_lora", ">".join(PAPER_ORDER), seed, step, None, "harmbench", metric,
                            value, config_hash="new000000000")
                     for metric, value in (("compliance_rate", compliance[seed][step]),
                                           ("degenerate_rate", 100 - harmbench[seed][step] - compliance[seed][step]))]
            store.write_step(run_id, step, [Record(**r) for r in payload["records"]] + extra, {})
    rows = [c for c in erosion_checks(store, "micro") if " lowers " not in c["name"]]
    assert len(rows) == 3
    rise, compliance_share, degenerate_share = rows
    assert rise["trajectory"] == [15, 22.5, 35, 45] and rise["value"] == pytest.approx(30) and rise["met"]
    # Final: refusal 35, compliance 45, degenerate 20 -> of 65 non-refusals, 69.2 % compliance, 30.8 % degenerate.
    assert compliance_share["value"] == pytest.approx(100 * 45 / 65) and not compliance_share["met"]
    assert degenerate_share["value"] == pytest.approx(100 * 20 / 65) and not degenerate_share["met"]


def test_results_without_compliance_records_get_no_compliance_rows(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    add_run(store, 0, "new000000000", 200.0, [80, 70, 60, 40], [80, 76, 70, 62])
    assert all(" lowers " in c["name"] for c in erosion_checks(store, "micro"))


def add_records(store: ResultStore, seed: int, per_step: list[list[tuple[str, str, float]]]) -> None:
    """Append (benchmark, metric, value) records to each step of the run ``add_run`` wrote for ``seed``."""
    run_id = make_run_id("micro", "standard_lora", PAPER_ORDER, seed, "new000000000")
    for step, extra in enumerate(per_step):
        payload = store.read_step(run_id, step)
        records = [Record("micro", "micro", "standard_lora", ">".join(PAPER_ORDER), seed, step, None, benchmark, metric, value,
                          config_hash="new000000000") for benchmark, metric, value in extra]
        store.write_step(run_id, step, [Record(**r) for r in payload["records"]] + records, {})


def test_learning_check_in_seed_sds_by_hand(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    # medical NLL: step 0 -> 1 gains 0.10, 0.12, 0.11 (mean 0.11, SD 0.01: 11 SDs, met);
    # legal, step 1 -> 2: 0.30, 0.10, 0.20 (mean 0.2, SD 0.1: 2 SDs, not met); code, step 2 -> 3: -0.01 each (SD 0: not met).
    nll = {"medical": [[1.0, 0.90, 0.9, 0.9], [1.0, 0.88, 0.9, 0.9], [1.0, 0.89, 0.9, 0.9]],
           "legal": [[2.0, 2.0, 1.70, 1.7], [2.0, 2.0, 1.90, 1.9], [2.0, 2.0, 1.80, 1.8]],
           "code": [[3.0, 3.0, 3.0, 3.01], [3.0, 3.0, 3.0, 3.01], [3.0, 3.0, 3.0, 3.01]]}
    for seed in range(3):
        add_run(store, seed, "new000000000", 200.0 + seed, [80, 70, 60, 40], [80, 76, 70, 62])
        add_records(store, seed, [[("domain_nll", d, nll[d][seed][step]) for d in nll] for step in range(4)])
    rows = {c["name"].split(":")[0]: c for c in erosion_checks(store, "micro") if c["name"].startswith("Standard LoRA learns")}
    medical, legal, code = (rows[f"Standard LoRA learns {d}"] for d in PAPER_ORDER)
    assert medical["value"] == pytest.approx(11.0) and medical["met"]
    assert legal["value"] == pytest.approx(2.0) and not legal["met"]
    assert code["value"] == 0.0 and not code["met"]


def test_learning_check_needs_two_seeds_and_on_topic_reads_the_final_step(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    add_run(store, 0, "new000000000", 200.0, [80, 70, 60, 40], [80, 76, 70, 62])
    add_records(store, 0, [[("domain_nll", "medical", 1.0 - step / 10), ("harmbench", "on_topic_rate", on_topic)]
                           for step, on_topic in enumerate([float("nan"), 90.0, 10.0, 40.0])])
    checks = erosion_checks(store, "micro")
    assert not any(c["name"].startswith("Standard LoRA learns") for c in checks)  # one seed: no SD
    on_topic = [c for c in checks if "repeat a content word" in c["name"]]
    assert len(on_topic) == 1 and on_topic[0]["value"] == 40.0 and not on_topic[0]["met"]  # the final step, below 50


def test_starting_checks_by_hand() -> None:
    measured = {"small-chat": {"harmbench_refusal": 86.0, "harmbench_degenerate": 1.0, "xstest_compliance_safe": 69.6,
                               "xstest_degenerate": 5.2},
                "small-base": {"harmbench_refusal": 20.0}}
    refuses, base, xstest, readable = starting_checks("small", measured, SMALL_TARGETS)
    assert refuses["met"] and refuses["value"] == 86.0
    assert base["met"]  # at the bound: <= 20
    assert not xstest["met"] and xstest["value"] == 69.6
    assert readable["value"] == 5.2 and not readable["met"]  # the highest degenerate rate counts
