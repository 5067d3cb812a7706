"""The utility axis end to end: held-out sets that training never sees, the domain_nll learning
measure, and the no_training reference, through the real runner on the tiny world."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import TINY_SUITE

from benchmarks import get_benchmark
from harness.core.adapters import attach_adapter, merge_adapter
from harness.core.context import TrainContext
from harness.core.domains import (
    DOMAINS,
    domain_examples,
    held_out_examples,
    is_code_held_out,
    training_examples,
)
from harness.core.models import load_model, load_tokenizer
from harness.core.safety_data import calibration_set
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from harness.training import train_domain
from leaderboard.aggregate import read_frames
from leaderboard.continual import NLL, retained_by_run, utility_by_run
from methods import build_method


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_no_held_out_prompt_is_ever_trained_on(name):
    held_out = {e.prompt for e in held_out_examples(name, None)}
    trained = {e.prompt for e in training_examples(name, None, seed=0)}
    assert len(held_out) >= 300 and trained and not held_out & trained


def test_training_examples_only_leave_the_held_out_rows_out():
    # Medical's builder already excludes its carve: the same seeded sample as before the utility axis.
    assert training_examples("medical", 50, 3) == domain_examples("medical", 50, 3)
    # Code's builder keeps its carve (the micro world samples from it); training leaves it out.
    everything = domain_examples("code", None, 3)
    assert training_examples("code", None, 3) == [e for e in everything if not is_code_held_out(e.prompt)]


def test_held_out_cap_takes_the_same_items_every_time():
    first = held_out_examples("legal", 5)
    assert first == held_out_examples("legal", 5) == held_out_examples("legal", 8)[:5]


def test_domain_nll_pools_tokens_within_a_domain():
    items = [{"domain": "medical", "nll": 6.0, "tokens": 2}, {"domain": "medical", "nll": 2.0, "tokens": 6},
             {"domain": "code", "nll": 3.0, "tokens": 1}]
    # medical: (6 + 2) / (2 + 6) = 1.0 (not the mean of 3.0 and 0.33); code: 3.0; mean over domains 2.0.
    assert get_benchmark("domain_nll").score(items) == pytest.approx({"medical": 1.0, "code": 3.0, "mean": 2.0})


def test_domain_nll_is_the_response_loglikelihood(tiny_lm):
    items = get_benchmark("domain_nll").run(tiny_lm, 2, 8)
    assert {i["domain"] for i in items} == set(DOMAINS) and len(items) == 2 * len(DOMAINS)
    example = held_out_examples("finance", 1)[0]
    (ll, _), = tiny_lm.loglikelihood([(tiny_lm.chat_prompt(example.prompt), example.response)])
    first = next(i for i in items if i["domain"] == "finance")
    assert first["nll"] == pytest.approx(-ll) and first["tokens"] == len(tiny_lm.encode(example.response))


ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def utility_store(tiny_world, tmp_path_factory):
    """Standard LoRA and no_training on the finance domain of the tiny world, evaluated by domain_nll.

    The tiny model is barely pre-trained: its attention-only r=4 adapter does not move the loss in
    a few steps, so this run adapts every linear layer at a high learning rate (10 steps)."""
    overrides = {"domains": ["finance"], "benchmarks": ["domain_nll"], "eval": {"caps": {"domain_nll": 12}},
                 "methods": ["standard_lora", "no_training"],
                 "training": {"max_steps": 10, "lr": 1e-2, "lora": {"r": 8, "alpha": 16, "target_modules": ALL_MODULES}}}
    suite = load_suite(TINY_SUITE, overrides)
    store = ResultStore(tmp_path_factory.mktemp("utility") / "results")
    for method in suite.methods:
        info = Run(suite, tiny_world, method, suite.domains, 0, store).execute()
        assert info.status == "done", info.error
    return store


def nll_by_step(store: ResultStore, method: str) -> list[dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    for r in store.records():
        if r["method"] == method and r["benchmark"] == "domain_nll":  # not the chance:domain_nll records
            rows.setdefault(r["step"], {})[r["metric"]] = r["value"]
    return [rows[t] for t in sorted(rows)]


@pytest.mark.slow
def test_standard_lora_lowers_the_nll_of_the_domain_it_trains(utility_store):
    steps = nll_by_step(utility_store, "standard_lora")
    assert steps[1]["finance"] < steps[0]["finance"] - 0.2  # measured: 5.21 -> 4.76 nats/token


def test_no_training_leaves_every_weight_as_it_was(tiny_world):
    settings = load_suite(TINY_SUITE, {"training": {"lr": 1e-2}}).training
    model = load_model(tiny_world.chat)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    ctx = TrainContext(model=attach_adapter(model, settings, 1), tokenizer=load_tokenizer(tiny_world.tokenizer),
                       settings=settings, calibration=calibration_set(0), seed=0, domains=["finance"],
                       domain="finance", domain_index=0)
    stats = train_domain(ctx, build_method("no_training"), training_examples("finance", 50, 0))
    assert stats["n_examples"] == 1 and stats["domain"]["steps"] == 1  # one step, its update thrown away
    merged = merge_adapter(ctx.model)
    assert all(torch.equal(start[name], p) for name, p in merged.named_parameters())


@pytest.mark.slow
def test_no_training_learns_nothing(utility_store):
    start, after = nll_by_step(utility_store, "no_training")
    assert after == start  # the starting model, number for number ...
    runs, values, _ = read_frames(utility_store)
    run_ids = dict(zip(runs["method"], runs["run_id"], strict=True))
    # ... because its weights are the starting weights, so the runner reuses the shared step-0 result.
    assert utility_store.read_step(run_ids["no_training"], 1)["eval_reused"] == ["domain_nll"]
    assert "eval_reused" not in utility_store.read_step(run_ids["standard_lora"], 1)
    assert utility_by_run(runs, values, NLL).set_index("method").loc["no_training", "plasticity"] == 0.0
    retained = retained_by_run(runs, values)
    assert retained[run_ids["no_training"]] == 0.0 and retained[run_ids["standard_lora"]] == pytest.approx(100.0)
