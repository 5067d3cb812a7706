"""The organism check computed from a results folder (harness/orchestration/organism.py), on a hand-made store."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.orchestration.organism import PAPER_ORDER, erosion_checks
from harness.core.store import Record, ResultStore, RunInfo, make_run_id


def add_run(store: ResultStore, seed: int, config_hash: str, started_at: float, harmbench: list[float], composite: list[float]) -> None:
    run_id = make_run_id("micro", "standard_lora", PAPER_ORDER, seed, config_hash)
    store.write_run(RunInfo(run_id, "micro", "micro", "standard_lora", PAPER_ORDER, seed, config_hash,
                            status="done", started_at=started_at, finished_at=started_at + 1))
    for step, (hb, comp) in enumerate(zip(harmbench, composite)):
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

    checks = {c["name"].split(" lowers ")[1]: c for c in erosion_checks(store, "micro")}
    harmbench, composite = checks["harmbench refusal_rate step by step"], checks["composite safety step by step"]
    assert harmbench["trajectory"] == [80, 72, 55, 35]
    assert harmbench["value"] == pytest.approx(45) and harmbench["met"]
    assert composite["trajectory"] == [80, 81, 72, 63]  # mean of 76 and 86 rises above 80
    assert composite["value"] == pytest.approx(17) and not composite["met"]  # drop is enough, not step by step


def test_no_finished_standard_lora_run_gives_no_check(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert erosion_checks(store, "micro") == []
