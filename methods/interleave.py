"""Safety interleaving: replay safety calibration data inside every domain's training data."""
from __future__ import annotations

from pydantic import Field

from harness.core.data import Example
from methods.base import Method, MethodConfig
from methods.lora_utils import safety_replay
from methods.registry import register


class SafetyInterleavingConfig(MethodConfig):
    safety_fraction: float = Field(0.1, ge=0, lt=1, description="share of the training mixture that is safety replay")
    harmful_share: float = Field(0.5, ge=0, le=1, description="share of the replay that is harmful->refusal "
                                 "(the rest benign->helpful)")


def replay_count(n_domain: int, safety_fraction: float) -> int:
    """Safety examples to add so that they make up ``safety_fraction`` of the mixture."""
    return round(n_domain * safety_fraction / (1 - safety_fraction))


@register
class SafetyInterleaving(Method):
    """Safety interleaving: train each domain on D_t plus replayed calibration pairs making up 10% of
    the mixture, minimising L(theta; D_t u R_t) with R_t = harmful->refusal and benign->helpful pairs
    in the configured share (default half each: replaying only refusals makes the model refuse
    everything). The replay is added to the domain's examples (so steps scale with the mixture when
    training.max_steps does not cap them) and drawn afresh, seeded, for every domain.
    """

    name = "safety_interleaving"
    reads_calibration = True
    Config = SafetyInterleavingConfig

    def data_mixture(self, ctx, examples: list[Example]) -> list[Example]:
        n = replay_count(len(examples), self.config.safety_fraction)
        return list(examples) + safety_replay(ctx.calibration, n, self.config.harmful_share, ctx.seed * 1000 + ctx.domain_index)
