"""``eval.final_only``: a benchmark evaluated for the starting model and after the last domain only,
through the real runner on the tiny world; a composite's part may not be skipped, an unknown name
is an error."""
from __future__ import annotations

import pytest
from test_methods_support import TINY_SUITE

from benchmarks.chance import CHANCE_PREFIX
from harness.core.errors import ConfigError
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from leaderboard import render

FINAL_ONLY = {"benchmarks": ["harmbench", "xstest"], "eval": {"caps": {"harmbench": 4, "xstest": 4}, "final_only": ["xstest"]},
              "domains": ["medical", "legal", "code"], "training": {"max_steps": 1}}


def benchmarks_by_step(store: ResultStore) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for record in store.records():
        if not record["benchmark"].startswith((CHANCE_PREFIX, "composite")):
            found.setdefault(record["step"], set()).add(record["benchmark"])
    return found


@pytest.mark.slow
def test_a_final_only_benchmark_is_skipped_between_the_first_and_last_step(tiny_world, tmp_path) -> None:
    suite = load_suite(TINY_SUITE, FINAL_ONLY)
    store = ResultStore(tmp_path / "results")
    run = Run(suite, tiny_world, "standard_lora", suite.domains, 0, store)
    assert run.execute().status == "done"
    assert benchmarks_by_step(store) == {0: {"harmbench", "xstest"}, 1: {"harmbench"}, 2: {"harmbench"},
                                         3: {"harmbench", "xstest"}}
    items = store.root / "runs" / run.run_id / "items"
    assert sorted(p.name for p in (items / "step-2").iterdir()) == ["harmbench.jsonl"]
    assert run.is_done()
    lines = render(store.root)["markdown"].read_text().splitlines()  # the leaderboard renders with the gaps
    header = next(line for line in lines if line.startswith("| Method |") and "XSTest" in line).split("|")
    row = next(line for line in lines if line.startswith("| standard_lora")).split("|")
    assert row[header.index(" XSTest ")].strip()[0].isdigit()  # the final step's XSTest, not "missing"


@pytest.mark.parametrize("final_only, message", [
    (["xstset"], "unknown benchmark 'xstset'"),
    (["harmbench"], "a part of a composite"),
])
def test_final_only_names_a_known_benchmark_outside_the_composites(final_only, message) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_suite(TINY_SUITE, {**FINAL_ONLY, "eval": {**FINAL_ONLY["eval"], "final_only": final_only}})
    assert "eval.final_only" in str(caught.value)


def test_a_final_only_benchmark_the_suite_does_not_run_is_allowed() -> None:
    """The micro preset names XSTest; a suite that includes it and runs no XSTest stays valid."""
    assert load_suite(TINY_SUITE, {"eval": {"final_only": ["wildguard"]}}).eval.final_only == ["wildguard"]
