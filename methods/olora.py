"""O-LoRA: orthogonal subspaces for sequential LoRA adapters."""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from harness.core.errors import ConfigError
from methods.base import Method, MethodConfig
from methods.lora_utils import lora_pairs
from methods.registry import register


class OLoRAConfig(MethodConfig):
    lambda1: float = Field(0.5, ge=0, description="weight of the orthogonality penalty sum |A_prev A_new^T|")
    lambda2: float = Field(0.0, ge=0, description="weight of the L2 penalty sum ||param||_2 over the new adapter's A and B")


def orthogonality_penalty(previous: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Element-wise L1 norm of A_prev A_new^T: previous (k*r x in) stacked earlier A's, new (r x in)."""
    return (previous @ new.T).abs().sum()


@register
class OLoRA(Method):
    """O-LoRA: each domain trains a new LoRA adapter while earlier ones stay frozen, minimising
    L_task + lambda1 * sum_layers sum_{t'<t} |A_t' A_t^T| (element-wise L1) + lambda2 * sum ||P||_2 (P the
    new adapter's A and B matrices, Frobenius norms not squared, as cmnfriend/O-LoRA),
    so the new adapter's row space is pushed orthogonal to the earlier domains' (lambda1 = 0.5,
    lambda2 = 0). Earlier adapters are frozen by construction under merge_per_domain (merged into the
    weights); their lora_A matrices are kept per layer in the method state. As in the original trainer,
    every micro-batch's loss is L_task(micro-batch) + the penalties, and the loop averages micro-batches
    (task and penalty alike divided by grad_accum), so lambda1 weighs the penalty against the mean
    task loss whatever grad_accum is.
    """

    name = "olora"
    Config = OLoRAConfig

    def __init__(self, config: OLoRAConfig | None = None) -> None:
        super().__init__(config)
        self.previous_a: dict[str, torch.Tensor] = {}

    def prepare(self, ctx) -> None:
        if ctx.settings.adapter_policy != "merge_per_domain":
            raise ConfigError("olora needs training.adapter_policy: merge_per_domain (a new adapter per domain). "
                              "Fix: remove the adapter_policy override for this method.")

    def extra_loss(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        cfg = self.config
        params = ctx.trainable()
        pairs = lora_pairs(params)
        terms = []
        if cfg.lambda1 and self.previous_a:
            terms += [cfg.lambda1 * orthogonality_penalty(self.previous_a[layer].to(params[p.a]), params[p.a])
                      for layer, p in pairs.items() if layer in self.previous_a]
        if cfg.lambda2:
            terms += [cfg.lambda2 * (params[p.a].norm() + params[p.b].norm()) for p in pairs.values()]
        return torch.stack(terms).sum() if terms else None

    def after_domain(self, ctx) -> None:
        params = ctx.trainable()
        for layer, pair in lora_pairs(params).items():
            a = params[pair.a].detach().clone()
            kept = self.previous_a.get(layer)
            self.previous_a[layer] = a if kept is None else torch.cat([kept.to(a), a])
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"previous_a": {layer: a.cpu() for layer, a in self.previous_a.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous_a = dict(state["previous_a"])
