"""MedQA-USMLE 4-option, held-out evaluation carve: accuracy by log-likelihood of the answer letter.

There is no MedQA train split offline, so ``harness.core.domains`` carves ~25% of the test file (by a
hash of the question: ``is_medqa_eval``) for evaluation and trains the medical domain on the rest.
The question is asked in the chat format the medical domain trains on (``medqa_prompt`` as the
user turn), and the assistant turn is opened with the training answer's prefix:

    <chat template>(user: {question}\\nA. ..\\nD. ..\\nAnswer with the letter of the correct option.)
    + assistant: "The answer is"          then " A" | " B" | " C" | " D" scored by log-likelihood

The assistant prefix is rendered by the tokenizer's own chat template (``continue_final_message``),
which is what lm-evaluation-harness does for a task with ``gen_prefix`` under
``--apply_chat_template``: the ``erosion_medqa`` task in benchmarks/tasks/ gives the same numbers.
"""
from __future__ import annotations

from typing import Any

from benchmarks.base import Benchmark, Metric, percent, take
from harness.core.domains import ANSWER_PREFIX, is_medqa_eval, medqa_prompt, medqa_rows
from harness.core.lm import ChatLM


def eval_rows() -> list[dict[str, Any]]:
    """The held-out carve, in file order."""
    return [r for r in medqa_rows() if is_medqa_eval(r)]


class MedQA(Benchmark):
    name = "medqa"
    metrics = (Metric("acc", "accuracy (%) on the held-out MedQA carve"),)
    primary = "acc"
    datasets = ("medqa",)
    feeds = "domain"
    data = ("MedQA-USMLE 4-option test file (medagents copy, 1,273 questions); the ~25% held-out carve "
            "(334 questions, is_medqa_eval) is evaluated, the rest is medical-domain training data")

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        rows = take(eval_rows(), cap)
        requests, spans = [], []
        for row in rows:
            letters = sorted(row["options"])
            context = lm.chat_prompt(medqa_prompt(row), reply_prefix=ANSWER_PREFIX)
            spans.append((len(requests), letters))
            requests += [(context, f" {letter}") for letter in letters]
        lls = [ll for ll, _ in lm.loglikelihood(requests, desc="medqa")]
        items = []
        for row, (start, letters) in zip(rows, spans, strict=True):
            scores = lls[start : start + len(letters)]
            pred = letters[max(range(len(letters)), key=lambda k: scores[k])]
            items.append({"id": str(row.get("realidx", row["question"][:40])), "ll": scores, "pred": pred,
                          "gold": row["answer_idx"], "correct": pred == row["answer_idx"]})
        return items

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        return {"acc": percent(sum(bool(i["correct"]) for i in items), len(items))}
