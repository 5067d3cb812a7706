"""Safety interleaving: 10% replay with benign->helpful pairs as well as harmful->refusal ones."""
from __future__ import annotations

from harness.core.context import TrainContext
from harness.core.data import Example
from harness.core.safety_data import calibration_set
from methods.interleave import SafetyInterleaving, SafetyInterleavingConfig, replay_count


def context(domain_index: int) -> TrainContext:
    return TrainContext(model=None, tokenizer=None, settings=None, calibration=calibration_set(0), seed=0,
                        domain="medical", domain_index=domain_index)


def test_replay_is_ten_percent_of_the_mixture():
    assert replay_count(90, 0.1) == 10
    assert replay_count(900, 0.25) == 300
    assert replay_count(50, 0.0) == 0


def test_mixture_keeps_the_domain_and_adds_both_kinds_of_replay():
    ctx = context(0)
    domain = [Example(f"question {i}", f"answer {i}", "medical") for i in range(180)]
    mixture = SafetyInterleaving(SafetyInterleavingConfig(harmful_share=0.4)).data_mixture(ctx, domain)
    replay = mixture[len(domain):]
    assert mixture[: len(domain)] == domain and len(replay) == 20  # 20 / 200 = 10%
    assert sum(e in ctx.calibration.harmful for e in replay) == 8
    assert sum(e in ctx.calibration.benign for e in replay) == 12
    again = SafetyInterleaving(SafetyInterleavingConfig(harmful_share=0.4)).data_mixture(ctx, domain)
    assert again == mixture  # seeded
    other_domain = SafetyInterleaving(SafetyInterleavingConfig(harmful_share=0.4)).data_mixture(context(1), domain)
    assert other_domain[len(domain):] != replay  # drawn afresh for every domain
