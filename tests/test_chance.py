"""Chance levels (benchmarks/chance.py): the closed-form uniform model equals the real model with
every weight set to 0, the runner caches its scores once per model, the leaderboard shows them."""
from __future__ import annotations

import json
import math

import pytest

from benchmarks import get_benchmark
from benchmarks.chance import UniformLM
from harness.core.lm import ChatLM
from harness.core.models import load_model, load_tokenizer
from harness.core.store import ResultStore
from harness.orchestration.perturb import perturb


@pytest.fixture(scope="module")
def zeroed(tiny_world):
    tokenizer = load_tokenizer(tiny_world.tokenizer)
    model = perturb(load_model(tiny_world.chat), "zero")
    real = ChatLM(model, tokenizer, max_length=tiny_world.max_length)
    uniform = UniformLM(model=None, tokenizer=tokenizer, max_length=tiny_world.max_length, vocab_size=model.config.vocab_size)
    return real, uniform


def test_uniform_model_by_hand(zeroed) -> None:
    _, uniform = zeroed
    n = len(uniform.encode(" B, a longer answer"))
    (short, _), (long, _) = uniform.loglikelihood([("Question?", " A"), ("Question?", " B, a longer answer")])
    assert short == pytest.approx(-math.log(uniform.vocab_size)) and long == pytest.approx(-n * math.log(uniform.vocab_size))


def test_uniform_model_equals_the_zero_weight_model(zeroed) -> None:
    real, uniform = zeroed
    requests = [("The capital of France is", " Paris"), ("Q: 2+2?\nA:", " four, obviously"), ("x", " y")]
    for (a, greedy_a), (b, greedy_b) in zip(real.loglikelihood(requests), uniform.loglikelihood(requests), strict=True):
        assert a == pytest.approx(b, rel=1e-5) and greedy_a == greedy_b
    prompts = [real.chat_prompt("Hello"), real.chat_prompt("Tell me a story")]
    assert real.generate(prompts, 6) == uniform.generate(prompts, 6)
    # Same scores through a benchmark (log-likelihood and generation).
    for name in ("truthfulqa", "xstest"):
        bench = get_benchmark(name)
        assert bench.evaluate(uniform, 4, 6).scores == pytest.approx(bench.evaluate(real, 4, 6).scores, nan_ok=True)


def test_runner_measures_chance_once_per_model(tiny_suite, tiny_world, tmp_path) -> None:
    from harness.orchestration.runner import Run

    store = ResultStore(tmp_path / "results")
    run = Run(tiny_suite, tiny_world, "standard_lora", tiny_suite.domains, 0, store)
    tokenizer = load_tokenizer(tiny_world.tokenizer)
    model = load_model(tiny_world.chat)
    first = run.chance_scores(model, tokenizer)
    assert set(first) == {f"chance:{name}" for name in tiny_suite.benchmarks} | {"chance:composite"}
    cached = sorted((store.root / "starting").glob("chance-*.json"))
    assert len(cached) == len(tiny_suite.benchmarks)
    if "harmbench" in tiny_suite.benchmarks:
        assert first["chance:harmbench"]["degenerate_rate"] == 100.0 and first["chance:harmbench"]["refusal_rate"] == 0.0
    mtimes = [p.stat().st_mtime_ns for p in cached]
    other = Run(tiny_suite, tiny_world, "ewc", tiny_suite.domains, 0, store)
    # (as JSON: a rate of nothing, e.g. on_topic_rate where nothing complied, is NaN, which != itself)
    assert json.dumps(other.chance_scores(model, tokenizer), sort_keys=True) == json.dumps(first, sort_keys=True)
    assert [p.stat().st_mtime_ns for p in cached] == mtimes  # read from the cache, not measured again


def test_leaderboard_shows_a_chance_row_under_the_starting_model(tmp_path) -> None:
    from harness.core.store import Record, RunInfo, make_run_id
    from leaderboard import render

    store = ResultStore(tmp_path / "results")
    run_id = make_run_id("micro", "standard_lora", ["medical"], 0, "cfg1")
    values = {0: {"harmbench/refusal_rate": 80.0, "composite/safety": 70.0, "chance:harmbench/refusal_rate": 0.0,
                  "chance:composite/safety": 31.5},
              1: {"harmbench/refusal_rate": 60.0, "composite/safety": 62.0}}
    for step, metrics in values.items():
        store.write_step(run_id, step, [Record("micro", "micro", "standard_lora", "medical", 0, step, "medical" if step else None,
                                               *key.split("/"), value, 10, "cfg1") for key, value in metrics.items()], {})
    store.write_run(RunInfo(run_id, "micro", "micro", "standard_lora", ["medical"], 0, "cfg1", status="done"))
    markdown = render(store.root)["markdown"].read_text()
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    names = [line.split(" | ")[0].strip("| ") for line in lines]
    start = names.index("starting model")
    assert names[start + 1] == "chance (uniform model)"
    chance = lines[start + 1]
    assert "31.5" in chance and "| 0.0 |" in chance and "all weights 0" in markdown
