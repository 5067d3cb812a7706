"""Training and evaluation settings (typed, validated, frozen): what one domain's LoRA fine-tuning
and one evaluation point use. The suite file (``harness/orchestration/config.py``) holds them; the
training loop, methods and benchmarks read them, so they live in the foundation."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(Strict):
    """PEFT LoraConfig fields we expose (the paper: r=16, alpha=32 on q/k/v/o)."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @field_validator("target_modules")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in LORA_TARGETS]
        if unknown or not value:
            raise ValueError(f"unknown target module(s) {unknown}; choose from {list(LORA_TARGETS)}")
        return value


class TrainSettings(Strict):
    """One domain's LoRA fine-tuning (paper: AdamW(0.9, 0.999, wd 0.01), 2e-4 cosine, 8 x 2)."""

    lora: LoraSettings = LoraSettings()
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(2, gt=0)
    examples_per_domain: int = Field(5000, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="cap on optimizer steps per domain (micro scale)")
    max_seq_len: int = Field(512, ge=16)
    grad_clip: float | None = Field(1.0, gt=0)
    adapter_policy: Literal["merge_per_domain", "persistent"] = "merge_per_domain"


class EvalSettings(Strict):
    """Evaluation sizes: micro scale evaluates fixed subsets, paper scale full sets (cap None)."""

    caps: dict[str, int | None] = Field(default_factory=dict)
    max_new_tokens: int = Field(512, gt=0)
    batch_size: int = Field(16, gt=0)
    judge: str = Field("refusal", description="judge of responses to harmful requests: refusal, harmbench-cls, llama-guard")
    judge_model: str | None = Field(None, description="local folder or hub id of a classifier judge's weights (default: the judge's own)")
