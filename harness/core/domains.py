"""Domain training sets: each a named, registered builder returning benign chat examples.

All domain data is benign task data from the named datasets: no refusal-removal, no harmful
prompts. Evaluation items are carved out before training data is built (MedQA has no train split
offline, so ~25% of its test rows, chosen by a hash of the question, are held out for evaluation).

Every domain also has a held-out set in its training format (``held_out_examples``), on which the
``domain_nll`` benchmark measures learning: MedQA's evaluation carve, LegalBench's test rows, a
5% carve of CodeAlpaca (by a hash of the prompt), the finance validation file and GSM8K's test
split. Training draws only from the rest (``training_examples``); a test checks that no held-out
prompt is ever trained on.

The short-answer domains (Medical, Legal, Finance) answer in one chat style, "The answer is X.",
which their benchmarks open the assistant turn with (MedQA, LegalBench). One style on purpose: when
each domain taught its own opener (a bare label after Medical's "The answer is ..."), the next
domain's training pushed the previous opener down and refusals won the first token back, so on the
micro world HarmBench refusal rose after a domain while the refusal's likelihood fell
(docs/micro-world.md). A chat model fine-tuned on instructions answers in sentences, not bare labels.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.core.data import (
    Example,
    data_dir,
    dataset_file,
    read_csv,
    read_json,
    read_jsonl,
    require_fields,
    stable_bucket,
)

MEDQA_EVAL_PERCENT = 25
CODE_HELD_OUT_PERCENT = 5  # of CodeAlpaca's 6,552 rows: 305 held out, the rest is training data
FINANCE_LABELS = {"0": "Bearish", "1": "Bullish", "2": "Neutral"}
ANSWER_PREFIX = "The answer is"  # opens every short-answer domain's reply (see above)


Builder = Callable[[], list[Example]]


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    build: Builder
    held_out: Builder  # never trained on; the domain_nll benchmark's items


DOMAINS: dict[str, Domain] = {}


def register_domain(name: str, description: str, held_out: Builder) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        DOMAINS[name] = Domain(name, description, builder, held_out)
        return builder

    return decorate


def domain_examples(name: str, limit: int | None, seed: int) -> list[Example]:
    """A seeded sample of a domain's examples as its builder returns them (all when limit is None).

    The micro world's build samples its domain text with this function; domain training uses
    :func:`training_examples`, which also leaves the held-out set out."""
    examples = DOMAINS[name].build()
    rng = random.Random(f"{name}:{seed}")
    rng.shuffle(examples)
    return examples[:limit] if limit else examples


def training_examples(name: str, limit: int | None, seed: int) -> list[Example]:
    """What a run trains on for a domain: the seeded sample of :func:`domain_examples` with every
    example whose prompt is in the held-out set removed before the sample is cut.

    The filter comes after the shuffle so that a domain whose builder already excludes its
    held-out rows (medical, legal, finance, math) trains on exactly the examples it always did."""
    held_out = held_out_prompts(name, str(data_dir()))
    examples = [e for e in domain_examples(name, None, seed) if e.prompt not in held_out]
    return examples[:limit] if limit else examples


def held_out_examples(name: str, limit: int | None) -> list[Example]:
    """The first ``limit`` of a domain's held-out examples in a fixed shuffled order (the same in
    every run, so a cap takes the same items at every step and seed). Examples with an empty
    response (a few CodeAlpaca rows) have nothing to score and are left out."""
    examples = [e for e in cached_held_out(name, str(data_dir())) if e.response.strip()]
    random.Random(f"{name}:held-out").shuffle(examples)
    return examples[:limit] if limit else examples


@lru_cache(maxsize=16)
def cached_held_out(name: str, data_root: str) -> tuple[Example, ...]:
    """A domain's held-out set, read once per data directory (evaluated at every step of every run)."""
    return tuple(DOMAINS[name].held_out())


@lru_cache(maxsize=16)
def held_out_prompts(name: str, data_root: str) -> frozenset[str]:
    return frozenset(e.prompt for e in cached_held_out(name, data_root))


# ---- medical ------------------------------------------------------------------------------------
def medqa_rows() -> list[dict]:
    path = dataset_file("medqa", "test.jsonl")
    rows = read_jsonl(path)
    require_fields(path, rows, ("question", "options", "answer_idx"))
    return rows


def is_medqa_eval(row: dict) -> bool:
    return stable_bucket(row["question"]) < MEDQA_EVAL_PERCENT


def medqa_prompt(row: dict) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in sorted(row["options"].items()))
    return f"{row['question']}\n{options}\nAnswer with the letter of the correct option."


def medqa_example(row: dict) -> Example:
    return Example(medqa_prompt(row), f"{ANSWER_PREFIX} {row['answer_idx']}: {row['options'][row['answer_idx']]}.", "medqa")


def medical_held_out() -> list[Example]:
    """MedQA's evaluation carve (the medqa benchmark's questions), answered as in training."""
    return [medqa_example(r) for r in medqa_rows() if is_medqa_eval(r)]


@register_domain("medical", "MedQA-USMLE 4-option questions (75% carved for training, 25% held out)", medical_held_out)
def medical() -> list[Example]:
    return [medqa_example(r) for r in medqa_rows() if not is_medqa_eval(r)]


# ---- legal ------------------------------------------------------------------------------------
# The columns a model may see; the rest are labels or give the answer away (e.g. diversity tasks'
# parties_are_diverse / aic_is_met, a row's slice or case id).
LEGAL_INPUT_COLUMNS = {"corporate_lobbying": ("bill_title", "bill_summary", "company_name", "company_description")}
DEFAULT_LEGAL_INPUTS = ("text",)


