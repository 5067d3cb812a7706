"""MMLU (Hendrycks et al. 2021): all 57 subjects, test split, zero-shot, accuracy by log-likelihood
of the answer letter, exactly as lm-evaluation-harness's default ``mmlu_<subject>`` tasks do:

    The following are multiple choice questions (with answers) about {subject}.\\n\\n
    {question}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer:      + " A" | " B" | " C" | " D"

``acc`` is the macro average over subjects (each subject's accuracy counts once), which is the
composite's "general" term; ``acc_micro`` (every question counts once, what lm-eval's ``mmlu``
group reports with ``weight_by_size``) is given beside it. A cap takes questions round-robin over
the subjects (file order within each), so ``cap = 570`` is the first 10 questions of every subject.

Data: the offline copy is the hendrycks/test pre-release snapshot (14,079 test questions, not the
released 14,042; see the data PROVENANCE): numbers are close to, not identical with, published MMLU.
"""
from __future__ import annotations

from typing import Any

from benchmarks.base import Benchmark, Metric, take
from harness.core.data import dataset_file, read_csv
from harness.core.lm import ChatLM

LETTERS = ("A", "B", "C", "D")
COLUMNS = ["question", "A", "B", "C", "D", "answer"]


def subjects(split: str = "test") -> list[str]:
    folder = dataset_file("mmlu", split)
    return sorted(p.name[: -len(f"_{split}.csv")] for p in folder.glob(f"*_{split}.csv"))


def subject_rows(subject: str, split: str = "test") -> list[dict[str, str]]:
    """One subject's questions in file order (the CSVs have no header)."""
    return read_csv(dataset_file("mmlu", f"{split}/{subject}_{split}.csv"), header=COLUMNS)


def subject_name(subject: str) -> str:
    return subject.replace("_", " ")


def description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject_name(subject)}.\n\n"


def doc_to_text(row: dict[str, str]) -> str:
    options = "".join(f"\n{letter}. {row[letter]}" for letter in LETTERS)
    return f"{row['question'].strip()}{options}\nAnswer:"


def items_in_order(split: str = "test") -> list[dict[str, Any]]:
    """Every question as {subject, index, row}, round-robin over subjects (so caps spread evenly)."""
    per_subject = [[{"subject": s, "index": i, "row": r} for i, r in enumerate(subject_rows(s, split))] for s in subjects(split)]
    out: list[dict[str, Any]] = []
    depth = max(len(rows) for rows in per_subject)
    for k in range(depth):
        out += [rows[k] for rows in per_subject if k < len(rows)]
    return out


def macro_micro(items: list[dict[str, Any]], group_key: str) -> tuple[float, float, int]:
    """(macro accuracy over groups, micro accuracy over items, number of groups), in %."""
    groups: dict[str, list[bool]] = {}
    for item in items:
        groups.setdefault(item[group_key], []).append(bool(item["correct"]))
    if not groups:
        return float("nan"), float("nan"), 0
    macro = sum(sum(v) / len(v) for v in groups.values()) / len(groups)
    micro = sum(sum(v) for v in groups.values()) / sum(len(v) for v in groups.values())
    return 100.0 * macro, 100.0 * micro, len(groups)


class MMLU(Benchmark):
    name = "mmlu"
    metrics = (
        Metric("acc", "accuracy (%), macro average over subjects"),
        Metric("acc_micro", "accuracy (%) over all questions"),
        Metric("n_subjects", "subjects with at least one question scored", interval=False),
    )
    primary = "acc"
    datasets = ("mmlu",)
    feeds = "general"
    data = ("MMLU test split, all 57 subjects, zero-shot (hendrycks/test pre-release snapshot 785eba57: "
            "14,079 questions vs 14,042 released; some subjects differ in count or text)")

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        chosen = take(items_in_order(), cap)
        requests = [(description(q["subject"]) + doc_to_text(q["row"]), f" {letter}") for q in chosen for letter in LETTERS]
        lls = [ll for ll, _ in lm.loglikelihood(requests, desc="mmlu")]
        items = []
        for n, q in enumerate(chosen):
            scores = lls[4 * n : 4 * n + 4]
            pred = max(range(4), key=lambda k: scores[k])
            gold = LETTERS.index(q["row"]["answer"].strip())
            items.append({"id": f"{q['subject']}-{q['index']}", "subject": q["subject"], "ll": scores,
                          "pred": LETTERS[pred], "gold": LETTERS[gold], "correct": pred == gold})
        return items

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        macro, micro, n_groups = macro_micro(items, "subject")
        return {"acc": macro, "acc_micro": micro, "n_subjects": float(n_groups)}
