"""Vaccine + LoRA: perturbation-aware safety alignment before the sequence, then plain LoRA per domain."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch
from pydantic import Field

# A module import, not `from ... import`: harness.training imports the methods package (a cycle).
from harness.core.adapters import attach_adapter, merge_adapter
from harness.core.losses import lm_loss
from methods.registry import register
from methods.base import Method, MethodConfig
from methods.lora_utils import safety_replay

# Batch-stream seed offset of the alignment stage (domains use 1.. and 101..).
_STREAM_OFFSET = 7001


class VaccineConfig(MethodConfig):
    rho: float = Field(2.0, ge=0, description="perturbation size: epsilon_l = rho * g_l / ||g||")
    steps: int = Field(200, ge=0, description="optimizer steps of the perturbation-aware alignment adapter")
    lr: float | None = Field(None, gt=0, description="alignment learning rate (None: training.lr)")
    examples: int = Field(1000, gt=0, description="calibration examples the alignment stage trains on")
    harmful_share: float = Field(0.5, ge=0, le=1, description="share of harmful->refusal (rest benign->helpful)")


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks (the first ModuleList named ``layers``, through any PEFT wrapping)."""
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList):
            return list(module)
    raise ValueError("Vaccine: no decoder layer list (a ModuleList named 'layers') in this model")


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def layer_perturbations(model: torch.nn.Module, layers: Sequence[torch.nn.Module], batch: dict[str, torch.Tensor],
                        rho: float) -> list[torch.Tensor]:
    """Pass 1: epsilon_l = rho * g_l / ||g|| with g_l = d loss / d (output hidden states of layer l) and
    the norm taken over all layers together. Parameter gradients are not touched."""
    outputs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda m, i, out: outputs.append(_hidden(out))) for layer in layers]
    try:
        loss = lm_loss(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    grads = torch.autograd.grad(loss, outputs, allow_unused=True)
    grads = [torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads)]
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return [rho * g / norm.clamp(min=1e-12) for g in grads]


@contextmanager
def perturbed(layers: Sequence[torch.nn.Module], perturbations: Sequence[torch.Tensor]) -> Iterator[None]:
    """Pass 2: every layer's output hidden states shifted by its epsilon."""
    handles = [layer.register_forward_hook(lambda m, i, out, eps=eps: _with_hidden(out, _hidden(out) + eps))
               for layer, eps in zip(layers, perturbations)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@register
class Vaccine(Method):
    """Vaccine + LoRA: before the sequence, align with a LoRA adapter on calibration harmful->refusal and
    benign->helpful pairs by minimising max_{||epsilon|| <= rho} L(theta; e_l + epsilon_l): pass 1 finds
    g_l = dL/de_l at every decoder layer's output e_l and sets epsilon_l = rho * g_l / ||g|| (norm over
    all layers), pass 2 adds epsilon_l to those outputs and the optimizer steps on pass-2 gradients
    (rho = 2). The adapter is merged into the weights; each domain then trains a fresh plain LoRA.
    """

    name = "vaccine"
    relative_cost = 1.4
    Config = VaccineConfig

    def __init__(self, config: VaccineConfig | None = None) -> None:
        super().__init__(config)
        self.alignment: dict[str, float] = {}

    def prepare(self, ctx) -> None:
        cfg, settings = self.config, ctx.settings
        model = attach_adapter(ctx.model, settings, ctx.seed * 100)  # domains use seed * 100 + k, k >= 1
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr or settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
        stream = ctx.batches(safety_replay(ctx.calibration, cfg.examples, cfg.harmful_share, ctx.seed), seed_offset=_STREAM_OFFSET)
        layers = decoder_layers(model)
        device = next(model.parameters()).device
        losses = []
        model.train()
        for _ in range(cfg.steps):
            batch = {k: v.to(device) for k, v in next(stream).items()}
            epsilons = layer_perturbations(model, layers, batch, cfg.rho)
            with perturbed(layers, epsilons):
                loss = lm_loss(model, batch)
            loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        model.eval()
        ctx.model = merge_adapter(model)  # the runner trains (and checkpoints) ctx.model after prepare
        self.alignment = {"steps": cfg.steps, "loss_first": losses[0] if losses else float("nan"),
                          "loss_last": losses[-1] if losses else float("nan")}

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"vaccine_alignment": self.alignment}

    def state_dict(self) -> dict[str, Any]:
        return {"alignment": self.alignment}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alignment = dict(state["alignment"])
