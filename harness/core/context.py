"""What a method's hook may look at: the model, tokenizer, settings, calibration data and where the
loop stands. The loop (``harness/training.py``) owns it and updates ``step``/``domain`` as it goes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.core.batching import BatchStream
from harness.core.data import Example
from harness.core.safety_data import CalibrationSet
from harness.core.settings import TrainSettings


@dataclass
class TrainContext:
    """What a hook may look at. The loop updates ``step``/``domain`` fields as it goes."""

    model: torch.nn.Module
    tokenizer: Any
    settings: TrainSettings
    calibration: CalibrationSet
    seed: int
    checkpoints: dict[str, Path] = field(default_factory=dict)
    domains: list[str] = field(default_factory=list)
    domain: str | None = None
    domain_index: int = -1
    domain_examples: list[Example] = field(default_factory=list)
    block: str = "domain"
    step: int = 0
    total_steps: int = 0
    refusal_rate: Callable[[list[str]], float] | None = None
    # (prompt, response) pairs -> the run's harm-classifier verdicts ("compliance" = harmful); None
    # when the run judges by refusal phrases only (set by the runner, for judge-based safety critics).
    harm_verdicts: Callable[[list[tuple[str, str]]], list[str]] | None = None
    probe_prompts: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def batches(self, examples: list[Example], batch_size: int | None = None, seed_offset: int = 0) -> BatchStream:
        """A seeded batch stream over any examples (e.g. the safety calibration set)."""
        return BatchStream(self.tokenizer, examples, batch_size or self.settings.batch_size,
                           self.settings.max_seq_len, self.seed * 1000 + seed_offset)

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def log_event(self, event: dict[str, Any]) -> None:
        self.events.append({"domain": self.domain, "step": self.step, **event})
