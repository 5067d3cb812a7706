"""O-LoRA: the orthogonality penalty and the kept copies of earlier lora_A matrices."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import sgd_step, tiny_context

from harness.core.adapters import attach_adapter, merge_adapter
from harness.core.errors import ConfigError
from harness.training import _accumulate_extra
from methods.lora_utils import lora_pairs
from methods.olora import OLoRA, OLoRAConfig, orthogonality_penalty


def test_penalty_hand_computed():
    previous = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    new = torch.tensor([[1.0, -2.0, 5.0]])
    # A_prev A_new^T = [[1], [-2]] -> L1 = 3; a row orthogonal to both earlier rows costs nothing.
    assert orthogonality_penalty(previous, new).item() == 3.0
    assert orthogonality_penalty(previous, torch.tensor([[0.0, 0.0, 7.0]])).item() == 0.0


def test_first_domain_has_no_penalty_then_previous_a_is_kept(tiny_world):
    ctx = tiny_context(tiny_world)
    method = OLoRA(OLoRAConfig())
    method.prepare(ctx)
    assert method.extra_loss(ctx, {}) is None
    method.after_domain(ctx)
    pairs = lora_pairs(ctx.trainable())
    r = ctx.settings.lora.r
    assert all(a.shape[0] == r for a in method.previous_a.values()) and set(method.previous_a) == set(pairs)

    later = tiny_context(tiny_world, adapter_seed=2)  # the next domain's fresh adapter
    params = later.trainable()
    expected = 0.5 * sum((method.previous_a[layer] @ params[p.a].T).abs().sum() for layer, p in lora_pairs(params).items())
    penalty = method.extra_loss(later, {})
    assert torch.allclose(penalty, expected) and penalty.requires_grad
    method.after_domain(later)
    assert all(a.shape[0] == 2 * r for a in method.previous_a.values())


def test_l2_term_and_state(tiny_world):
    ctx = tiny_context(tiny_world)
    method = OLoRA(OLoRAConfig(lambda1=0.0, lambda2=0.1))
    params = ctx.trainable()
    expected = 0.1 * sum(p.norm() for p in params.values())  # Frobenius norms, not squared (the original)
    assert torch.allclose(method.extra_loss(ctx, {}), expected)
    method.after_domain(ctx)
    copy = OLoRA(method.config)
    copy.load_state_dict(method.state_dict())
    assert all(torch.equal(copy.previous_a[k], v) for k, v in method.previous_a.items())


def test_needs_a_new_adapter_per_domain(tiny_world):
    with pytest.raises(ConfigError, match="merge_per_domain"):
        OLoRA().prepare(tiny_context(tiny_world, adapter_policy="persistent"))


def test_penalty_weighs_against_the_mean_task_loss_of_a_step(tiny_world):
    """As the original: each micro-batch's loss is task + lambda1 * P and the micro-batches of a step are
    averaged, so over grad_accum micro-batches the penalty's gradient is lambda1 * grad P once."""
    ctx = tiny_context(tiny_world, grad_accum=2)
    method = OLoRA(OLoRAConfig(lambda1=0.5))
    sgd_step(ctx)
    method.after_domain(ctx)  # domain 1's A is now "previous"
    ctx.model = attach_adapter(merge_adapter(ctx.model), ctx.settings, 2)
    params = ctx.trainable()
    acc: dict = {}
    for _ in range(ctx.settings.grad_accum):
        acc = _accumulate_extra(ctx, method, {}, params, acc)
    once = torch.autograd.grad(method.extra_loss(ctx, {}), list(params.values()), allow_unused=True)
    for (name, _), grad in zip(params.items(), once, strict=True):
        if grad is not None:
            assert torch.allclose(acc[name], grad, atol=1e-7)
