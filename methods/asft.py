"""AsFT: anchor LoRA updates in the narrow safety basin along the alignment direction."""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from methods.base import Method, MethodConfig
from methods.lora_utils import lora_pairs
from methods.registry import register
from methods.safe_lora import open_weights, weight_key


class AsFTConfig(MethodConfig):
    lam: float = Field(1.0, ge=0, description="lambda in lambda * sum_l ||(I - C_l) Delta W_l||_F^2 (authors' scripts: 1)")
    lora_scale: bool = Field(True, description="Delta W = (alpha / r) B A as in the paper's equation "
                             "(false: B A, as in the authors' code)")


def off_basin_norm_sq(v: torch.Tensor, b: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """||(I - C) (scale B A)||_F^2 with C = V V^T / ||V||_F, from r x r matrices only.

    (I - C) B A = B_perp A with B_perp = B - V (V^T B) / ||V||_F (C never formed, d_out x r), and
    ||B_perp A||_F^2 = sum((B_perp^T B_perp) * (A A^T)). Differentiable in A and B."""
    b_perp = b - v @ (v.T @ b) / torch.linalg.matrix_norm(v)
    return scale**2 * ((b_perp.T @ b_perp) * (a @ a.T)).sum()


@register
class AsFT(Method):
    """AsFT (Yang et al., AAAI 2026, arXiv 2506.08473): minimise
    L_task + lambda * sum_l ||(I - C_l) Delta W_l||_F^2 with Delta W_l = (alpha / r) B_l A_l and the
    alignment projector C_l = V_l V_l^T / ||V_l||_F, V_l = W_aligned,l - W_base,l (lambda = 1): the
    update may move freely along the alignment direction and is pulled back from the directions
    orthogonal to it, where the safety basin is narrow.

    V_l comes from the pre-alignment base and the aligned checkpoints (``ctx.checkpoints``), read
    once, one target weight at a time, and kept for the whole sequence: the basin is the one the
    original alignment defined, so every domain is anchored to it. The penalty is computed from
    r x r matrices (C is never formed). ``lora_scale: false`` drops alpha / r, as the authors' code
    does. The term goes through ``extra_loss``, so it is added per micro-batch divided by grad_accum
    (one full penalty per optimizer step; the authors use grad_accum 1), is clipped with the task
    gradient and is not projected by anything.
    """

    name = "asft"
    relative_cost = 1.2
    Config = AsFTConfig

    def __init__(self, config: AsFTConfig | None = None) -> None:
        super().__init__(config)
        self.alignment: dict[str, torch.Tensor] = {}
        self.report: dict[str, Any] = {}

    def before_domain(self, ctx) -> None:
        pairs = lora_pairs(ctx.trainable())
        missing = [layer for layer in pairs if layer not in self.alignment]
        if missing:
            self.alignment.update(self.alignment_directions(ctx, missing))
        device = next(iter(ctx.trainable().values())).device
        self.alignment = {layer: v.to(device) for layer, v in self.alignment.items()}

    @staticmethod
    def alignment_directions(ctx, layers: list[str]) -> dict[str, torch.Tensor]:
        """V_l = W_aligned - W_base of each LoRA-wrapped weight, in the adapter's dtype."""
        params = ctx.trainable()
        dtype = next(iter(params.values())).dtype
        found = {}
        with open_weights(ctx.checkpoints["aligned"]) as aligned, open_weights(ctx.checkpoints["base"]) as base:
            for layer in layers:
                key = weight_key(layer, aligned)
                found[layer] = (aligned[key].get_tensor(key).float() - base[key].get_tensor(key).float()).to(dtype)
        return found

    def penalty(self, ctx) -> tuple[torch.Tensor, dict[str, float]]:
        """lambda * sum_l ||(I - C_l) Delta W_l||_F^2 and each layer's share ||(I - C) dW|| / ||dW||."""
        params = ctx.trainable()
        total, shares = None, {}
        for layer, pair in lora_pairs(params).items():
            module = ctx.model.get_submodule(layer)
            scale = float(module.scaling[pair.adapter]) if self.config.lora_scale else 1.0
            b, a = params[pair.b].float(), params[pair.a].float()
            term = off_basin_norm_sq(self.alignment[layer].float(), b, a, scale)
            total = term if total is None else total + term
            whole = scale**2 * ((b.T @ b) * (a @ a.T)).sum()
            if whole > 0:
                shares[layer] = float((term.detach() / whole.detach()).sqrt())
        return self.config.lam * total, shares

    def extra_loss(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.config.lam == 0:
            return None
        loss, _ = self.penalty(ctx)
        return loss

    def after_domain(self, ctx) -> None:
        with torch.no_grad():
            loss, shares = self.penalty(ctx)
        self.report = {"penalty": float(loss), "off_basin_share": shares}
        return None

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"asft": self.report}
