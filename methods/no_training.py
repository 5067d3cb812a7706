"""No training: the reference that learns nothing, so a method that sits at the starting point shows."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from methods.base import Method
from methods.registry import register

if TYPE_CHECKING:
    from harness.core.context import TrainContext
    from harness.core.data import Example


@register
class NoTraining(Method):
    """No training: theta_t = theta_0 for every domain t. Each domain's update is discarded,
    Delta theta = 0 (``transform_update`` returns zeros), so the merged adapter is B A = 0 and the
    model evaluated after every domain is the starting model, weight for weight.

    The loop always takes at least one optimizer step, so ``data_mixture`` keeps a single example:
    one step per domain instead of the suite's full budget, whose update is then thrown away. On the
    leaderboard it marks zero learning (learning retained 0 %) at the starting model's safety.
    """

    name = "no_training"
    relative_cost = 0.05  # estimated: one step per domain; every evaluation reuses the starting model's

    def data_mixture(self, ctx: TrainContext, examples: list[Example]) -> list[Example]:
        return examples[:1]

    def transform_update(self, ctx: TrainContext, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: torch.zeros_like(delta) for name, delta in update.items()}
