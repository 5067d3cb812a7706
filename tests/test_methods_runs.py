"""Every built-in method through the real runner on the tiny world (2 steps per domain), a resume of
the stateful ones, what `ctx.trainable()` is in prepare, and `erosion methods` listing all of them
with their config fields."""
from __future__ import annotations

import pytest
from test_methods_support import TINY_SUITE

from harness.cli import main
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from methods import all_methods

BUILT_IN = ["standard_lora", "ewc", "olora", "safe_lora", "vaccine", "safegrad", "safety_interleaving", "safeanchor",
            "guardspace", "adaptive_reg", "asft", "ema"]
SMALL = {
    "ewc": {"fisher_samples": 8},
    "vaccine": {"examples": 8, "epochs": 1, "batch_size": 4},
    "safegrad": {"alignment_examples": 16, "alignment_batch_size": 2},
    "safeanchor": {"calibration_size": 8, "repair_steps": 2, "repair_safety_examples": 8, "probe_size": 4},
    "guardspace": {"calibration_size": 16},
    "adaptive_reg": {"predictor_examples": 24},
}
# What each method reports beside the evaluation after a domain.
REPORTS = {"ewc": "ewc", "safe_lora": "safe_lora", "safegrad": "safegrad", "safeanchor": "fisher_spectrum",
           "guardspace": "guardspace", "adaptive_reg": "adaptive_reg", "asft": "asft", "ema": "ema"}


@pytest.fixture(scope="module")
def suite(tiny_world):
    overrides = {"benchmarks": ["harmbench"], "eval": {"caps": {"harmbench": 4}}, "training": {"max_steps": 2},
                 "methods": BUILT_IN, "method_configs": SMALL}
    return load_suite(TINY_SUITE, overrides)


@pytest.mark.parametrize("name", BUILT_IN)
def test_method_runs_the_tiny_sequence(name, suite, tiny_world, tmp_path):
    store = ResultStore(tmp_path / "results")
    run = Run(suite, tiny_world, name, suite.domains, 0, store)
    info = run.execute()
    assert info.status == "done", info.error
    steps = store.step_extras(run.run_id)
    assert len(steps) == 3 and all(s["train"]["domain"]["steps"] == 2 for s in steps[1:])
    assert {r["method"] for r in store.records()} == {name} and len(store.records()) > 0
    if name in REPORTS:
        assert all(REPORTS[name] in s for s in steps[1:])
    if name == "vaccine":  # the alignment stage ran through the loop before the sequence
        assert steps[0]["train"]["vaccine_alignment"]["steps"] == 2
    if name == "adaptive_reg":  # the risk predictor's held-out accuracy is in the run's records
        assert all(0.5 <= s["adaptive_reg"]["predictor_heldout_accuracy"] <= 1.0 for s in steps[1:])
    if name == "guardspace":  # the null-space projector kept the harmful outputs near where they were
        assert all(max(s["guardspace"]["harmful_output_drift"].values()) < 0.5 for s in steps[1:])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ewc", "safeanchor", "guardspace", "adaptive_reg"])
def test_stateful_method_resumes_after_a_crash(name, suite, tiny_world, tmp_path, monkeypatch):
    """Killed after domain 1, rerun: the run resumes from checkpoint 1 with the method's state (EWC's
    Fisher sample, SafeAnchor's memory; GuardSpace and adaptive regularization recompute theirs from
    the checkpointed model and seeds) and ends with an uninterrupted run's records."""
    whole = ResultStore(tmp_path / "whole")
    uninterrupted = Run(suite, tiny_world, name, suite.domains, 0, whole)
    assert uninterrupted.execute().status == "done"
    store = ResultStore(tmp_path / "results")
    evaluate = Run.evaluate

    def crash_after_domain_one(self, model, tokenizer, step, extras):
        if step == 1:
            raise RuntimeError("killed")
        evaluate(self, model, tokenizer, step, extras)

    monkeypatch.setattr(Run, "evaluate", crash_after_domain_one)
    first = Run(suite, tiny_world, name, suite.domains, 0, store).execute()
    assert first.status == "failed" and "killed" in first.error
    monkeypatch.setattr(Run, "evaluate", evaluate)
    run = Run(suite, tiny_world, name, suite.domains, 0, store)
    info = run.execute()
    assert info.status == "done", info.error
    steps = store.step_extras(run.run_id)
    assert len(steps) == 3
    if name == "ewc":  # domain 2's Fisher needs the domain-1 sample restored from the checkpoint
        assert steps[2]["ewc"]["fisher_sum"] > 0
    assert step_values(store, run.run_id, 2) == step_values(whole, uninterrupted.run_id, 2)
    assert store.read_step(run.run_id, 2)[REPORTS[name]] == whole.read_step(uninterrupted.run_id, 2)[REPORTS[name]]


