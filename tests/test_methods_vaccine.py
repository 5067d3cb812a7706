"""Vaccine: layer perturbations of size rho along the hidden-state gradient, and the merged alignment."""
from __future__ import annotations

import torch
from peft import PeftModel

from harness.core.models import load_model
from harness.core.losses import lm_loss
from methods.lora_utils import fixed_batches
from methods.vaccine import Vaccine, VaccineConfig, decoder_layers, layer_perturbations, perturbed
from test_methods_support import tiny_context


def test_perturbations_have_total_norm_rho_along_the_gradient(tiny_world):
    ctx = tiny_context(tiny_world)
    layers = decoder_layers(ctx.model)
    batch = next(fixed_batches(ctx.tokenizer, list(ctx.calibration.harmful[:2]), 2, 64))
    epsilons = layer_perturbations(ctx.model, layers, batch, rho=2.0)
    assert len(epsilons) == len(layers) == 2
    assert abs(torch.sqrt(sum(e.pow(2).sum() for e in epsilons)).item() - 2.0) < 1e-5
    assert all(p.grad is None for p in ctx.model.parameters())  # pass 1 leaves parameter gradients alone
    clean = lm_loss(ctx.model, batch).item()
    with perturbed(layers, epsilons):
        worse = lm_loss(ctx.model, batch).item()
    assert worse > clean  # a step along the gradient raises the loss
    assert lm_loss(ctx.model, batch).item() == clean  # hooks removed


def test_prepare_merges_the_alignment_adapter_into_ctx_model(tiny_world):
    ctx = tiny_context(tiny_world)
    ctx.model = load_model(tiny_world.chat)  # prepare runs on the plain aligned model
    before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    method = Vaccine(VaccineConfig(steps=2, examples=8))
    method.prepare(ctx)
    assert not isinstance(ctx.model, PeftModel)
    after = dict(ctx.model.named_parameters())
    assert set(after) == set(before)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed and all(any(t in n for t in ("q_proj", "k_proj", "v_proj", "o_proj")) for n in changed)
    assert method.state_dict()["alignment"]["steps"] == 2
