"""Target 7: the small organism's cost on this CPU, what `erosion plan` and the README's `make small`
times rest on: one Standard LoRA optimizer step of SmolLM2-135M at the small preset's batch
(``sequences/presets/scale-small.yaml``: 4 x 2 sequences of 128 tokens, r=16 on q/k/v/o) and greedy
generation of HarmBench-length answers (16 prompts x 32 new tokens, KV cache). Measured only when
small-chat is already built (`make small` builds it, ~20 min); otherwise the target says so.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import Options, Target, summary
from bench.gpu import step_times
from harness.core.adapters import attach_adapter
from harness.core.settings import TrainSettings

SMALL_BATCH, SMALL_ACCUM, SMALL_SEQ = 4, 2, 128
PROMPTS, NEW_TOKENS = 16, 32


def small_chat_folder() -> tuple[str, str] | None:
    """(chat, tokenizer) folders of the cached default small build, or None when not built."""
    from harness.orchestration.small_model import SmallConfig, small_paths

    paths = small_paths(SmallConfig())
    return (str(paths.chat), str(paths.tokenizer)) if paths.complete() else None


def generation_seconds(chat: str, tokenizer: str, prompts: int, new_tokens: int) -> float:
    from harness.core.models import load_local
    from harness.core.safety_data import behaviors

    lm = load_local(chat, tokenizer, max_length=1024, batch_size=prompts)
    formatted = [lm.chat_prompt(row["Behavior"]) for row in behaviors()[:prompts]]
    start = time.perf_counter()
    lm.generate(formatted, new_tokens)
    return time.perf_counter() - start


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    train_what, gen_what = "small: Standard LoRA training tokens/s", "small: generated tokens/s (HarmBench prompts)"
    folders = small_chat_folder()
    if folders is None:
        reason = "small-chat not built (`make small` builds it)"
        return {"measured": False, "reason": reason}, [Target("7a", train_what, None, "tokens/s", "reported", None, reason),
                                                         Target("7b", gen_what, None, "tokens/s", "reported", None, reason)]
    from harness.core.models import load_model

    model = attach_adapter(load_model(folders[0]), TrainSettings(), seed=0)
    batch, seq = options.pick(SMALL_BATCH, 1), options.pick(SMALL_SEQ, 16)
    micro_steps = step_times(model, batch, seq, options.pick(4 * SMALL_ACCUM, 1), "cpu")
    step_s = SMALL_ACCUM * summary(micro_steps)["median"]  # one optimizer step = grad_accum micro-batches
    prompts, new_tokens = options.pick(PROMPTS, 2), options.pick(NEW_TOKENS, 4)
    gen_s = generation_seconds(*folders, prompts, new_tokens)
    section = {"measured": True, "threads": torch.get_num_threads(), "optimizer_step_s": step_s,
               "train_tokens_per_s": SMALL_ACCUM * batch * seq / step_s, "generation_s": gen_s,
               "generated_tokens_per_s": prompts * new_tokens / gen_s}
    note = f"{step_s:.2f} s per optimizer step ({SMALL_ACCUM} x {batch} x {seq} tokens), {torch.get_num_threads()} thread(s)"
    return section, [Target("7a", train_what, section["train_tokens_per_s"], "tokens/s", "reported", True, note),
                     Target("7b", gen_what, section["generated_tokens_per_s"], "tokens/s", "reported", True,
                            f"{prompts} prompts x {new_tokens} new tokens in {gen_s:.1f} s")]
