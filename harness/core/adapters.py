"""Attaching a fresh LoRA adapter (B = 0) from the settings, and merging it into the weights."""
from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from harness.core.settings import TrainSettings


def attach_adapter(model: torch.nn.Module, settings: TrainSettings, seed: int) -> PeftModel:
    torch.manual_seed(seed)
    config = LoraConfig(
        r=settings.lora.r, lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout,
        target_modules=list(settings.lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def merge_adapter(model: PeftModel) -> torch.nn.Module:
    return model.merge_and_unload()
