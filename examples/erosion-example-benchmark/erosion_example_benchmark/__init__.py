"""An out-of-tree erosion-bench benchmark, installed as a package and found through the entry point
group ``erosion_bench.benchmarks`` (see pyproject.toml). Copy this folder to start your own."""
from __future__ import annotations

import random
from typing import Any

from benchmarks.base import Benchmark, Metric, percent, take
from harness.core.lm import ChatLM

N_QUESTIONS = 32
SEED = 7  # the questions are the same on every machine and run
OFFSETS = (0, 1, -1, 10)  # the wrong options: off by one either way, or by ten


def questions() -> list[dict[str, Any]]:
    """``What is a + b?`` with four options (the sum and three near misses), in a fixed order."""
    rng = random.Random(SEED)
    rows = []
    for index in range(N_QUESTIONS):
        a, b = rng.randrange(10, 50), rng.randrange(10, 50)
        options = [a + b + offset for offset in OFFSETS]
        rng.shuffle(options)
        rows.append({"id": f"sum-{index}", "a": a, "b": b, "options": options, "gold": a + b})
    return rows


class Sums(Benchmark):
    name = "sums"  # must equal the entry point name
    metrics = (Metric("acc", "accuracy (%): the option with the highest log-likelihood is a + b"),)
    primary = "acc"
    data = f"{N_QUESTIONS} questions 'What is a + b?' (10 <= a, b < 50) generated in code, four options each"

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        rows = take(questions(), cap)
        contexts = [lm.chat_prompt(f"What is {row['a']} + {row['b']}?", reply_prefix="The answer is") for row in rows]
        requests = [(context, f" {option}") for context, row in zip(contexts, rows, strict=True) for option in row["options"]]
        lls = [ll for ll, _ in lm.loglikelihood(requests, desc=self.name)]
        items = []
        for k, row in enumerate(rows):
            scores = lls[k * len(OFFSETS):(k + 1) * len(OFFSETS)]
            pred = row["options"][max(range(len(scores)), key=scores.__getitem__)]
            items.append({"id": row["id"], "ll": scores, "pred": pred, "gold": row["gold"], "correct": pred == row["gold"]})
        return items

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        """From the saved items alone (``erosion rescore`` recomputes it without the model)."""
        return {"acc": percent(sum(bool(i["correct"]) for i in items), len(items))}

    def item_values(self, item: dict[str, Any]) -> dict[str, float]:
        """acc is a plain mean of 100 x correct: bootstrap intervals take the fast path."""
        return {"acc": 100.0 * bool(item["correct"])}
