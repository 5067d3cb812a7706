"""``erosion plan`` at paper scale: the Table 1 suite's size, where the throughput comes from, and
hours checked by hand against the formula of harness/orchestration/plan.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.orchestration.config import load_suite
from harness.orchestration.plan import JUDGE_COST, JUDGE_TOKENS, PAPER_DEFAULT, describe_plan, estimate, measured_throughput
from harness.orchestration.presets import PRESETS
from harness.orchestration.scheduler import Job, job_graph

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "sequences" / "paper.yaml"
TABLE1_BENCHMARKS = {"harmbench", "truthfulqa", "bbq", "wildguard", "medqa", "legalbench", "humaneval", "mmlu"}


def gpu_results(tmp_path: Path, train: float, generated: float, tiny: bool = False) -> Path:
    path = tmp_path / "gpu-results.json"
    path.write_text(json.dumps({"tiny": tiny, "device": "Test GPU", "finished_at": "2026-12-01T00:00:00Z",
                                "throughput": {"train_tokens_per_s": train, "generated_tokens_per_s": generated}}))
    return path


def test_table1_suite_has_every_method_seed_and_benchmark(tmp_path: Path) -> None:
    suite = load_suite(PAPER)
    assert len(suite.methods) >= 8 and suite.seeds == [0, 1, 2, 3, 4]
    assert TABLE1_BENCHMARKS <= set(suite.benchmarks) and suite.eval.judge == "harmbench-cls"
    assert suite.model == "paper-llama2" and suite.training.lora.r == 16 and suite.training.lora.alpha == 32
    text = describe_plan(suite, PRESETS[suite.model], tmp_path / "none.json")
    assert f"{len(suite.methods) * 5} run(s) = {len(suite.methods)} method(s) x 1 ordering(s) x 5 seed(s)" in text
    assert "GPU-hours in all" in text and "paper default" in text and "~250 GPU-h in all" in text


def test_default_throughput_is_calibrated_on_the_papers_hours_per_seed(tmp_path: Path) -> None:
    suite = load_suite(PAPER)
    est = estimate(suite, "paper", tmp_path / "none.json")
    assert est.throughput == PAPER_DEFAULT
    safeanchor_run = est.hours([Job("safeanchor", ("medical", "legal", "code"), 0)])
    assert safeanchor_run == pytest.approx(8.0 * 2, rel=0.02)  # ~8 h per seed on 2 x A100-40GB


def test_measured_throughput_drives_the_estimate(tmp_path: Path) -> None:
    results = gpu_results(tmp_path, train=10_000.0, generated=2_000.0)
    suite = load_suite(PAPER, {"benchmarks": ["harmbench"], "methods": ["standard_lora"], "seeds": [0]})
    est = estimate(suite, "paper", results)
    assert "measured: gpu-results.json (Test GPU" in est.throughput.source
    # Training: every sequence counted at max_seq_len, at 10,000 tokens/s.
    assert est.train_hours_per_run == pytest.approx(est.steps_per_run * 8 * 2 * 1024 / 10_000 / 3600)
    # One evaluation point: 240 HarmBench responses x 512 tokens at 2,000 tokens/s, plus the 13B judge
    # reading 240 x 1,000 tokens at 13/7 of a 7B forward pass (3 x 10,000 tokens/s).
    by_hand = 240 * 512 / 2_000 + 240 * JUDGE_TOKENS * JUDGE_COST / 30_000
    assert by_hand == pytest.approx(61.44 + 14.857, abs=0.01)
    assert est.eval_hours_per_point * 3600 == pytest.approx(by_hand)
    assert est.hours(job_graph(suite)) == pytest.approx(est.train_hours_per_run + 4 * by_hand / 3600)


def test_a_tiny_cpu_result_is_not_a_measurement(tmp_path: Path) -> None:
    assert measured_throughput(gpu_results(tmp_path, 10.0, 5.0, tiny=True)) is None
    assert measured_throughput(tmp_path / "missing.json") is None
    (tmp_path / "broken.json").write_text("{not json")
    assert measured_throughput(tmp_path / "broken.json") is None


@pytest.mark.parametrize("name, runs", [("paper-orderings", 2 * 6 * 5), ("paper-t5", 2 * 5), ("paper-mistral", None)])
def test_paper_variants_share_table1_settings(tmp_path: Path, name: str, runs: int | None) -> None:
    table1, suite = load_suite(PAPER), load_suite(REPO / "sequences" / f"{name}.yaml")
    assert suite.training == table1.training and suite.eval == table1.eval
    assert len(job_graph(suite)) == (runs or len(job_graph(table1)))
    text = describe_plan(suite, PRESETS[suite.model], tmp_path / "none.json")
    assert "GPU-hours in all" in text and "jobs:" in text
