"""Vaccine: perturbations of size rho along the attention-output gradient, the alignment stage as a
``before_sequence`` block of the one loop, and the perturbation inside the loop's forward pass."""
from __future__ import annotations

import torch
from peft import PeftModel
from test_methods_support import tiny_context

from harness.core.adapters import attach_adapter
from harness.core.losses import lm_loss
from harness.core.models import load_model
from harness.training import block_settings, run_block, train_before_sequence
from methods.lora_utils import fixed_batches
from methods.vaccine import ALIGNMENT, Vaccine, VaccineConfig, attention_modules, attention_perturbations, perturbed

SMALL = dict(examples=8, epochs=1, batch_size=4)  # 2 alignment steps


class RecordingVaccine(Vaccine):
    """Vaccine that keeps the task gradients the loop hands to transform_gradients (a test probe)."""

    def transform_gradients(self, ctx, grads):
        self.seen = {n: g.detach().clone() for n, g in grads.items()}
        return grads


def test_perturbations_have_total_norm_rho_along_the_attention_output_gradient(tiny_world):
    ctx = tiny_context(tiny_world)
    modules = attention_modules(ctx.model)
    assert len(modules) == 2 and all(type(m).__name__ == "LlamaAttention" for m in modules)  # one per decoder layer
    batch = next(fixed_batches(ctx.tokenizer, list(ctx.calibration.harmful[:2]), 2, 64))
    epsilons = attention_perturbations(ctx.model, modules, batch, rho=2.0)
    assert abs(torch.sqrt(sum(e.pow(2).sum() for e in epsilons)).item() - 2.0) < 1e-5
    assert all(p.grad is None for p in ctx.model.parameters())  # pass 1 leaves parameter gradients alone
    clean = lm_loss(ctx.model, batch).item()
    with perturbed(modules, epsilons):
        worse = lm_loss(ctx.model, batch).item()
    assert worse > clean  # a step along the gradient raises the loss
    assert lm_loss(ctx.model, batch).item() == clean  # hooks removed


def test_alignment_block_is_the_originals_operating_point(tiny_world):
    ctx = tiny_context(tiny_world)
    block = Vaccine().before_sequence(ctx)
    assert block.name == ALIGNMENT and len(block.examples) == 2000 and block.steps == 20_000  # 50 epochs x 2,000 / 5
    assert all(e in ctx.calibration.harmful for e in block.examples)  # safe answers to risky prompts only
    lora, settings = block.settings.lora, block.settings
    assert (lora.r, lora.alpha, lora.dropout, len(lora.target_modules)) == (8, 4.0, 0.1, 7)
    assert (settings.lr, settings.weight_decay, settings.warmup_ratio, settings.schedule) == (1e-3, 0.1, 0.1, "cosine")
    assert (settings.batch_size, settings.grad_accum, settings.max_steps) == (5, 1, None)


def test_loop_steps_on_the_gradient_of_the_perturbed_pass(tiny_world):
    """The defining rule: the optimizer sees d L(theta; e + epsilon) / d theta, not the clean gradient."""
    ctx = tiny_context(tiny_world)
    method = RecordingVaccine(VaccineConfig(**SMALL))
    block = method.before_sequence(ctx)
    with block_settings(ctx, block.settings):
        ctx.block = ALIGNMENT
        batch = next(ctx.batches(block.examples, seed_offset=ctx.domain_index + 1 + 100))  # the loop's first batch
        params = ctx.trainable()  # the tiny adapter and model have no dropout: passes are deterministic
        modules = attention_modules(ctx.model)
        with perturbed(modules, attention_perturbations(ctx.model, modules, batch, method.config.rho)):
            expected = torch.autograd.grad(lm_loss(ctx.model, batch), list(params.values()))
        clean = torch.autograd.grad(lm_loss(ctx.model, batch), list(params.values()))
        run_block(ctx, method, block.examples, 1, "test")
    seen = [method.seen[n] for n in params]
    assert all(torch.allclose(s, e, atol=1e-6) for s, e in zip(seen, expected, strict=True))
    assert not all(torch.allclose(s, c, atol=1e-6) for s, c in zip(seen, clean, strict=True))


def test_domains_train_without_perturbation(tiny_world):
    ctx = tiny_context(tiny_world)
    batch = next(ctx.batches(ctx.domain_examples))
    with Vaccine().forward_context(ctx, batch):
        assert all(not m._forward_hooks for m in attention_modules(ctx.model))


def test_before_sequence_trains_and_merges_an_adapter_of_its_own(tiny_world):
    ctx = tiny_context(tiny_world)
    ctx.model = load_model(tiny_world.chat)  # the runner calls it on the plain aligned model
    before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    stats = train_before_sequence(ctx, Vaccine(VaccineConfig(**SMALL)), seed=0)
    assert stats[ALIGNMENT]["steps"] == 2 and stats[ALIGNMENT]["n_examples"] == 8
    assert not isinstance(ctx.model, PeftModel) and ctx.settings.lora.r == 4  # the suite's settings are back
    after = dict(ctx.model.named_parameters())
    assert set(after) == set(before)
    changed = {n.split(".")[-2] for n in before if not torch.equal(before[n], after[n])}
    assert changed == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    # The next domain's adapter is the suite's shape again.
    assert attach_adapter(ctx.model, ctx.settings, 1).peft_config["default"].r == 4
