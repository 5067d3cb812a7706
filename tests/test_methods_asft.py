"""AsFT: the off-basin penalty on hand-computed numbers, its gradient, and V from the checkpoints."""
from __future__ import annotations

import torch
from test_methods_support import sgd_step, tiny_context

from methods.asft import AsFT, AsFTConfig, off_basin_norm_sq
from methods.lora_utils import lora_pairs
from methods.safe_lora import open_weights, weight_key


def explicit_penalty(v: torch.Tensor, b: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    c = v @ v.T / torch.linalg.matrix_norm(v)  # affordable only for small test tensors
    return torch.linalg.matrix_norm((torch.eye(v.shape[0], dtype=v.dtype) - c) @ (scale * b @ a)) ** 2


def test_penalty_hand_computed():
    v = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # ||V||_F = 1: C = diag(1, 0), a true projector
    a = torch.tensor([[1.0, 2.0]])
    inside = torch.tensor([[3.0], [0.0]])   # B A along the alignment direction: free
    outside = torch.tensor([[0.0], [3.0]])  # orthogonal to it: ||(3, 6)||^2 = 45, times scale^2 = 4
    assert off_basin_norm_sq(v, inside, a, 2.0).item() == 0.0
    assert off_basin_norm_sq(v, outside, a, 2.0).item() == 180.0
    # ||V||_F = 2 with V V^T = diag(4, 0): C = diag(2, 0), so (I - C) maps (3, 0) to (-3, 0): 4 * 45 = 180.
    assert off_basin_norm_sq(2 * v, inside, a, 2.0).item() == 180.0


def test_penalty_from_small_matrices_matches_the_explicit_one_and_its_gradient():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(10, 7, generator=gen, dtype=torch.float64)
    b = torch.randn(10, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    a = torch.randn(3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    ours, theirs = off_basin_norm_sq(v, b, a, 0.5), explicit_penalty(v, b, a, 0.5)
    assert torch.allclose(ours, theirs, rtol=1e-12)
    grads_ours = torch.autograd.grad(ours, [b, a])
    grads_theirs = torch.autograd.grad(theirs, [b, a])
    assert all(torch.allclose(x, y, rtol=1e-10) for x, y in zip(grads_ours, grads_theirs, strict=True))


def test_method_penalises_the_adapter_with_v_from_base_and_aligned(tiny_world):
    ctx = tiny_context(tiny_world)
    method = AsFT(AsFTConfig(lam=0.3))
    method.before_domain(ctx)
    assert float(method.extra_loss(ctx, {}).detach()) == 0.0  # a fresh adapter (B = 0) is at the anchor
    sgd_step(ctx)
    params = ctx.trainable()
    pairs = lora_pairs(params)
    expected = 0.0
    with open_weights(ctx.checkpoints["aligned"]) as aligned, open_weights(ctx.checkpoints["base"]) as base:
        for layer, pair in pairs.items():
            key = weight_key(layer, aligned)
            v = (aligned[key].get_tensor(key) - base[key].get_tensor(key)).double()
            scale = ctx.settings.lora.alpha / ctx.settings.lora.r  # PEFT's alpha / r
            expected += float(explicit_penalty(v, params[pair.b].detach().double(), params[pair.a].detach().double(), scale))
    loss = method.extra_loss(ctx, {})
    assert loss.requires_grad and abs(float(loss) - 0.3 * expected) < 1e-5 * max(1.0, expected)
    unscaled = AsFT(AsFTConfig(lam=0.3, lora_scale=False))
    unscaled.before_domain(ctx)
    scale_squared = (ctx.settings.lora.alpha / ctx.settings.lora.r) ** 2
    assert abs(float(unscaled.extra_loss(ctx, {})) * scale_squared - float(loss)) < 1e-5 * float(loss)
    method.after_domain(ctx)
    report = method.domain_report(ctx)["asft"]
    assert abs(report["penalty"] - float(loss)) < 1e-6 * float(loss) and set(report["off_basin_share"]) == set(pairs)
    assert all(0.0 < s for s in report["off_basin_share"].values())


def test_a_gradient_step_on_the_penalty_reduces_the_off_basin_part(tiny_world):
    ctx = tiny_context(tiny_world)
    method = AsFT(AsFTConfig(lam=1.0))
    method.before_domain(ctx)
    sgd_step(ctx)
    params = ctx.trainable()
    before = float(method.extra_loss(ctx, {}))
    grads = torch.autograd.grad(method.extra_loss(ctx, {}), list(params.values()), allow_unused=True)
    with torch.no_grad():
        for p, g in zip(params.values(), grads, strict=True):
            if g is not None:
                p -= 1e-3 * g / (g.norm() + 1e-12)
    assert float(method.extra_loss(ctx, {})) < before
