"""GuardSpace: the null space and the decomposition on hand-computed numbers, the exact start, and the
null-space guarantee on the tiny model (refusal outputs unchanged, everything else free to move)."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import tiny_context

from harness.core.errors import ConfigError
from harness.training import run_block
from methods.guardspace import (
    GuardSpace,
    GuardSpaceConfig,
    damped,
    input_covariances,
    low_energy_basis,
    null_basis,
    project_rows,
    safety_irrelevant_init,
)
from methods.lora_utils import fixed_batches, lora_pairs


def test_null_basis_is_the_codes_near_zero_eigenvalues_hand_computed():
    """Eigenvalue <= max(1e-8, 1e-6 lambda_max): with lambda_max = 10 the threshold is 1e-5."""
    config = GuardSpaceConfig()
    assert (config.null_space, config.null_tolerance, config.damp) == ("tolerance", 1e-6, 0.01)
    basis = null_basis(torch.diag(torch.tensor([10.0, 5.0, 1e-6, 0.0], dtype=torch.float64)), 1e-6)
    assert torch.allclose(basis.abs() @ basis.abs().T, torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)))
    assert null_basis(torch.diag(torch.tensor([10.0, 5.0, 1e-4, 0.0], dtype=torch.float64)), 1e-6).shape == (4, 1)
    assert null_basis(torch.diag(torch.tensor([1e-3, 5e-9], dtype=torch.float64)), 1e-6).shape == (2, 1)  # the 1e-8 floor


def test_low_energy_basis_keeps_the_low_energy_directions_hand_computed():
    cov = torch.diag(torch.tensor([10.0, 5.0, 0.04, 0.01]))
    # tr = 15.05, 1% = 0.1505: ascending sums 0.01, 0.05 fit, 5.05 does not -> e4 and e3.
    basis = low_energy_basis(cov, 0.01)
    assert basis.shape == (4, 2)
    assert torch.allclose(basis.abs() @ basis.abs().T, torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0])))
    assert low_energy_basis(cov, 0.0).shape == (4, 0)


def test_damping_is_the_codes_and_doubles_until_the_inverse_is_accurate():
    # A well-conditioned C: one step, C + 0.01 * mean(diag C) I = C + 0.025 I.
    expected = torch.diag(torch.tensor([4.025, 1.025], dtype=torch.float64))
    assert torch.allclose(damped(torch.diag(torch.tensor([4.0, 1.0])), 0.01), expected)
    # A tiny starting damp on a singular C is doubled until the float32 inverse meets the code's 0.05.
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1e3
    fixed = damped(x @ x.T, 1e-12).float()
    assert float(torch.dist(fixed @ torch.linalg.inv(fixed), torch.eye(64))) < 0.05
    assert float(torch.linalg.eigvalsh(fixed.double())[0]) > 1e-12 * float(torch.diagonal(x @ x.T).mean())


def test_projected_update_leaves_outputs_on_the_harmful_activations_unchanged():
    gen = torch.Generator().manual_seed(0)
    # rank 3 in R^6
    harmful = torch.randn(6, 3, generator=gen, dtype=torch.float64) @ torch.randn(3, 40, generator=gen, dtype=torch.float64)
    others = torch.randn(6, 40, generator=gen, dtype=torch.float64)
    basis = low_energy_basis(harmful @ harmful.T, 1e-12)
    assert basis.shape == (6, 3)
    update = project_rows(torch.randn(5, 6, generator=gen, dtype=torch.float64), basis)
    assert torch.linalg.matrix_norm(update @ harmful) < 1e-10 * torch.linalg.matrix_norm(harmful)
    assert torch.linalg.matrix_norm(update @ others) > 0.1 * torch.linalg.matrix_norm(others)


def test_safety_irrelevant_init_hand_computed():
    weight, cov = torch.eye(2, dtype=torch.float64), torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    # W C = diag(4, 1): the smallest component is sigma = 1 along e2, so scale * B0 A0 = e2 e2^T.
    b0, a0 = safety_irrelevant_init(weight, cov, rank=1, scale=2.0, damp=1e-12)
    assert torch.allclose(2.0 * b0 @ a0, torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(b0.abs(), torch.tensor([[0.0], [0.5**0.5]], dtype=torch.float64), atol=1e-9)
    # All components together give back W (W C C^{-1} = W).
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 30, generator=gen, dtype=torch.float64)
    b, a = safety_irrelevant_init(w, x @ x.T, rank=4, scale=0.5, damp=1e-12)
    assert torch.allclose(0.5 * b @ a, w, atol=1e-8)


def logits_on(ctx, examples):
    batch = next(fixed_batches(ctx.tokenizer, examples, len(examples), ctx.settings.max_seq_len))
    with torch.no_grad():
        out = ctx.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return out[batch["attention_mask"].bool()]


def test_training_under_the_projector_keeps_the_harmful_outputs_and_changes_the_others(tiny_world):
    """One harmful calibration example gives fewer tokens than d_in: an exact null space in every layer.
    Every layer's inputs on it are then unchanged, so the whole model's logits on it are too."""
    ctx = tiny_context(tiny_world)
    harmful = list(ctx.calibration.harmful[:1])
    domain = ctx.domain_examples[:4]
    before_harmful, before_domain = logits_on(ctx, harmful), logits_on(ctx, domain)
    method = GuardSpace(GuardSpaceConfig(calibration_size=1))
    method.before_domain(ctx)
    assert all(0 < g.basis.shape[1] < g.basis.shape[0] for g in method.guards.values())
    start = logits_on(ctx, harmful)
    assert torch.allclose(start, before_harmful, atol=1e-4)  # W' + scale * B0 A0 = W: the same model
    run_block(ctx, method, ctx.domain_examples, 3, "guardspace")
    change_harmful = (logits_on(ctx, harmful) - before_harmful).norm() / before_harmful.norm()
    change_domain = (logits_on(ctx, domain) - before_domain).norm() / before_domain.norm()
    assert change_harmful < 1e-5 and change_domain > 1e-3, (change_harmful, change_domain)
    method.after_domain(ctx)
    report = method.domain_report(ctx)["guardspace"]
    assert max(report["harmful_output_drift"].values()) < 1e-4
    assert set(report["null_dim"]) == set(lora_pairs(ctx.trainable()))


def test_init_and_report_on_the_calibration_set(tiny_world):
    ctx = tiny_context(tiny_world)
    pairs = lora_pairs(ctx.trainable())
    covs = input_covariances(ctx.model, ctx.tokenizer, list(ctx.calibration.harmful[:16]), list(pairs), "prompt", 8,
                             ctx.settings.max_seq_len)
    method = GuardSpace(GuardSpaceConfig(calibration_size=16, tokens="prompt"))
    method.before_domain(ctx)
    params = ctx.trainable()
    for layer, pair in pairs.items():
        guard = method.guards[layer]
        assert torch.allclose(guard.cov, covs[layer].cpu(), rtol=1e-5)  # C = X X^T of the prompt tokens
        # A starts in the null space: its rows have no component outside span(N).
        a = params[pair.a].detach()
        assert torch.allclose(project_rows(a, guard.basis), a, atol=1e-5 * float(a.abs().max()))
        assert float(params[pair.b].detach().abs().sum()) > 0  # B0 = U_r sqrt(S_r / scale), not zero
    with pytest.raises(ConfigError, match="merge_per_domain"):
        GuardSpace().prepare(tiny_context(tiny_world, adapter_policy="persistent"))
