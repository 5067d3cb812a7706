"""Model loading: a local folder or a pinned hub id (``repo@revision``) into a torch model, its
tokenizer and the ChatLM wrapper; ``ModelHandle`` says where a prepared model lives. Which models
exist (the presets, and building the ones the harness owns) is orchestration's business
(``harness/orchestration/presets.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class ModelHandle:
    """Where a prepared model lives; ``chat`` is the starting model of every sequence."""

    name: str
    scale: str
    chat: str
    base: str
    tokenizer: str
    max_length: int
    dtype: str = "float32"
    report: dict[str, Any] = field(default_factory=dict)
    # A JSON file of the starting model's own helpful answers (prompt -> answer) to the calibration
    # set's benign requests, which the methods' calibration set then uses in place of its templates;
    # "" keeps the templates (the micro world was aligned on them).
    helpful_answers: str = ""


def split_ref(ref: str) -> tuple[str, str | None]:
    """``repo@revision`` -> (repo, revision); a folder or an unpinned hub id -> (ref, None)."""
    if "@" in ref and not Path(ref).exists():
        repo, revision = ref.rsplit("@", 1)
        return repo, revision
    return ref, None


def in_hub_cache(ref: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    repo, revision = split_ref(ref)
    return isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str)


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path: str, dtype: str = "float32") -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    repo, revision = split_ref(path)
    model = AutoModelForCausalLM.from_pretrained(repo, revision=revision, dtype=getattr(torch, dtype))
    return model.to(device()).eval()


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    repo, revision = split_ref(path)
    tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


TRAINED_MANIFEST = "manifest.json"


def load_trained(trained: str | Path, step: int, dtype: str = "float32") -> torch.nn.Module:
    """The model a run held after ``step`` (0 = starting model), from its ``trained/`` folder.

    The manifest (``docs/results-schema.md``) names the starting model, the prepared model when
    the method's ``prepare`` changed the weights, one PEFT adapter folder per domain and any kept
    full model. Under ``merge_per_domain`` adapter k was trained on the model after step k-1, so
    adapters 1..k are applied and merged in order; under ``persistent`` adapter k is the one
    adapter after domain k, applied to the starting model.
    """
    import json

    from peft import PeftModel

    folder = Path(trained)
    manifest = json.loads((folder / TRAINED_MANIFEST).read_text())
    if str(step) in manifest.get("models", {}):
        return load_model(str(folder / manifest["models"][str(step)]), dtype)
    adapters = manifest.get("adapters", {})
    missing = [k for k in range(1, step + 1) if str(k) not in adapters]
    if missing:
        raise FileNotFoundError(f"{folder / TRAINED_MANIFEST}: no adapter for step(s) {missing}; "
                                "the run has not trained that far.")
    start = str(folder / manifest["prepared"]) if manifest.get("prepared") else manifest["start"]
    model = load_model(start, dtype)
    chain = range(1, step + 1) if manifest["policy"] == "merge_per_domain" else range(step, step + 1) if step else ()
    for k in chain:
        model = PeftModel.from_pretrained(model, str(folder / adapters[str(k)])).merge_and_unload()
    return model.eval()


def load_local(model_dir: str | Path, tokenizer_dir: str | Path, max_length: int, batch_size: int = 32):
    """A ChatLM over a saved checkpoint (used by reports and `erosion evaluate`)."""
    from harness.core.lm import ChatLM

    return ChatLM(load_model(str(model_dir)), load_tokenizer(str(tokenizer_dir)), max_length=max_length,
                  batch_size=batch_size, device=device())
