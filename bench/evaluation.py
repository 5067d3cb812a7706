"""Target 3: evaluation speed.

* Log-likelihood: our TruthfulQA MC scorer (``ChatLM``: length-sorted batches, the shared few-shot
  prefix run once and its KV cache reused) against lm-eval's own ``HFLM`` running the same items
  through ``benchmarks.lm_eval_bridge``, side by side on the same in-memory model, with the scores
  compared (they must agree).
* Generation: ``ChatLM.generate`` (left-padded batches, KV cache) on HarmBench prompts, batched as in
  the suite against one prompt at a time: output tokens/s and the prompt padding share.
* Model reuse: a tiny run counts ``load_model`` calls; every per-step evaluation wraps the model
  already in memory (``Run.evaluate`` builds a ``ChatLM`` around ``ctx.model``).
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from bench.common import Options, Target, bench_world, paired_ratio, rotating, side_by_side, summary, timed, tiny_suite
from benchmarks import get_benchmark
from harness.core.lm import ChatLM
from harness.core.models import ModelHandle, load_local
from harness.core.safety_data import behaviors, harmful_request
from harness.core.store import ResultStore
from harness.orchestration import runner

# Same items, same model: scores may differ only by float round-off (the prefix KV cache sums in
# another order); the lm-eval cross-check tests allow 1e-3 points on MC2 too.
SCORE_TOLERANCE = 1e-3
EVAL_BATCH = 32  # sequences/presets/scale-micro.yaml eval.batch_size
MAX_NEW_TOKENS = 24  # sequences/presets/scale-micro.yaml eval.max_new_tokens


def fresh_lm(handle: ModelHandle, batch_size: int = EVAL_BATCH) -> ChatLM:
    return load_local(handle.chat, handle.tokenizer, handle.max_length, batch_size)


def loglikelihood_vs_lm_eval(handle: ModelHandle, cap: int, rounds: int) -> dict[str, Any]:
    from benchmarks.lm_eval_bridge import evaluate as lm_eval_evaluate

    lm, truthfulqa = fresh_lm(handle), get_benchmark("truthfulqa")
    ours = partial(truthfulqa.evaluate, lm, cap, MAX_NEW_TOKENS)
    # lm-eval keeps max_length + 1 tokens minus the last where ChatLM keeps max_length (bridge doc).
    theirs = partial(lm_eval_evaluate, lm.model, lm.tokenizer, ["truthfulqa"], cap, lm.max_length - 1, EVAL_BATCH)
    ours_result, theirs_scores = ours(), theirs()  # warm-up: lm-eval's task index and data export happen once
    times = side_by_side({"ours": ours, "lm_eval": theirs}, rounds)
    n_requests = sum(len(item["mc1_ll"]) + len(item["mc2_ll"]) for item in ours_result.items)
    difference = max(abs(ours_result.scores[m] - theirs_scores["truthfulqa"][m]) for m in ("mc1", "mc2"))
    return {"benchmark": "truthfulqa", "cap": cap, "requests": n_requests, "batch_size": EVAL_BATCH,
            "ours_s": summary(times["ours"]), "lm_eval_s": summary(times["lm_eval"]),
            "lm_eval_over_ours": paired_ratio(times["lm_eval"], times["ours"]),
            "ours_scores": ours_result.scores, "lm_eval_scores": theirs_scores["truthfulqa"],
            "max_score_difference": difference, "padding_share": lm.padding_share}


def new_tokens(generated: torch.Tensor, prompt_width: int, eos_id: int) -> int:
    """Tokens generated per row up to and including its EOS (what follows EOS is padding)."""
    new = generated[:, prompt_width:]
    is_eos = new == eos_id
    lengths = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new.shape[1])
    return int(lengths.sum())


@contextmanager
def counting_generated(model: torch.nn.Module, eos_id: int) -> Iterator[list[int]]:
    """Records the tokens each ``model.generate`` call produced (ChatLM returns only decoded text)."""
    counts: list[int] = []
    original = model.generate

    def record(*args: Any, **kwargs: Any) -> torch.Tensor:
        generated = original(*args, **kwargs)
        counts.append(new_tokens(generated, kwargs["input_ids"].shape[1], eos_id))
        return generated

    with mock.patch.object(model, "generate", side_effect=record):
        yield counts


def _generate(loaded: ChatLM, prompts: list[str], batch_size: int) -> dict[str, Any]:
    lm = ChatLM(loaded.model, loaded.tokenizer, loaded.max_length, batch_size, loaded.device)  # fresh padding counters
    with counting_generated(lm.model, lm.tokenizer.eos_token_id) as counts:
        seconds, outputs = timed(partial(lm.generate, prompts, MAX_NEW_TOKENS))
    return {"seconds": seconds, "tokens": sum(counts), "padding_share": lm.padding_share, "outputs": outputs}


def generation_throughput(handle: ModelHandle, n_prompts: int, rounds: int) -> dict[str, Any]:
    loaded = fresh_lm(handle)
    prompts = [loaded.chat_prompt(harmful_request(row).prompt) for row in behaviors()[:n_prompts]]
    runs = rotating({"batched": partial(_generate, loaded, prompts, EVAL_BATCH),
                     "one_at_a_time": partial(_generate, loaded, prompts, 1)}, rounds)
    rate = {mode: [r["tokens"] / r["seconds"] for r in results] for mode, results in runs.items()}
    pairs = zip(runs["batched"][0]["outputs"], runs["one_at_a_time"][0]["outputs"], strict=True)
    same = sum(a == b for a, b in pairs) / n_prompts
    return {"prompts": n_prompts, "max_new_tokens": MAX_NEW_TOKENS, "batch_size": EVAL_BATCH,
            "batched_tokens_per_s": summary(rate["batched"]), "one_at_a_time_tokens_per_s": summary(rate["one_at_a_time"]),
            "speedup": paired_ratio(rate["batched"], rate["one_at_a_time"]),
            "output_tokens": runs["batched"][0]["tokens"], "padding_share": runs["batched"][0]["padding_share"],
            "identical_outputs": same}


def model_loads_per_run() -> dict[str, Any]:
    """``load_model`` calls during one tiny run of two domains (three evaluations)."""
    suite = tiny_suite(["standard_lora"], max_steps=1)
    handle = bench_world(True)
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(runner, "load_model", wraps=runner.load_model) as spy:
        store = ResultStore(Path(tmp))
        info = runner.Run(suite, handle, "standard_lora", suite.domains, 0, store).execute()
        evaluations = store.finished_steps(info.run_id, len(suite.domains))
    return {"status": info.status, "evaluations": evaluations, "model_loads": spy.call_count,
            "how": "Run.evaluate wraps ctx.model (already in memory) in a ChatLM; no reload per step"}


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    handle = bench_world(options.quick)
    rounds = options.pick(3, 1)
    section = {
        "world": handle.name,
        "loglikelihood": loglikelihood_vs_lm_eval(handle, options.pick(40, 4), rounds),
        "generation": generation_throughput(handle, options.pick(EVAL_BATCH, 8), rounds),
        "model_reuse": model_loads_per_run(),
    }
    return section, targets(section)


def targets(section: dict[str, Any]) -> list[Target]:
    ll, gen, reuse = section["loglikelihood"], section["generation"], section["model_reuse"]
    world = section["world"]
    return [
        Target("3a", f"lm-eval HFLM time / our log-likelihood time, TruthfulQA MC cap {ll['cap']} ({world})",
               ll["lm_eval_over_ours"], "x", f">= 1 (ours not slower) and same scores (|diff| < {SCORE_TOLERANCE:g})",
               ll["lm_eval_over_ours"] >= 1 and ll["max_score_difference"] < SCORE_TOLERANCE,
               f"ours {ll['ours_s']['median']:.2f} s vs lm-eval {ll['lm_eval_s']['median']:.2f} s; "
               f"score diff {ll['max_score_difference']:.1e}"),
        Target("3b", f"batched KV-cache generation ({world})", gen["batched_tokens_per_s"]["median"], "tokens/s",
               "batched faster than one prompt at a time", gen["speedup"] > 1,
               f"{gen['speedup']:.1f}x one-at-a-time; prompt padding share {100 * gen['padding_share']:.1f} %"),
        Target("3c", "model loads per run (per-step evaluation reuses the loaded model)", reuse["model_loads"], "",
               "1 load for all evaluations", reuse["status"] == "done" and reuse["model_loads"] == 1,
               f"{reuse['evaluations']} evaluations"),
    ]
