"""Training and evaluation settings (typed, validated, frozen): what one domain's LoRA fine-tuning
and one evaluation point use, and the sane upper bounds of every size (docs/reliability.md). The
suite file (``harness/orchestration/config.py``) holds them; the training loop, methods and
benchmarks read them, so they live in the foundation."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Sane upper bounds (docs/reliability.md): a value past one is a typo that would otherwise surface
# hours later as an out-of-memory error, an overflow or a suite that never ends.
MAX_SEED = 2**31 - 1  # seeds are multiplied (seed * 1000 + offset) and must stay within torch's range
MAX_LORA_R = 1024
MAX_BATCH = 4096
MAX_STEPS = 10_000_000
MAX_EXAMPLES = 10_000_000
MAX_EPOCHS = 1000
MAX_SEQ_LEN = 32_768
MAX_NEW_TOKENS = 8192
MAX_CAP = 10_000_000

# Integers must be written as integers: `true`, "3" or 3.0 are refused, not read as 1, 3, 3.
Int = Annotated[int, Field(strict=True)]
# Numbers must be numbers (an integer is fine), never a string or a boolean; NaN and inf are
# refused by `allow_inf_nan=False` on every model.
Real = Annotated[float, Field(strict=True)]
Beta = Annotated[float, Field(strict=True, ge=0.0, lt=1.0)]
Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]
Cap = Annotated[int, Field(strict=True, gt=0, le=MAX_CAP)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoraSettings(Strict):
    """PEFT LoraConfig fields we expose (the paper: r=16, alpha=32 on q/k/v/o)."""

    r: Int = Field(16, gt=0, le=MAX_LORA_R)
    alpha: Real = Field(32.0, gt=0, le=10_000)
    dropout: Real = Field(0.0, ge=0.0, lt=1.0)
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
    lr: Real = Field(2e-4, gt=0, le=1.0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    weight_decay: Real = Field(0.01, ge=0, le=10.0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: Real = Field(0.0, ge=0, lt=1)
    batch_size: Int = Field(8, gt=0, le=MAX_BATCH)
    grad_accum: Int = Field(2, gt=0, le=MAX_BATCH)
    examples_per_domain: Int = Field(5000, gt=0, le=MAX_EXAMPLES)
    epochs: Real = Field(3.0, gt=0, le=MAX_EPOCHS)
    max_steps: Int | None = Field(None, gt=0, le=MAX_STEPS, description="cap on optimizer steps per domain (micro scale)")
    max_seq_len: Int = Field(512, ge=16, le=MAX_SEQ_LEN)
    grad_clip: Real | None = Field(1.0, gt=0, le=1e6)
    adapter_policy: Literal["merge_per_domain", "persistent"] = "merge_per_domain"


class EvalSettings(Strict):
    """Evaluation sizes: micro scale evaluates fixed subsets, paper scale full sets (cap None)."""

    caps: dict[str, Cap | None] = Field(default_factory=dict)
    max_new_tokens: Int = Field(512, gt=0, le=MAX_NEW_TOKENS)
    batch_size: Int = Field(16, gt=0, le=MAX_BATCH)
    final_only: list[str] = Field(default_factory=list, description=(
        "benchmarks evaluated only for the starting model (step 0) and after the last domain, not between: "
        "ones the composites do not use, where the steps between are not worth their time "
        "(names the suite does not run are ignored)"))
    judge: str = Field("refusal", description="judge of responses to harmful requests: refusal, harmbench-cls, llama-guard")
    judge_model: str | None = Field(None, description="local folder or hub id of a classifier judge's weights "
                                                      "(default: the judge's own)")
