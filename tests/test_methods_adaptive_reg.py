"""Adaptive regularization: the risk -> constraint rule by hand, the risk predictor (held-out
accuracy, harmful > benign domain), the KL term, and the judge-based critic."""
from __future__ import annotations

import math

import pytest
import torch
from test_methods_support import sgd_step, tiny_context

from benchmarks.judges import Judge, JudgeItem
from harness.core.errors import ConfigError
from harness.core.losses import lm_loss
from methods.adaptive_reg import (
    AdaptiveRegConfig,
    AdaptiveRegularization,
    RiskPredictor,
    constraint_weight,
    fit_risk_predictor,
    mean_pool,
)
from methods.lora_utils import fixed_batches

SMALL = {"predictor_examples": 48, "batch_size": 16}


def test_constraint_weight_hand_computed():
    assert constraint_weight(0.8, 2.0, 0.0) == 1.6
    assert constraint_weight(0.3, 2.0, 0.5) == 0.0  # below the threshold: unconstrained
    assert constraint_weight(0.5, 2.0, 0.5) == 1.0


def test_predictor_risk_hand_computed_and_fit_separates():
    predictor = RiskPredictor(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]), torch.tensor([1.0, -1.0]), torch.tensor(0.5))
    # z = ((3 - 1) / 2, (1 - 0) / 1) = (1, 1); z . w + b = 0.5
    assert abs(float(predictor.risk(torch.tensor([[3.0, 1.0]]))[0]) - 1 / (1 + math.exp(-0.5))) < 1e-6
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(40, 3, generator=gen) + 2, torch.randn(40, 3, generator=gen) - 2])
    y = torch.cat([torch.ones(40), torch.zeros(40)])
    fitted = fit_risk_predictor(x, y, l2=1e-2)
    assert fitted.accuracy(x, y) > 0.95


def test_mean_pool_hand_computed():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert torch.equal(mean_pool(hidden, torch.tensor([[True, True, False]])), torch.tensor([[2.0]]))


def batch_risk_and_term(method, ctx, examples):
    batch = next(fixed_batches(ctx.tokenizer, examples, len(examples), ctx.settings.max_seq_len))
    with method.forward_context(ctx, batch):
        lm_loss(ctx.model, batch).backward()
    risk = method.batch_risk
    return risk, method.extra_loss(ctx, batch)


@pytest.fixture(scope="module")
def trained(tiny_world):
    ctx = tiny_context(tiny_world)
    method = AdaptiveRegularization(AdaptiveRegConfig(**SMALL))
    method.before_domain(ctx)
    return ctx, method


def test_predictor_is_trained_and_its_heldout_accuracy_reported(trained):
    ctx, method = trained
    report = method.domain_report(ctx)["adaptive_reg"]
    assert report["predictor_n_train"] + report["predictor_n_heldout"] == 96
    assert report["predictor_n_heldout"] == round(0.2 * 96)
    assert 0.75 <= report["predictor_heldout_accuracy"] <= 1.0


def test_harmful_batch_gets_higher_risk_and_stronger_constraint_than_a_domain_batch(trained):
    ctx, method = trained
    sgd_step(ctx)  # the adapter leaves B = 0, so the KL to the reference is not zero
    harmful = list(ctx.calibration.harmful[-8:])  # not among the predictor's samples' likely picks
    risk_h, term_h = batch_risk_and_term(method, ctx, harmful)
    risk_d, _ = batch_risk_and_term(method, ctx, ctx.domain_examples[:8])
    weight_h, weight_d = method.weights[-2:]
    assert risk_h > 0.5 > risk_d and weight_h > weight_d
    assert weight_h == pytest.approx(risk_h) and weight_d == pytest.approx(risk_d)  # beta = 1
    kl_h = term_h.item() / weight_h
    assert term_h.requires_grad and kl_h > 0
    assert method.domain_report(ctx)["adaptive_reg"]["mean_risk"] == pytest.approx((risk_h + risk_d) / 2)


def test_reference_kl_is_zero_at_the_reference_and_the_threshold_skips_the_term(tiny_world):
    ctx = tiny_context(tiny_world)
    batch = next(fixed_batches(ctx.tokenizer, ctx.domain_examples[:4], 4, ctx.settings.max_seq_len))
    for reference in ("aligned", "previous"):
        method = AdaptiveRegularization(AdaptiveRegConfig(reference=reference, **SMALL))
        assert abs(method.reference_kl(ctx, batch).item()) < 1e-6  # B = 0: the model is the reference
    method = AdaptiveRegularization(AdaptiveRegConfig(risk_threshold=1.0, **SMALL))
    method.batch_risk = 0.9
    assert method.extra_loss(ctx, batch) is None and method.weights == [0.0]


class KeywordHarmJudge(Judge):
    """A harm judge for the test: "compliance" (harmful) when the response names a weapon."""

    name = "keyword-harm"

    def verdicts(self, items: list[JudgeItem]) -> list[str]:
        return ["compliance" if "bomb" in item.generation else "refusal" for item in items]


def test_judge_critic_scores_the_batch_by_its_harmful_pairs(tiny_world):
    from harness.core.data import Example

    ctx = tiny_context(tiny_world)
    method = AdaptiveRegularization(AdaptiveRegConfig(risk_source="judge", **SMALL))
    with pytest.raises(ConfigError, match="harm classifier judge"):
        method.before_domain(ctx)  # the refusal judge cannot call a response harmful
    judge = KeywordHarmJudge()
    ctx.harm_verdicts = lambda pairs: judge.verdicts([JudgeItem(p, r) for p, r in pairs])
    method.before_domain(ctx)
    examples = [Example("How do I make a cake?", "Mix flour and eggs.", "t"), Example("Help me", "Build a bomb like this.", "t"),
                Example("Q", "Answer.", "t"), Example("Q2", "Another bomb.", "t")]
    batch = next(fixed_batches(ctx.tokenizer, examples, 4, ctx.settings.max_seq_len))
    assert method.judge_risk(ctx, batch) == 0.5
    with method.forward_context(ctx, batch):
        pass
    assert method.extra_loss(ctx, batch) is not None and method.weights == [0.5]
