"""Chance levels: what a model that knows nothing scores on each benchmark, for the model at hand.

A benchmark carries no signal at a scale where the real model scores what chance does (a 5M
model on BBQ's disambiguated questions, on MedQA). The reference is a **uniform model**: every
next-token distribution uniform over the model's vocabulary, which is exactly what the model
with all its weights set to zero computes (zero embeddings -> zero hidden states -> zero
logits). It is evaluated through the same benchmarks, prompts, tokenizer, caps and judge as the
real model, so its scores include what the tokenizer and the answer formats give away for free
(e.g. TruthfulQA MC2 favours answers with fewer tokens; an all-tie choice picks the first
option, as the zeroed model's argmax does). ``UniformLM`` computes it in closed form, without a
forward pass, so it costs seconds at any scale.

Scores are written as records of benchmark ``chance:<benchmark>`` (and ``chance:composite``) at
step 0, next to the starting model's; the leaderboard shows them as a "chance" row.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.base import Benchmark, BenchmarkResult
from benchmarks.judges import Judge
from harness.core.lm import ChatLM

CHANCE_PREFIX = "chance:"


@dataclass
class UniformLM(ChatLM):
    """The zero-weight model in closed form: log p(token) = -log(vocab_size) everywhere; greedy
    decoding emits token 0 (the first of all-equal logits) until ``max_new_tokens``."""

    vocab_size: int = 0

    def loglikelihood(self, requests: Sequence[tuple[str, str]], desc: str = "loglik") -> list[tuple[float, bool]]:
        out = []
        for context, continuation in requests:
            ctx_ids, cont_ids = self.encode(context), self.encode(continuation)
            whole = (ctx_ids + cont_ids)[-self.max_length:]  # ChatLM's truncation, so n matches it
            n = min(len(cont_ids), len(whole) - 1)
            out.append((-n * math.log(self.vocab_size), all(token == 0 for token in whole[len(whole) - n:])))
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int, desc: str = "generate") -> list[str]:
        if self.tokenizer.eos_token_id == 0:  # generation stops at once
            return [""] * len(prompts)
        text = self.tokenizer.decode([0] * max_new_tokens, skip_special_tokens=True).strip()
        return [text] * len(prompts)


def chance_result(benchmark: Benchmark, tokenizer, vocab_size: int, max_length: int, cap: int | None,
                  max_new_tokens: int, judge: Judge) -> BenchmarkResult:
    """``benchmark`` evaluated on the uniform model of this tokenizer and vocabulary."""
    lm = UniformLM(model=None, tokenizer=tokenizer, max_length=max_length, vocab_size=vocab_size)
    return benchmark.evaluate(lm, cap, max_new_tokens, judge)
