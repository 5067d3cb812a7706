"""Vaccine + LoRA: perturbation-aware safety alignment before the sequence, then plain LoRA per domain."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from pydantic import Field

from harness.core.losses import lm_loss
from harness.core.settings import LORA_TARGETS, LoraSettings, TrainSettings
from methods.base import Method, MethodConfig, TrainingBlock
from methods.lora_utils import safety_replay
from methods.registry import register

ALIGNMENT = "vaccine_alignment"


class VaccineConfig(MethodConfig):
    """Defaults: git-disl/Vaccine's alignment run (script/alignment/Vaccine.sh, train.py)."""

    rho: float = Field(2.0, ge=0, description="perturbation size: epsilon_l = rho * g_l / ||g|| "
                       "(norm over all attention outputs)")
    examples: int = Field(2000, gt=0, description="calibration examples the alignment stage trains on "
                          "(original: 2,000 BeaverTails safe pairs)")
    harmful_share: float = Field(1.0, ge=0, le=1, description="share of harmful->refusal among them (rest benign->helpful)")
    epochs: float = Field(50.0, gt=0, description="alignment epochs over those examples")
    batch_size: int = Field(5, gt=0, description="alignment batch size (one micro-batch per step)")
    lr: float = Field(1e-3, gt=0, description="alignment learning rate (cosine schedule)")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="alignment warmup share")
    weight_decay: float = Field(0.1, ge=0, description="alignment AdamW weight decay")
    lora_r: int = Field(8, gt=0, description="rank of the alignment adapter")
    lora_alpha: float = Field(4.0, gt=0, description="alpha of the alignment adapter")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="dropout of the alignment adapter")
    lora_targets: list[str] = Field(default_factory=lambda: list(LORA_TARGETS), description="modules of the alignment adapter")


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every decoder layer's self-attention block (``*.self_attn``, Llama/Mistral naming, through
    any PEFT wrapping): Vaccine perturbs their outputs, the attention output before the residual add."""
    found = [module for name, module in model.named_modules() if name.endswith("self_attn")]
    if not found:
        raise ValueError("Vaccine: no attention blocks (modules named '*.self_attn') in this model")
    return found


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def attention_perturbations(model: torch.nn.Module, modules: Sequence[torch.nn.Module], batch: dict[str, torch.Tensor],
                            rho: float) -> list[torch.Tensor]:
    """Pass 1: epsilon_l = rho * g_l / ||g|| with g_l = d loss / d (output of attention block l) and
    the norm taken over all blocks together. Parameter gradients are not touched."""
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, i, out: outputs.append(_hidden(out))) for m in modules]
    try:
        loss = lm_loss(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    grads = [torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads, strict=True)]
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return [rho * g / norm.clamp(min=1e-12) for g in grads]


@contextmanager
def perturbed(modules: Sequence[torch.nn.Module], perturbations: Sequence[torch.Tensor]) -> Iterator[None]:
    """Pass 2: every attention block's output shifted by its (constant) epsilon."""
    handles = [m.register_forward_hook(lambda mod, i, out, eps=eps: _with_hidden(out, _hidden(out) + eps))
               for m, eps in zip(modules, perturbations, strict=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@register
class Vaccine(Method):
    """Vaccine + LoRA: before the sequence, an alignment stage on calibration pairs (a LoRA adapter of
    its own, r = 8, alpha = 4, all q/k/v/o/gate/up/down) minimises max_{||epsilon|| <= rho} L(theta; e + epsilon)
    over the attention outputs e_l: pass 1 finds g_l = dL/de_l at every attention block and sets
    epsilon_l = rho * g_l / ||g|| (norm over all blocks, rho = 2), pass 2 adds epsilon_l to those outputs
    and the optimizer steps on pass-2 gradients (50 epochs over 2,000 examples, batch 5, AdamW 1e-3,
    weight decay 0.1, cosine with 10% warmup: git-disl/Vaccine). The stage is a ``before_sequence``
    block the loop runs, the perturbation its ``forward_context``; the adapter is merged into the
    weights, and each domain then trains a fresh plain LoRA.
    """

    name = "vaccine"
    # Estimate, not measured: 200 alignment steps of batch 8 (3,200 example passes with both passes)
    # measured 0.4 runs; the micro preset's 1,000 steps are 16,000 passes, about 2 runs more.
    relative_cost = 3.0
    reads_calibration = True
    Config = VaccineConfig

    def before_sequence(self, ctx) -> TrainingBlock:
        cfg = self.config
        examples = safety_replay(ctx.calibration, cfg.examples, cfg.harmful_share, ctx.seed)
        steps = math.ceil(cfg.epochs * len(examples) / cfg.batch_size)
        return TrainingBlock(ALIGNMENT, examples, steps, settings=self.alignment_settings(ctx.settings))

    def alignment_settings(self, suite: TrainSettings) -> TrainSettings:
        """The suite's training settings with the alignment stage's optimizer, schedule and adapter."""
        cfg = self.config
        lora = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=cfg.lora_targets)
        return suite.model_copy(update={
            "lora": lora, "lr": cfg.lr, "schedule": "cosine", "warmup_ratio": cfg.warmup_ratio, "weight_decay": cfg.weight_decay,
            "batch_size": cfg.batch_size, "grad_accum": 1, "max_steps": None, "adapter_policy": "merge_per_domain"})

    def forward_context(self, ctx, batch: dict[str, torch.Tensor]) -> AbstractContextManager:
        """In the alignment block: pass 1 now, and the perturbation around the loop's pass 2."""
        if ctx.block != ALIGNMENT or self.config.rho == 0:
            return nullcontext()
        modules = attention_modules(ctx.model)
        return perturbed(modules, attention_perturbations(ctx.model, modules, batch, self.config.rho))
