"""EWC + LoRA: penalty, diagonal Fisher, anchor and the sequential (online) Fisher."""
from __future__ import annotations

import torch
from test_methods_support import sgd_step, tiny_context

from methods.ewc import EWC, EWCConfig, ewc_penalty
from methods.lora_utils import batch_mean_fisher, collect_grads, lora_pairs, unflatten_pair


def test_penalty_hand_computed():
    params = {"w": torch.tensor([1.0, 2.0]), "v": torch.tensor([3.0])}
    anchor = {"w": torch.tensor([0.0, 0.0]), "v": torch.tensor([1.0])}
    fisher = {"w": torch.tensor([0.5, 0.25]), "v": torch.tensor([2.0])}
    # lambda * (0.5 * 1 + 0.25 * 4 + 2 * 4) = 2 * 9.5 (no 1/2, as the SafeAnchor reference code)
    assert ewc_penalty(params, anchor, fisher, lam=2.0).item() == 19.0
    assert EWCConfig().lam == 100.0


def test_fisher_is_the_reference_codes_squared_batch_mean_gradients():
    """F = 1/N sum over batches of (mean gradient of the batch)^2: with batches of 2, the rows
    (1, -2), (3, 0) average to (2, -1) and (1, 2), (-1, 0) to (0, 1), so F = ((4, 1) + (0, 1)) / 4."""
    grads = torch.tensor([[1.0, -2.0], [3.0, 0.0], [1.0, 2.0], [-1.0, 0.0]])
    assert batch_mean_fisher(grads, 2).tolist() == [1.0, 0.5]
    assert grads.pow(2).mean(0).tolist() == [3.0, 2.0]  # the per-example estimate: 3x and 4x larger here
    assert batch_mean_fisher(grads, 1).tolist() == [3.0, 2.0]  # batches of one are the per-example estimate
    assert EWCConfig().fisher_batch_size == 8


def test_penalty_magnitude_hand_computed_from_gradients():
    """lambda * sum F (theta - theta*)^2 with the reference's Fisher: lambda 100, displacement (0.1, 0.2):
    100 * (1.0 * 0.01 + 0.5 * 0.04) = 3.0 (the per-example Fisher would give 100 * (0.03 + 0.08) = 11)."""
    fisher = {"w": batch_mean_fisher(torch.tensor([[1.0, -2.0], [3.0, 0.0], [1.0, 2.0], [-1.0, 0.0]]), 2).float()}
    penalty = ewc_penalty({"w": torch.tensor([0.1, 0.2])}, {"w": torch.zeros(2)}, fisher, lam=100.0)
    assert abs(penalty.item() - 3.0) < 1e-5


def test_safety_fisher_at_a_fresh_adapter_constrains_b_only(tiny_world):
    ctx = tiny_context(tiny_world)
    method = EWC(EWCConfig(fisher_source="safety", fisher_samples=6, lam=10.0))
    method.before_domain(ctx)
    params = ctx.trainable()
    pairs = lora_pairs(params)
    pair = next(iter(pairs.values()))
    assert method.fisher[pair.a].abs().sum() == 0  # B = 0: every lora_A gradient is zero
    assert method.fisher[pair.b].abs().sum() > 0
    # One batch of all six examples: F = (gradient of their mean loss)^2 / 6.
    grads = collect_grads(ctx.model, ctx.tokenizer, list(ctx.calibration.harmful[:6]), pairs, 8, ctx.settings.max_seq_len)
    expected = unflatten_pair(pair, grads[pair.layer].mean(0).pow(2) / 6, params)
    assert torch.allclose(method.fisher[pair.b], expected[pair.b])
    # At the anchor the penalty is 0; moving the adapter makes it positive and equal to the formula.
    assert method.extra_loss(ctx, {}).item() == 0.0
    sgd_step(ctx)
    penalty = method.extra_loss(ctx, {})
    manual = 10.0 * sum((method.fisher[n] * (p - method.anchor[n]).pow(2)).sum() for n, p in ctx.trainable().items())
    assert penalty.item() > 0 and torch.allclose(penalty, manual)


def test_previous_domain_fisher_accumulates_with_decay(tiny_world):
    ctx = tiny_context(tiny_world)
    method = EWC(EWCConfig(fisher_samples=4, decay=0.5))
    method.before_domain(ctx)
    assert method.fisher == {} and method.extra_loss(ctx, {}) is None  # nothing to protect in domain 1
    method.after_domain(ctx)
    method.after_domain(ctx)  # two identical "domains": weights 0.5 (older) and 1
    ctx.domain_index = 2
    method.before_domain(ctx)
    single = EWC(EWCConfig(fisher_samples=4))
    single.domain_samples = method.domain_samples[:1]
    single.before_domain(ctx)
    assert all(torch.allclose(method.fisher[n], 1.5 * single.fisher[n]) for n in single.fisher)


def test_state_round_trip(tiny_world):
    ctx = tiny_context(tiny_world)
    method = EWC(EWCConfig(fisher_source="safety", fisher_samples=4))
    method.before_domain(ctx)
    method.after_domain(ctx)
    copy = EWC(method.config)
    copy.load_state_dict(method.state_dict())
    assert copy.fisher.keys() == method.fisher.keys()
    assert all(torch.equal(copy.anchor[n], method.anchor[n].cpu()) for n in method.anchor)
