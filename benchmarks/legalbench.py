"""LegalBench (Guha et al. 2023), pre-release snapshot 386c97e test rows: every classification task
(closed label set, scored by balanced accuracy in LegalBench) as log-likelihood multiple choice.

Prompt: the chat format the legal domain trains on (``harness.core.domains.legalbench_prompt``, with the
task name lower-cased as in training) as the user turn, the assistant's reply opened with the
training answer's prefix "The answer is"; each label of the task (" Yes", " No", ...) is scored as
its continuation, as in MedQA. Only the task's input columns are shown: columns that give the
answer away (``parties_are_diverse``/``aic_is_met`` in diversity_*, ``slice`` in hearsay and
personal_jurisdiction, ``case id`` in statutory_reasoning_assessment) are left out.

Metric: ``balanced_acc`` = mean over tasks of the task's balanced accuracy (mean recall over the
gold labels present, as sklearn's ``balanced_accuracy_score``), the domain composite's legal term;
``acc`` (all items pooled) beside it. A cap takes rows round-robin over tasks (each task's rows in a
fixed shuffled order), so every task is scored.

Deviations from LegalBench (the released benchmark's test sets are not offline; see PROVENANCE):
  * 386c97e is pre-release: 52 tasks here (38 CUAD, abercrombie, corporate_lobbying, diversity_1-6,
    hearsay, intra_rule_distinguishing, overruling, personal_jurisdiction, proa and the entailment
    rows of statutory_reasoning_assessment, i.e. the released sara_entailment).
  * Left out: eurlex (multi-label EuroVoc codes), rule_qa (free-text answers graded by hand),
    lsat_ar/lr/rc (per-question answer options, not a closed label set; dropped from the release)
    and the numeric rows of statutory_reasoning_assessment (the released sara_numeric).
  * Exact duplicate test rows (about a third of the CUAD and overruling rows) are scored once, and
    test rows whose input also appears in a training row of the same task (either snapshot) are
    dropped, so the legal domain never trains on an evaluated row.
  * Zero-shot log-likelihood over the label set instead of LegalBench's few-shot generation.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from benchmarks.base import Benchmark, Metric, take
from harness.core.data import read_csv
from harness.core.domains import (
    ANSWER_PREFIX,
    legal_inputs,
    legal_key,
    legalbench_label_column,
    legalbench_prompt,
    legalbench_task_dirs,
)
from harness.core.lm import ChatLM

SNAPSHOT = "386c97e"
EXCLUDED_TASKS = {
    "eurlex": "multi-label EuroVoc classification (no closed label set)",
    "rule_qa": "free-text answers graded by hand in LegalBench",
    "lsat_ar": "per-question answer options (not a classification task; not in the released LegalBench)",
    "lsat_lr": "per-question answer options (not a classification task; not in the released LegalBench)",
    "lsat_rc": "per-question answer options (not a classification task; not in the released LegalBench)",
}
# statutory_reasoning_assessment mixes entailment rows with numeric ones (sara_numeric at release).
LABEL_FILTER = {"statutory_reasoning_assessment": frozenset({"Entailment", "Contradiction"})}


@dataclass(frozen=True)
class LegalTask:
    name: str  # the snapshot's folder name, e.g. "CUAD_Audit Rights"
    labels: tuple[str, ...]
    rows: tuple[dict[str, str], ...]  # {"inputs": {...}, "label": ...}, deduplicated, leakage-filtered

    @property
    def prompt_name(self) -> str:
        return self.name.lower()

    def prompt(self, row: dict[str, Any]) -> str:
        return legalbench_prompt(self.prompt_name, row["inputs"])


def _head_name(task: str) -> str:
    return task.lower().replace(" ", "_")


def _train_keys(task: str) -> set[tuple[str, ...]]:
    """Inputs of the task's training rows in both snapshots (HEAD renamed the CUAD tasks)."""
    keys = set()
    for snapshot, name in ((SNAPSHOT, task), ("head", _head_name(task))):
        for task_dir in legalbench_task_dirs(snapshot):
            if task_dir.name == name and (task_dir / "train.tsv").exists():
                keys |= {legal_key(legal_inputs(task, r)) for r in read_csv(task_dir / "train.tsv", delimiter="\t")}
    return keys