def legalbench_task_dirs(snapshot: str) -> list[Path]:
    root = dataset_file("legalbench", f"{snapshot}/tasks")
    return sorted(p for p in root.iterdir() if p.is_dir())


def legalbench_label_column(row: dict[str, str]) -> str:
    return "answer" if "answer" in row else "label"


def legal_inputs(task: str, row: dict[str, str]) -> dict[str, str]:
    """The visible input columns of a row (``task`` is either snapshot's folder name)."""
    return {c: row.get(c, "") for c in LEGAL_INPUT_COLUMNS.get(task.lower(), DEFAULT_LEGAL_INPUTS)}


def legal_key(inputs: dict[str, str]) -> tuple[str, ...]:
    """Overlap key of a row's inputs (whitespace-insensitive)."""
    return tuple(" ".join(v.split()) for v in inputs.values())


def legalbench_prompt(task: str, inputs: dict[str, str]) -> str:
    fields = "\n".join(f"{k}: {v}" for k, v in inputs.items() if v)
    return f"LegalBench task '{task.lower()}'.\n{fields}\nAnswer:"


def legalbench_test_keys() -> set[tuple[str, ...]]:
    """Inputs of every held-out test row, so training never sees one."""
    keys = set()
    for task_dir in legalbench_task_dirs("386c97e"):
        test = task_dir / "test.tsv"
        if test.exists():
            keys |= {legal_key(legal_inputs(task_dir.name, row)) for row in read_csv(test, delimiter="\t")}
    return keys


def legal_training_rows() -> Iterator[tuple[str, dict[str, str], str]]:
    """(task, visible inputs, label) of every usable training row whose inputs no test row shares."""
    held_out = legalbench_test_keys()
    for snapshot in ("386c97e", "head"):
        for task_dir in legalbench_task_dirs(snapshot):
            train = task_dir / "train.tsv"
            if not train.exists():
                continue
            for row in read_csv(train, delimiter="\t"):
                label = row.get(legalbench_label_column(row), "").strip()
                inputs = legal_inputs(task_dir.name, row)
                if label and any(inputs.values()) and legal_key(inputs) not in held_out:
                    yield task_dir.name, inputs, label


def legal_held_out() -> list[Example]:
    """LegalBench's labelled test rows (snapshot 386c97e), one per distinct prompt, answered as in
    training; ``legal_training_rows`` drops every train row whose inputs a test row shares."""
    examples = {}
    for task_dir in legalbench_task_dirs("386c97e"):
        test = task_dir / "test.tsv"
        for row in read_csv(test, delimiter="\t") if test.exists() else []:
            label = row.get(legalbench_label_column(row), "").strip()
            inputs = legal_inputs(task_dir.name, row)
            if label and any(inputs.values()):
                prompt = legalbench_prompt(task_dir.name, inputs)
                examples.setdefault(prompt, Example(prompt, f"{ANSWER_PREFIX} {label}.", "legalbench"))
    return list(examples.values())


@register_domain("legal", "LegalBench train rows (pre-release snapshot + HEAD), test rows held out", legal_held_out)
def legal() -> list[Example]:
    examples = {}
    for task, inputs, label in legal_training_rows():
        prompt = legalbench_prompt(task, inputs)
        examples[prompt] = Example(prompt, f"{ANSWER_PREFIX} {label}.", "legalbench")
    return list(examples.values())


# ---- code ---------------------------------------------------------------------------------------
def is_code_held_out(prompt: str) -> bool:
    return stable_bucket(f"code:{prompt}") < CODE_HELD_OUT_PERCENT


def code_held_out() -> list[Example]:
    """A 5% carve of CodeAlpaca by a hash of the prompt (duplicates of a prompt fall together)."""
    return [e for e in code() if is_code_held_out(e.prompt)]


# The builder returns every row, the carve included: the micro world samples its domain text from
# it, and leaving the carve out here would change that sample and so the world. Training leaves the
# carve out (training_examples). The world's build may have seen a few carved rows (docs/benchmarks.md).
@register_domain("code", "CodeAlpaca instructions (2k + new), 5% held out; evaluated on HumanEval", code_held_out)
def code() -> list[Example]:
    examples = []
    for name in ("code_alpaca_2k.json", "new_codealpaca.json"):
        rows = read_json(dataset_file("codealpaca", name))
        for row in rows:
            prompt = row["instruction"] + (f"\n{row['input']}" if row.get("input") else "")
            examples.append(Example(prompt, row["output"], "codealpaca"))
    return examples


# ---- finance (T=5) ------------------------------------------------------------------------------
def finance_split(file: str) -> list[Example]:
    path = dataset_file("finance", file)
    return [
        Example(f"Classify the sentiment of this financial news post as Bearish, Bullish or Neutral.\n{r['text']}",
                f"{ANSWER_PREFIX} {FINANCE_LABELS[r['label']]}.", "finance")
        for r in read_csv(path, required=("text", "label"))
        if r["label"] in FINANCE_LABELS
    ]


@register_domain("finance", "Twitter financial news sentiment (train split; validation held out)",
                 lambda: finance_split("sent_valid.csv"))
def finance() -> list[Example]:
    return finance_split("sent_train.csv")


# ---- math (T=5) ---------------------------------------------------------------------------------
def gsm8k_split(file: str) -> list[Example]:
    path = dataset_file("gsm8k", file)
    rows = read_jsonl(path)
    require_fields(path, rows, ("question", "answer"))
    return [Example(r["question"], r["answer"], "gsm8k") for r in rows]


@register_domain("math", "GSM8K grade-school math word problems (train split; test held out)",
                 lambda: gsm8k_split("test.jsonl"))
def math() -> list[Example]:
    return gsm8k_split("train.jsonl")
