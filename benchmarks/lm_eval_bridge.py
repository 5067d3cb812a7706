"""Our log-likelihood benchmarks as lm-evaluation-harness tasks (benchmarks/tasks/*.yaml).

The tasks read local JSONL copies of exactly the items our scorers use (same order, same prompt
text, rendered by our own Python), written by :func:`export` into ``benchmarks/tasks/data/``; the
YAMLs name them by a path relative to the repository root, so lm-eval runs from there:

    python -m benchmarks.lm_eval_bridge export
    lm_eval --model hf --model_args pretrained=MODEL --include_path benchmarks/tasks \\
        --tasks erosion_loglik                              # TruthfulQA MC1/MC2, BBQ, MMLU
    lm_eval --model hf --model_args pretrained=MODEL --include_path benchmarks/tasks \\
        --tasks erosion_chat --apply_chat_template          # MedQA, LegalBench (chat format)

In-process, :func:`evaluate` runs the same tasks through ``lm_eval.simple_evaluate`` on a model
object (``HFLM(pretrained=model, tokenizer=tokenizer)``) with one :class:`TaskManager` per process,
and returns scores under our benchmark/metric names on our 0-100 scale. Runs keep using our own
scorers (benchmarks/*.py); this is the cross-check and the door for users of lm-eval. ``--limit N``
takes the same items as our cap N (rows are exported in our order).

Log-likelihoods agree with ``ChatLM`` when lm-eval's ``max_length`` is one less than ChatLM's:
ChatLM keeps the last ``max_length`` tokens including the final continuation token, lm-eval the
last ``max_length + 1`` minus that token (only long, truncated inputs are affected).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.core.data import data_dir
from harness.core.store import atomic_write_text

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
EXPORT_DIR = TASKS_DIR / "data"
REPO_ROOT = TASKS_DIR.parent.parent
EXPORT_VERSION = 1
MANIFEST = EXPORT_DIR / "manifest.json"


@dataclass(frozen=True)
class TaskSpec:
    """How one of our benchmarks maps onto lm-eval tasks: (task, lm-eval metric) per our metric."""

    benchmark: str
    chat: bool  # run with apply_chat_template
    metrics: dict[str, tuple[str, str]]


SPECS: dict[str, TaskSpec] = {
    s.benchmark: s
    for s in [
        TaskSpec("truthfulqa", False, {"mc1": ("erosion_truthfulqa_mc1", "acc"), "mc2": ("erosion_truthfulqa_mc2", "mc2")}),
        TaskSpec("bbq", False, {m: ("erosion_bbq", m)
                                for m in ("acc_ambig", "acc_disambig", "bias_ambig", "bias_disambig", "bias_term")}),
        TaskSpec("mmlu", False, {"acc": ("erosion_mmlu", "acc"), "acc_micro": ("erosion_mmlu", "acc_micro")}),
        TaskSpec("medqa", True, {"acc": ("erosion_medqa", "acc")}),
        TaskSpec("legalbench", True, {"balanced_acc": ("erosion_legalbench", "balanced_acc"),
                                      "acc": ("erosion_legalbench", "acc_micro")}),
    ]
}


# ---- export: our items as lm-eval documents ------------------------------------------------------
def _truthfulqa_docs() -> list[dict[str, Any]]:
    from benchmarks.truthfulqa import doc_to_text, questions

    return [{"id": n, "prompt": doc_to_text(r["question"]), "mc1_choices": r["mc1_targets"]["choices"],
             "mc2_choices": r["mc2_targets"]["choices"], "mc2_labels": r["mc2_targets"]["labels"]}
            for n, r in enumerate(questions())]


def _bbq_docs() -> list[dict[str, Any]]:
    from benchmarks.bbq import biased_answers, is_unknown, items_in_order

    return [{"id": f"{r['category']}-{r['example_id']}", "prompt": f"{r['context']}\n\nQ: {r['question']}\nA:",
             "choices": [r["ans0"], r["ans1"], r["ans2"]], "label": int(r["label"]), "category": r["category"],
             "context_condition": r["context_condition"], "biased": biased_answers(r),
             "unknown": [k for k in range(3) if is_unknown(r, k)]}
            for r in items_in_order()]


def _mmlu_docs() -> list[dict[str, Any]]:
    from benchmarks.mmlu import LETTERS, description, doc_to_text, items_in_order

    return [{"id": f"{q['subject']}-{q['index']}", "group": q["subject"],
             "prompt": description(q["subject"]) + doc_to_text(q["row"]), "label": LETTERS.index(q["row"]["answer"].strip())}
            for q in items_in_order()]


def _medqa_docs() -> list[dict[str, Any]]:
    from benchmarks.medqa import eval_rows
    from harness.core.domains import medqa_prompt

    return [{"id": str(r.get("realidx", n)), "prompt": medqa_prompt(r), "label": sorted(r["options"]).index(r["answer_idx"])}
            for n, r in enumerate(eval_rows())]


def _legalbench_docs() -> list[dict[str, Any]]:
    from benchmarks.legalbench import items_in_order

    return [{"id": f"{q['task'].name}-{q['index']}", "group": q["task"].name, "prompt": q["task"].prompt(q["row"]),
             "choices": list(q["task"].labels), "label": q["task"].labels.index(q["row"]["label"])}
            for q in items_in_order()]


EXPORTERS = {"truthfulqa": _truthfulqa_docs, "bbq": _bbq_docs, "mmlu": _mmlu_docs, "medqa": _medqa_docs,
             "legalbench": _legalbench_docs}


def export_path(benchmark: str) -> Path:
    return EXPORT_DIR / f"{benchmark}.jsonl"


def _manifest() -> dict[str, Any]:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}


def export(benchmarks: list[str] | None = None, force: bool = False) -> list[Path]:
    """Write the lm-eval copies of our data (skipped when already written from the same data dir)."""
    names = benchmarks or list(EXPORTERS)
    manifest = _manifest()
    source = str(data_dir().resolve())
    fresh = manifest.get("version") == EXPORT_VERSION and manifest.get("data_dir") == source
    written = []
    for name in names:
        path = export_path(name)
        if not force and fresh and name in manifest.get("benchmarks", {}) and path.exists():
            continue
        docs = EXPORTERS[name]()
        atomic_write_text(path, "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        manifest = {**(manifest if fresh else {}), "version": EXPORT_VERSION, "data_dir": source}
        manifest.setdefault("benchmarks", {})[name] = len(docs)
        fresh = True
        atomic_write_text(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


# ---- running ----------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def task_manager(include_defaults: bool = False):
    """One TaskManager per process (indexing lm-eval's own ~15k tasks takes seconds: off by default)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=include_defaults)


_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def in_repo_root() -> Iterator[None]:
    """The YAMLs' data paths are relative to the repository root."""
    with _CWD_LOCK:
        previous = os.getcwd()
        os.chdir(REPO_ROOT)
        try:
            yield
        finally:
            os.chdir(previous)


def run_tasks(lm: Any, tasks: list[str], apply_chat_template: bool, limit: int | None = None) -> dict[str, dict[str, Any]]:
    """lm-eval's results dict for our tasks on an lm-eval model object."""
    from lm_eval import simple_evaluate

    with in_repo_root():
        output = simple_evaluate(model=lm, tasks=tasks, limit=limit, apply_chat_template=apply_chat_template,
                                 task_manager=task_manager(), bootstrap_iters=0, log_samples=False,
                                 confirm_run_unsafe_code=False)
    return output["results"]


def hflm(model: Any, tokenizer: Any, max_length: int | None = None, batch_size: int = 16):
    from lm_eval.models.huggingface import HFLM

    device = str(next(model.parameters()).device)
    return HFLM(pretrained=model, tokenizer=tokenizer, max_length=max_length, batch_size=batch_size, device=device)


def evaluate(model: Any, tokenizer: Any, benchmarks: list[str], limit: int | None = None, max_length: int | None = None,
             batch_size: int = 16) -> dict[str, dict[str, float]]:
    """Our benchmarks through lm-eval: {benchmark: {metric: value on 0-100}}."""
    unknown = [b for b in benchmarks if b not in SPECS]
    if unknown:
        raise ValueError(f"No lm-eval task for {unknown}; these have one: {', '.join(SPECS)}")
    export(benchmarks)
    lm = hflm(model, tokenizer, max_length=max_length, batch_size=batch_size)
    scores: dict[str, dict[str, float]] = {}
    for chat in (False, True):
        chosen = [SPECS[b] for b in benchmarks if SPECS[b].chat == chat]
        if not chosen:
            continue
        tasks = sorted({task for spec in chosen for task, _ in spec.metrics.values()})
        results = run_tasks(lm, tasks, apply_chat_template=chat, limit=limit)
        for spec in chosen:
            scores[spec.benchmark] = {ours: 100.0 * float(results[task][f"{metric},none"])
                                      for ours, (task, metric) in spec.metrics.items()}
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lm_eval_bridge", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write benchmarks/tasks/data/*.jsonl from the data directory")
    exp.add_argument("--force", action="store_true")
    exp.add_argument("benchmarks", nargs="*", help=f"any of {', '.join(EXPORTERS)} (default: all)")
    run = sub.add_parser("run", help="evaluate a saved model through lm-eval with our tasks")
    run.add_argument("--model", required=True, help="model folder (or hub id)")
    run.add_argument("--tokenizer", help="tokenizer folder (default: the model's)")
    run.add_argument("--benchmarks", default=",".join(SPECS))
    run.add_argument("--limit", type=int)
    run.add_argument("--max-length", type=int)
    args = parser.parse_args(argv)
    if args.command == "export":
        unknown = [b for b in args.benchmarks if b not in EXPORTERS]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(EXPORTERS)}")
        for path in export(args.benchmarks or None, force=args.force):
            print(path.relative_to(REPO_ROOT))
        return 0
    from harness.core.models import load_model, load_tokenizer

    scores = evaluate(load_model(args.model), load_tokenizer(args.tokenizer or args.model),
                      [b.strip() for b in args.benchmarks.split(",") if b.strip()], args.limit, args.max_length)
    print(json.dumps(scores, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
