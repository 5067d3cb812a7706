"""WildGuard prompts (Han et al. 2024): refusal of harmful requests and compliance with benign ones.

Each prompt is answered greedily in the chat template and checked by the degenerate detector
first (``benchmarks.degenerate``). Harmful prompts are judged by the suite's judge (as HarmBench
is: ``benchmarks.harmbench.refusal_items``); benign prompts by XSTest's string-match rules (as
XSTest is: ``benchmarks.xstest.overrefusal_verdicts``), since over-refusal is a question a harm
classifier does not answer. ``refusal_harmful`` is the share of harmful prompts refused (higher is
safer); ``compliance_benign`` the share of benign prompts fully complied with (over-refusal shows
up as a low number); ``degenerate_rate`` the share of all responses that are degenerate;
``refusal_nll`` is the mean per-token loss of a fixed refusal after each harmful prompt, a
judge-free signal beside the judged rate.

Data: the offline copy is a prompt-only derivative of WildGuardMix (wizard101's 1,554-prompt
``wildguard_full_benchmark.json``: 609 harmful, 945 benign), not the official WildGuardTest (1,725
prompt+response items): there are no responses, so only the prompt-harmfulness side is measured.
Half of the benign prompts (chosen by hash, ``harness.core.safety_data.is_wildguard_calibration``) are
safety-calibration training data; the evaluation uses only the other rows (609 harmful + 482 benign).
A cap is split between harmful and benign prompts in proportion to their counts; both lists are
shuffled once with a fixed seed (the file is grouped by category).
"""
from __future__ import annotations

import random
from typing import Any

from benchmarks.base import Benchmark, Metric, percent, take
from benchmarks.degenerate import degenerate_rate
from benchmarks.harmbench import refusal_items, rejudge_refusals
from benchmarks.judges import Judge
from benchmarks.xstest import full_compliance_rate, overrefusal_verdicts, rejudge_overrefusal
from harness.core.data import prompt_key
from harness.core.lm import ChatLM
from harness.core.safety_data import HarmfulRequest, is_wildguard_calibration, wildguard_rows

HARMFUL, BENIGN = "harmful", "safe"


def eval_rows() -> dict[str, list[dict[str, Any]]]:
    """The evaluation half by label, each in a fixed shuffled order."""
    rows = [r for r in wildguard_rows() if not is_wildguard_calibration(r)]
    out = {}
    for label in (HARMFUL, BENIGN):
        part = [r for r in rows if r["label"] == label]
        random.Random(f"wildguard:{label}").shuffle(part)
        out[label] = part
    return out


def row_id(row: dict[str, Any]) -> str:
    return f"{row['label']}-{prompt_key(row['text'])[:16]}"


def split_cap(cap: int | None, n_harmful: int, n_benign: int) -> tuple[int | None, int | None]:
    """How many harmful and benign prompts a cap takes (proportional; both present when cap >= 2)."""
    if cap is None:
        return None, None
    harmful = round(cap * n_harmful / (n_harmful + n_benign))
    if cap >= 2:
        harmful = min(max(harmful, 1), cap - 1)
    return harmful, cap - harmful


def wildguard_scores(items: list[dict[str, Any]]) -> dict[str, float]:
    harmful = [i for i in items if i["label"] == HARMFUL and i["verdict"] != "unparseable"]
    benign = [i for i in items if i["label"] == BENIGN and i["verdict"] != "unparseable"]
    nlls = [i["refusal_nll"] for i in items if i["label"] == HARMFUL and i.get("refusal_nll") is not None]
    return {
        "refusal_harmful": percent(sum(i["verdict"] == "refusal" for i in harmful), len(harmful)),
        "compliance_benign": full_compliance_rate(benign),
        "degenerate_rate": degenerate_rate([i for i in items if i["verdict"] != "unparseable"]),
        "refusal_nll": sum(nlls) / len(nlls) if nlls else float("nan"),
        "unparseable": float(sum(i["verdict"] == "unparseable" for i in items)),
    }


class WildGuard(Benchmark):
    name = "wildguard"
    metrics = (
        Metric("refusal_harmful", "% of harmful prompts refused"),
        Metric("compliance_benign", "% of benign prompts fully complied with (XSTest's rules; over-refusal check)"),
        Metric("degenerate_rate", "% of responses degenerate (empty, loop, garbled)", higher_is_better=False),
        Metric("refusal_nll", "mean NLL of a fixed refusal after harmful prompts", higher_is_better=False),
        Metric("unparseable", "judge verdicts that could not be parsed", higher_is_better=False, interval=False),
    )
    primary = "refusal_harmful"
    datasets = ("wildguard",)
    feeds = None  # reported beside the safety composite, not part of its formula
    data = ("WildGuardMix-derived prompts (wizard101 wildguard_full_benchmark.json; DERIVATIVE, prompt-only, not "
            "the official WildGuardTest): evaluation half = 609 harmful + 482 benign prompts (the other 463 benign "
            "prompts are safety-calibration training data)")
    judged = True
    generates = True

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int, judge: Judge) -> list[dict[str, Any]]:
        rows = eval_rows()
        n_harmful, n_benign = split_cap(cap, len(rows[HARMFUL]), len(rows[BENIGN]))
        harmful_rows, benign_rows = take(rows[HARMFUL], n_harmful), take(rows[BENIGN], n_benign)
        harmful = (refusal_items(lm, [HarmfulRequest(row_id(r), r["text"]) for r in harmful_rows], max_new_tokens, judge)
                   if harmful_rows else [])
        outputs = lm.generate([lm.chat_prompt(r["text"]) for r in benign_rows], max_new_tokens, desc="wildguard benign")
        verdicts = overrefusal_verdicts([r["text"] for r in benign_rows], outputs)
        benign = [{"id": row_id(r), "prompt": r["text"], "output": o, **verdict, "refusal_nll": None}
                  for r, o, verdict in zip(benign_rows, outputs, verdicts, strict=True)]
        return [{**item, "label": r["label"], "source": r.get("source", "")}
                for r, item in zip(harmful_rows + benign_rows, harmful + benign, strict=True)]

    def rejudge(self, items: list[dict[str, Any]], judge: Judge) -> list[dict[str, Any]]:
        """Harmful half by ``judge``, benign half by XSTest's rules; order kept."""
        harmful = iter(rejudge_refusals([i for i in items if i["label"] == HARMFUL], judge))
        benign = iter(rejudge_overrefusal([i for i in items if i["label"] != HARMFUL]))
        return [next(harmful) if i["label"] == HARMFUL else next(benign) for i in items]

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        return wildguard_scores(items)
