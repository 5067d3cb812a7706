"""An out-of-tree erosion-bench method, installed as a package and found through the entry point
group ``erosion_bench.methods`` (see pyproject.toml). Copy this folder to start your own."""
from __future__ import annotations

import torch
from pydantic import Field

from methods.base import Method, MethodConfig


class L2AnchorConfig(MethodConfig):
    weight: float = Field(0.01, ge=0, description="mu in mu/2 * ||B A||_F^2")


class L2Anchor(Method):
    """L2 anchor: minimise L_task(theta) + mu/2 * sum_layers ||B A||_F^2, pulling every layer's LoRA
    update Delta W = B A towards zero, i.e. the model towards the one that entered the domain."""

    name = "l2_anchor"  # must equal the entry point name
    Config = L2AnchorConfig

    def extra_loss(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        params = ctx.trainable()
        terms = [(params[b] @ params[a]).pow(2).sum()
                 for a in params if ".lora_A." in a
                 for b in [a.replace(".lora_A.", ".lora_B.")] if b in params]
        return self.config.weight / 2 * torch.stack(terms).sum() if terms else None
