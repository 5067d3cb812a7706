"""Adaptive regularization: the risk -> constraint rule by hand, the risk predictor (held-out
accuracy, harmful > benign domain), the KL term, and the judge-based critic."""
from __future__ import annotations

import math

import pytest
import torch
from test_methods_support import sgd_step, tiny_context

from benchmarks.judges import Judge, JudgeItem
from harness.core.errors import ConfigError
from harness.core.losses import labelled_logits, lm_loss
from harness.core.models import load_model
from methods.adaptive_reg import (
    AdaptiveRegConfig,
    AdaptiveRegularization,
    RiskPredictor,
    constraint_weight,
    fit_risk_predictor,
    mean_pool,
    released_code_weights,
    task_gradient_scaled,
)
from methods.lora_utils import fixed_batches

SMALL = {"predictor_examples": 48, "batch_size": 16}


def test_released_code_weights_hand_computed():
    """w = clamp((s - 2) / 3, 0.1, 0.9) on the harm score s = 1 + 4 r; task weight 1 - w."""
    assert released_code_weights(1.0) == pytest.approx((0.1, 0.9))  # s = 5: clamped at 0.9
    assert released_code_weights(0.0) == pytest.approx((0.9, 0.1))  # s = 1: a low-risk batch still gets 0.1
    assert released_code_weights(0.5) == pytest.approx((2 / 3, 1 / 3))  # s = 3
    assert AdaptiveRegConfig().weighting == "released_code"


def test_task_gradient_is_scaled_only_for_the_wrapped_backward():
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    (3 * weight.sum()).backward()  # an earlier micro-batch: gradient (3, 3), kept
    with task_gradient_scaled({"w": weight}, lambda: 0.1):
        (weight * torch.tensor([10.0, 20.0])).sum().backward()  # adds (10, 20), scaled to (1, 2)
    assert weight.grad.tolist() == pytest.approx([4.0, 5.0])


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
    assert risk_h > 0.5 > risk_d and weight_h > weight_d  # risk: the share of prompts called harmful
    assert weight_h == pytest.approx(released_code_weights(risk_h)[1])
    assert weight_d == pytest.approx(released_code_weights(risk_d)[1])
    kl_h = term_h.item() / weight_h
    assert term_h.requires_grad and kl_h > 0
    assert method.domain_report(ctx)["adaptive_reg"]["mean_risk"] == pytest.approx((risk_h + risk_d) / 2)


def test_reference_kl_is_zero_at_the_reference_and_the_threshold_skips_the_term(tiny_world):
    ctx = tiny_context(tiny_world)
    batch = next(fixed_batches(ctx.tokenizer, ctx.domain_examples[:4], 4, ctx.settings.max_seq_len))
    for reference in ("aligned", "previous"):
        method = AdaptiveRegularization(AdaptiveRegConfig(reference=reference, **SMALL))
        assert abs(method.reference_kl(ctx, batch).item()) < 1e-6  # B = 0: the model is the reference
    method = AdaptiveRegularization(AdaptiveRegConfig(weighting="linear", risk_threshold=1.0, **SMALL))
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
    method = AdaptiveRegularization(AdaptiveRegConfig(risk_source="judge", weighting="linear", **SMALL))
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


def test_harmful_batch_trains_its_task_at_the_released_codes_weight(trained):
    """Under forward_context the task gradient of a batch called harmful is 0.1 of the plain one."""
    ctx, method = trained
    batch = next(fixed_batches(ctx.tokenizer, list(ctx.calibration.harmful[-8:]), 8, ctx.settings.max_seq_len))
    params = ctx.trainable()
    plain = torch.autograd.grad(lm_loss(ctx.model, batch), list(params.values()))
    ctx.model.zero_grad(set_to_none=True)  # earlier tests' backward passes accumulated here
    with method.forward_context(ctx, batch):
        lm_loss(ctx.model, batch).backward()
    task_weight = method.batch_weights(method.batch_risk)[0]
    assert method.batch_risk > 0.5 and task_weight == pytest.approx(1 - released_code_weights(method.batch_risk)[1])
    assert all(torch.allclose(p.grad, task_weight * g, atol=1e-7) for p, g in zip(params.values(), plain, strict=True))
    ctx.model.zero_grad(set_to_none=True)
    method.extra_loss(ctx, batch)  # consumes the batch's risk


def test_constraint_is_the_forward_kl_from_the_aligned_model(tiny_world):
    """KL(pi_ref || pi_theta), not the reverse: by hand from the separately loaded aligned model's
    logits (the two directions differ by more than the tolerance)."""
    ctx = tiny_context(tiny_world)
    sgd_step(ctx, lr=5.0)  # a large step: KL is symmetric to second order, so a small one cannot tell them apart
    batch = next(fixed_batches(ctx.tokenizer, list(ctx.calibration.harmful[:4]), 4, ctx.settings.max_seq_len))
    with torch.no_grad():
        log_ref = torch.log_softmax(labelled_logits(load_model(tiny_world.chat), batch)[0], -1)
        log_p = torch.log_softmax(labelled_logits(ctx.model, batch)[0], -1)
    forward = (log_ref.exp() * (log_ref - log_p)).sum(-1).mean()
    reverse = (log_p.exp() * (log_p - log_ref)).sum(-1).mean()
    assert abs(forward - reverse) > 1e-2 * forward
    method = AdaptiveRegularization(AdaptiveRegConfig(**SMALL))
    assert torch.allclose(method.reference_kl(ctx, batch).detach(), forward, rtol=1e-4)
