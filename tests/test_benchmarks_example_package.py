"""The out-of-tree example benchmark: pip-installed into a temporary target (never into the running
environment), found through the `erosion_bench.benchmarks` entry point group and run by the runner;
also named by its 'module:Class' path without installing, and scored by hand."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_methods_support import TINY_SUITE, install_example

from benchmarks import all_benchmarks, get_benchmark
from harness.core.errors import ConfigError
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "erosion-example-benchmark"
ONLY_SUMS = {"benchmarks": ["sums"], "eval": {"caps": {"sums": 4}, "final_only": []}, "training": {"max_steps": 1},
             "methods": ["no_training"]}


def test_installed_example_benchmark_runs_through_the_runner(tiny_world, tmp_path, monkeypatch):
    install_example(EXAMPLE, tmp_path, monkeypatch, "erosion_example_benchmark")

    assert "sums" in all_benchmarks()
    assert type(get_benchmark("sums")).__module__ == "erosion_example_benchmark"

    suite = load_suite(TINY_SUITE, ONLY_SUMS)
    store = ResultStore(tmp_path / "results")
    info = Run(suite, tiny_world, "no_training", suite.domains, 0, store).execute()
    assert info.status == "done", info.error
    records = [r for r in store.records() if r["benchmark"] == "sums"]
    assert {r["step"] for r in records} == {0, 1, 2} and all(r["n"] == 4 for r in records)
    accuracies = [r["value"] for r in records if r["metric"] == "acc"]
    assert len(accuracies) == 3 and all(value in (0.0, 25.0, 50.0, 75.0, 100.0) for value in accuracies)


def test_example_benchmark_by_path_without_installing(tiny_lm, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "erosion_example_benchmark", raising=False)
    suite = load_suite(TINY_SUITE, {**ONLY_SUMS, "benchmarks": ["erosion_example_benchmark:Sums"], "eval": {"caps": {}}})
    bench = get_benchmark(suite.benchmarks[0])
    items = bench.run(tiny_lm, 4, 8)
    from erosion_example_benchmark import questions

    options = {q["id"]: q["options"] for q in questions()}
    assert [i["id"] for i in items] == ["sum-0", "sum-1", "sum-2", "sum-3"]
    for item in items:  # the prediction is the option of the highest log-likelihood
        assert item["pred"] == options[item["id"]][item["ll"].index(max(item["ll"]))]
        assert item["correct"] == (item["pred"] == item["gold"])
    assert bench.score(items) == {"acc": 25.0 * sum(i["correct"] for i in items)}


def test_example_scores_are_hand_checked(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from erosion_example_benchmark import Sums, questions

    first = questions()[0]
    assert len(set(first["options"])) == 4 and first["gold"] == first["a"] + first["b"] in first["options"]
    assert questions() == questions()  # the same questions on every call
    items = [{"correct": c} for c in (True, False, True, True)]
    assert Sums().score(items) == {"acc": 75.0}
    assert [Sums().item_values(i) for i in items] == [{"acc": 100.0}, {"acc": 0.0}, {"acc": 100.0}, {"acc": 100.0}]


@pytest.mark.parametrize("path, says", [
    ("benchmarks.base:percent", "is not a subclass of benchmarks.base.Benchmark"),
    ("no_such_package.quiz:Quiz", "cannot import benchmark 'no_such_package.quiz:Quiz'"),
    (":Quiz", "is neither a registered name nor 'package.module:Class'"),
])
def test_a_bad_benchmark_path_names_the_key_and_the_fix(path, says):
    with pytest.raises(ConfigError, match="key 'benchmarks'") as caught:
        load_suite(TINY_SUITE, {"benchmarks": [path]})
    assert says in str(caught.value) and "Fix:" in str(caught.value)