def test_trainable_in_prepare_is_the_plain_model_then_the_adapter(tiny_world):
    """What docs/write-your-own-method.md says: no adapter exists in prepare."""
    from harness.core.adapters import attach_adapter
    from harness.core.context import TrainContext
    from harness.core.models import load_model, load_tokenizer
    from harness.core.safety_data import calibration_set
    from methods.lora_utils import lora_pairs

    settings = load_suite(TINY_SUITE).training
    model = load_model(tiny_world.chat)
    ctx = TrainContext(model=model, tokenizer=load_tokenizer(tiny_world.tokenizer), settings=settings,
                       calibration=calibration_set(0), seed=0)
    assert set(ctx.trainable()) == {n for n, _ in model.named_parameters()} and lora_pairs(ctx.trainable()) == {}
    ctx.model = attach_adapter(ctx.model, settings, 1)
    assert ctx.trainable() and all(".lora_" in n for n in ctx.trainable())
    assert len(lora_pairs(ctx.trainable())) == 2 * len(settings.lora.target_modules)  # tiny: 2 decoder layers


def test_erosion_methods_lists_every_method_with_its_config_fields(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in BUILT_IN:
        assert f"\n{name}: " in f"\n{out}"
        for field in all_methods()[name].Config.model_fields:
            assert f"    {field} (" in out
    assert "lam (float) = 0.5" in out and "tau (float) = 0.05" in out and "lambda1 (float) = 0.5" in out


@pytest.mark.slow  # two whole suites (~13 s)
def test_untouched_starting_model_is_evaluated_once_and_shared(suite, tiny_world, tmp_path):
    shared = ResultStore(tmp_path / "shared")
    runs = {name: Run(suite, tiny_world, name, suite.domains, 0, shared)
            for name in ("standard_lora", "ewc", "vaccine", "safegrad")}
    for run in runs.values():
        assert run.execute().status == "done"
    step0 = {name: shared.read_step(run.run_id, 0) for name, run in runs.items()}
    assert "eval_reused" not in step0["standard_lora"]  # the first run evaluates and shares
    assert step0["ewc"]["eval_reused"] == ["harmbench"]
    assert "eval_reused" not in step0["vaccine"]  # its prepare() trains the model: nothing to share
    assert step0["safegrad"]["eval_reused"] == ["harmbench"]  # step 0 comes before its persistent adapter
    # one shared evaluation (the chance-level cache, starting/chance-*.json, is its own file)
    assert len([p for p in (shared.root / "starting").glob("*.json") if not p.name.startswith("chance-")]) == 1
    assert (shared.read_items(runs["ewc"].run_id, 0, "harmbench")
            == shared.read_items(runs["standard_lora"].run_id, 0, "harmbench"))
    # The shared result equals what EWC computes for itself in a store of its own.
    alone = ResultStore(tmp_path / "alone")
    own = Run(suite, tiny_world, "ewc", suite.domains, 0, alone)
    assert own.execute().status == "done"
    assert step_values(alone, own.run_id, 0) == step_values(shared, runs["ewc"].run_id, 0)
    # ... in the same order (a resumed run's records must equal an uninterrupted run's, order too).
    assert list(step_values(alone, own.run_id, 0)) == list(step_values(shared, runs["ewc"].run_id, 0))


def step_values(store: ResultStore, run_id: str, step: int) -> dict[tuple[str, str], float]:
    return {(r["benchmark"], r["metric"]): r["value"] for r in store.read_step(run_id, step)["records"]}
