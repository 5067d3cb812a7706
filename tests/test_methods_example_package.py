"""The out-of-tree example method: pip-installed into a temporary target (never into the running
environment), found through the `erosion_bench.methods` entry point group, and run by the runner."""
from __future__ import annotations

from pathlib import Path

from test_methods_support import TINY_SUITE, install_example

from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from methods import all_methods, resolve_method

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "erosion-example-method"


def test_installed_example_method_runs_through_the_runner(tiny_world, tmp_path, monkeypatch):
    install_example(EXAMPLE, tmp_path, monkeypatch, "erosion_example_method")

    assert "l2_anchor" in all_methods()
    cls = resolve_method("l2_anchor")
    assert cls.__module__ == "erosion_example_method" and cls.describe().startswith("L2 anchor:")

    overrides = {"benchmarks": ["harmbench"], "eval": {"caps": {"harmbench": 4}}, "training": {"max_steps": 2},
                 "methods": ["l2_anchor"], "method_configs": {"l2_anchor": {"weight": 0.1}}}
    suite = load_suite(TINY_SUITE, overrides)
    store = ResultStore(tmp_path / "results")
    run = Run(suite, tiny_world, "l2_anchor", suite.domains, 0, store)
    info = run.execute()
    assert info.status == "done", info.error
    assert {r["method"] for r in store.records()} == {"l2_anchor"}
    assert info.config["method_config"] == {"weight": 0.1}