@lru_cache(maxsize=2)
def tasks() -> tuple[LegalTask, ...]:
    out = []
    for task_dir in legalbench_task_dirs(SNAPSHOT):
        test = task_dir / "test.tsv"
        if task_dir.name in EXCLUDED_TASKS or not test.exists():
            continue
        name = task_dir.name
        seen = _train_keys(name)  # training inputs first: those rows are never evaluated
        rows = []
        for row in read_csv(test, delimiter="\t"):
            label = row[legalbench_label_column(row)].strip()
            if not label or (name in LABEL_FILTER and label not in LABEL_FILTER[name]):
                continue
            inputs = legal_inputs(name, row)
            key = legal_key(inputs)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"inputs": inputs, "label": label})
        random.Random(f"legalbench:{name}").shuffle(rows)
        out.append(LegalTask(name, tuple(sorted({r["label"] for r in rows})), tuple(rows)))
    return tuple(out)


def items_in_order() -> list[dict[str, Any]]:
    """Every evaluated row as {task, index, row}, round-robin over tasks (so caps cover every task)."""
    all_tasks = tasks()
    out: list[dict[str, Any]] = []
    for k in range(max(len(t.rows) for t in all_tasks)):
        out += [{"task": t, "index": k, "row": t.rows[k]} for t in all_tasks if k < len(t.rows)]
    return out


def balanced_accuracy(golds: list[str], preds: list[str]) -> float:
    """Mean over the gold labels present of the share of that label's items predicted right (0-1)."""
    per_label: dict[str, list[bool]] = {}
    for gold, pred in zip(golds, preds, strict=True):
        per_label.setdefault(gold, []).append(gold == pred)
    return sum(sum(v) / len(v) for v in per_label.values()) / len(per_label) if per_label else float("nan")


def legalbench_scores(items: list[dict[str, Any]]) -> dict[str, float]:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_task.setdefault(item["task"], []).append(item)
    if not by_task:
        return {"balanced_acc": float("nan"), "acc": float("nan"), "n_tasks": 0.0}
    per_task = [balanced_accuracy([i["gold"] for i in group], [i["pred"] for i in group]) for group in by_task.values()]
    return {
        "balanced_acc": 100.0 * sum(per_task) / len(per_task),
        "acc": 100.0 * sum(i["pred"] == i["gold"] for i in items) / len(items),
        "n_tasks": float(len(by_task)),
    }


class LegalBench(Benchmark):
    name = "legalbench"
    metrics = (
        Metric("balanced_acc", "balanced accuracy (%) per task, averaged over tasks"),
        Metric("acc", "accuracy (%) over all items"),
        Metric("n_tasks", "tasks with at least one item scored", interval=False),
    )
    primary = "balanced_acc"
    datasets = ("legalbench",)
    feeds = "domain"
    data = ("LegalBench pre-release snapshot 386c97e, test rows of its 52 classification tasks (eurlex, rule_qa, "
            "lsat_* and numeric SARA rows left out); exact duplicates scored once, rows seen in same-task "
            "training data dropped; zero-shot log-likelihood over each task's labels")

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        chosen = take(items_in_order(), cap)
        requests, spans = [], []
        for q in chosen:
            task: LegalTask = q["task"]
            context = lm.chat_prompt(task.prompt(q["row"]), reply_prefix=ANSWER_PREFIX)
            spans.append(len(requests))
            requests += [(context, f" {label}") for label in task.labels]
        lls = [ll for ll, _ in lm.loglikelihood(requests, desc="legalbench")]
        items = []
        for q, start in zip(chosen, spans, strict=True):
            task = q["task"]
            scores = lls[start : start + len(task.labels)]
            pred = task.labels[max(range(len(scores)), key=lambda k: scores[k])]
            items.append({"id": f"{task.name}-{q['index']}", "task": task.name, "ll": scores, "labels": list(task.labels),
                          "pred": pred, "gold": q["row"]["label"], "correct": pred == q["row"]["label"]})
        return items

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        return legalbench_scores(items)
