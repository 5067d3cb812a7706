"""What a run trained stays loadable: one PEFT adapter per domain (``PeftModel.from_pretrained``
loads it), the full final model on request, and ``erosion evaluate --model RUN_FOLDER`` scores it
to the same numbers the run recorded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from benchmarks import get_benchmark
from benchmarks.judges import get_judge
from harness.core.lm import ChatLM
from harness.core.models import load_model, load_tokenizer, load_trained
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run

pytestmark = pytest.mark.slow  # a finished run kept whole, then reloaded (~15 s; `make test` and CI run them)

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny-suite.yaml"


@pytest.fixture(scope="module")
def finished_run(tiny_world, tmp_path_factory: pytest.TempPathFactory):
    suite = load_suite(TINY, {"keep_models": True})
    store = ResultStore(tmp_path_factory.mktemp("results"))
    run = Run(suite, tiny_world, "standard_lora", suite.domains, 0, store)
    assert run.execute().status == "done"
    return suite, store, run.run_id


def recorded(store: ResultStore, step: int, benchmark: str) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in store.records() if r["step"] == step and r["benchmark"] == benchmark}


def scores_of(model: torch.nn.Module, suite, handle) -> dict[str, dict[str, float]]:
    lm = ChatLM(model, load_tokenizer(handle.tokenizer), max_length=handle.max_length, batch_size=suite.eval.batch_size)
    judge = get_judge(suite.eval.judge)
    return {name: get_benchmark(name).evaluate(lm, suite.eval.caps.get(name), suite.eval.max_new_tokens, judge).scores
            for name in suite.benchmarks}


def test_each_domain_keeps_a_peft_adapter_that_reproduces_its_step(finished_run, tiny_world) -> None:
    suite, store, run_id = finished_run
    trained = store.trained_dir(run_id)
    assert sorted(p.name for p in trained.iterdir()) == ["adapter-1", "adapter-2", "manifest.json", "model-2"]
    model = PeftModel.from_pretrained(load_model(tiny_world.chat), str(trained / "adapter-1")).merge_and_unload()
    for name, metrics in scores_of(model, suite, tiny_world).items():
        assert metrics == pytest.approx(recorded(store, 1, name), nan_ok=True)


def test_the_chain_of_adapters_gives_the_kept_final_model(finished_run, tiny_world) -> None:
    suite, store, run_id = finished_run
    trained = store.trained_dir(run_id)
    kept = dict(load_trained(trained, 2).named_parameters())  # the manifest lists model-2
    manifest = json.loads((trained / "manifest.json").read_text())
    (trained / "manifest.json").write_text(json.dumps({**manifest, "models": {}}))
    try:
        chained = load_trained(trained, 2)  # the starting model + adapter 1 + adapter 2
    finally:
        (trained / "manifest.json").write_text(json.dumps(manifest))
    for name, param in chained.named_parameters():
        torch.testing.assert_close(param, kept[name])
    for name, metrics in scores_of(chained, suite, tiny_world).items():
        assert metrics == pytest.approx(recorded(store, 2, name), nan_ok=True)
    starting = dict(load_trained(trained, 0).named_parameters())
    assert all(torch.equal(p, starting[n]) for n, p in load_model(tiny_world.chat).named_parameters())


def test_evaluate_cli_scores_a_run_folder_at_a_step(finished_run, tiny_world) -> None:
    suite, store, run_id = finished_run
    cmd = [sys.executable, "-m", "harness.cli", "evaluate", "--model", str(store.run_dir(run_id)), "--step", "1",
           "--benchmarks", "harmbench", "--cap", str(suite.eval.caps["harmbench"]),
           "--max-new-tokens", str(suite.eval.max_new_tokens), "--out", str(store.root.parent / "eval-out")]
    result = subprocess.run(cmd, cwd=REPO, env=os.environ, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = recorded(store, 1, "harmbench")["refusal_rate"]
    assert f"refusal_rate={expected:.2f}" in result.stdout
