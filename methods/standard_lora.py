"""Standard LoRA: sequential LoRA fine-tuning with no safety constraint (the erosion baseline)."""
from __future__ import annotations

from methods.base import Method
from methods.registry import register


@register
class StandardLoRA(Method):
    """Standard LoRA: minimise the task loss L_task(theta) of each domain in turn with a LoRA adapter
    (W = W_0 + (alpha/r) B A) and nothing else; every hook keeps its default."""

    name = "standard_lora"
