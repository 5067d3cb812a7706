"""EMA: an exponential moving average of the adapter's parameters, kept beside the trained ones."""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from methods.base import Method, MethodConfig
from methods.registry import register


class EMAConfig(MethodConfig):
    decay: float = Field(0.99, ge=0, lt=1, description="momentum eta in theta_ema <- eta * theta_ema + (1 - eta) * theta")


def ema_step(shadow: dict[str, torch.Tensor], current: dict[str, torch.Tensor], decay: float) -> dict[str, torch.Tensor]:
    """theta_ema <- eta * theta_ema + (1 - eta) * theta, per tensor."""
    return {name: decay * shadow[name] + (1.0 - decay) * current[name] for name in shadow}


@register
class EMA(Method):
    """EMA in parameter space (Kim et al. 2025, arXiv 2508.12531): train as usual and keep
    theta_ema_t = eta * theta_ema_{t-1} + (1 - eta) * theta_t after every optimizer step, starting
    from theta_ema_0 = theta_0 (the model entering the domain); the domain's result is theta_ema, not
    theta_T (eta = 0.99). The average stays on a smooth path near the safe starting point: after T
    steps theta_0 still carries weight eta^T.

    The average is over the trainable LoRA tensors A and B (what any parameter EMA of a LoRA model
    averages), so the merged change is B_ema A_ema, not the average of the B_t A_t. The trained
    parameters themselves are untouched until the domain ends (the optimizer never sees the
    average); ``edit_weights`` then writes theta_ema into the adapter before it is merged. Under
    ``persistent`` the next domain's average starts from that written average.
    """

    name = "ema"
    relative_cost = 1.1
    Config = EMAConfig

    def __init__(self, config: EMAConfig | None = None) -> None:
        super().__init__(config)
        self.shadow: dict[str, torch.Tensor] = {}
        self.live: dict[str, torch.Tensor] = {}
        self.steps = 0

    def before_domain(self, ctx) -> None:
        start = {name: p.detach().clone() for name, p in ctx.trainable().items()}
        self.live, self.shadow, self.steps = start, {n: t.clone() for n, t in start.items()}, 0

    def transform_update(self, ctx, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The loop writes old + update into the parameters; the same sum tracks them here exactly.
        self.live = {name: value + update[name] for name, value in self.live.items()}
        self.shadow = ema_step(self.shadow, self.live, self.config.decay)
        self.steps += 1
        return update

    def edit_weights(self, ctx) -> dict[str, torch.Tensor] | None:
        return dict(self.shadow) or None

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"ema": {"decay": self.config.decay, "steps": self.steps,
                        "start_weight": self.config.decay ** self.steps}}
