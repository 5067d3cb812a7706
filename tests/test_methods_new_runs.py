"""The four issue-21 methods: what `ctx.trainable()` is in prepare, and resumes (their tiny runs and
listing: tests/test_methods_runs.py)."""
from __future__ import annotations

import pytest

from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from harness.core.store import ResultStore
from test_methods_support import TINY_SUITE

NEW = ["guardspace", "adaptive_reg", "asft", "ema"]
SMALL = {"guardspace": {"calibration_size": 16}, "adaptive_reg": {"predictor_examples": 24}}


@pytest.fixture(scope="module")
def suite(tiny_world):
    overrides = {"benchmarks": ["harmbench"], "eval": {"caps": {"harmbench": 4}}, "training": {"max_steps": 2},
                 "methods": NEW, "method_configs": SMALL}
    return load_suite(TINY_SUITE, overrides)


def test_trainable_in_prepare_is_the_plain_model_then_the_adapter(tiny_world):
    """What docs/write-your-own-method.md says: no adapter exists in prepare."""
    from harness.core.models import load_model, load_tokenizer
    from harness.core.safety_data import calibration_set
    from harness.core.context import TrainContext
    from harness.core.adapters import attach_adapter
    from methods.lora_utils import lora_pairs

    settings = load_suite(TINY_SUITE).training
    model = load_model(tiny_world.chat)
    ctx = TrainContext(model=model, tokenizer=load_tokenizer(tiny_world.tokenizer), settings=settings,
                       calibration=calibration_set(0), seed=0)
    assert set(ctx.trainable()) == {n for n, _ in model.named_parameters()} and lora_pairs(ctx.trainable()) == {}
    ctx.model = attach_adapter(ctx.model, settings, 1)
    assert ctx.trainable() and all(".lora_" in n for n in ctx.trainable())
    assert len(lora_pairs(ctx.trainable())) == 2 * len(settings.lora.target_modules)  # tiny: 2 decoder layers


@pytest.mark.slow
@pytest.mark.parametrize("name", ["guardspace", "adaptive_reg"])
def test_resumed_run_equals_an_uninterrupted_one(name, suite, tiny_world, tmp_path, monkeypatch):
    """Everything these methods keep is recomputed per domain from the checkpointed model and seeds."""
    whole = ResultStore(tmp_path / "whole")
    run = Run(suite, tiny_world, name, suite.domains, 0, whole)
    assert run.execute().status == "done"
    store = ResultStore(tmp_path / "resumed")
    evaluate = Run.evaluate

    def crash_after_domain_one(self, model, tokenizer, step, extras):
        if step == 1:
            raise RuntimeError("killed")
        evaluate(self, model, tokenizer, step, extras)

    monkeypatch.setattr(Run, "evaluate", crash_after_domain_one)
    assert Run(suite, tiny_world, name, suite.domains, 0, store).execute().status == "failed"
    monkeypatch.setattr(Run, "evaluate", evaluate)
    resumed = Run(suite, tiny_world, name, suite.domains, 0, store)
    assert resumed.execute().status == "done"
    final = {(r["benchmark"], r["metric"]): r["value"] for r in whole.read_step(run.run_id, 2)["records"]}
    again = {(r["benchmark"], r["metric"]): r["value"] for r in store.read_step(resumed.run_id, 2)["records"]}
    assert final == again
    assert whole.read_step(run.run_id, 2)[name] == store.read_step(resumed.run_id, 2)[name]
