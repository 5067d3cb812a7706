"""Cross-checks against lm-evaluation-harness on the tiny model and a few items:

* lm-eval's own built-in task configs (truthfulqa_mc1/mc2, mmlu_<subject>, bbq), pointed at a local
  copy of our data and run through ``simple_evaluate`` on the in-memory model, give the same numbers
  as our TruthfulQA, MMLU and BBQ scorers (BBQ: same scoring logic; lm-eval's choice set differs);
* our own lm-eval tasks (benchmarks/tasks/*.yaml, through benchmarks.lm_eval_bridge) give the same
  numbers as our fast scorers for TruthfulQA, BBQ, MMLU, MedQA and LegalBench.
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest

from benchmarks import BENCHMARKS

lm_eval = pytest.importorskip("lm_eval")
logging.getLogger("lm_eval").setLevel(logging.ERROR)

N = 8  # items per check: enough for a non-trivial number, few enough for seconds on 2 cores
LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"


@pytest.fixture(scope="module")
def lm_eval_model(tiny_lm):
    from benchmarks.lm_eval_bridge import hflm

    # ChatLM keeps max_length tokens including the last continuation token, lm-eval max_length + 1
    # without it: one less here makes truncated inputs identical too.
    return hflm(tiny_lm.model, tiny_lm.tokenizer, max_length=tiny_lm.max_length - 1, batch_size=16)


def builtin_config(relative_yaml: str, data_files: dict[str, str]) -> dict:
    """One of lm-eval's built-in task configs (includes and !function resolved), reading local files."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = copy.deepcopy(load_yaml(LM_EVAL_TASKS / relative_yaml, resolve_func=True))
    config.pop("tag", None)
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files})
    return config


def run_builtin(model, configs: list[dict], limit: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    out = simple_evaluate(model=model, tasks=configs, limit=limit, bootstrap_iters=0, log_samples=True,
                          task_manager=TaskManager(include_defaults=False))
    return out


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ---- lm-eval's built-in task logic ----------------------------------------------------------------
def test_truthfulqa_matches_lm_eval_builtin(tiny_lm, lm_eval_model, tmp_path):
    from benchmarks.truthfulqa import questions

    rows = [{k: r[k] for k in ("question", "mc1_targets", "mc2_targets")} for r in questions()[:N]]
    files = {"validation": write_jsonl(tmp_path / "tqa.jsonl", rows)}
    out = run_builtin(lm_eval_model, [builtin_config("truthfulqa/truthfulqa_mc1.yaml", files),
                                      builtin_config("truthfulqa/truthfulqa_mc2.yaml", files)], N)
    ours = BENCHMARKS["truthfulqa"].score(BENCHMARKS["truthfulqa"].run(tiny_lm, N, 8))
    assert ours["mc1"] == pytest.approx(100 * out["results"]["truthfulqa_mc1"]["acc,none"], abs=1e-6)
    assert ours["mc2"] == pytest.approx(100 * out["results"]["truthfulqa_mc2"]["acc,none"], abs=1e-3)


def test_mmlu_matches_lm_eval_builtin(tiny_lm, lm_eval_model, tmp_path, monkeypatch):
    from benchmarks import mmlu

    chosen = ["abstract_algebra", "high_school_european_history", "world_religions"]  # the middle one is truncated
    per_subject = 4
    configs = []
    for subject in chosen:
        files = {}
        for split in ("test", "dev"):
            rows = [{"question": r["question"], "subject": subject, "choices": [r[k] for k in mmlu.LETTERS],
                     "answer": mmlu.LETTERS.index(r["answer"].strip())} for r in mmlu.subject_rows(subject, split)]
            files[split] = write_jsonl(tmp_path / f"{subject}-{split}.jsonl", rows)
        configs.append(builtin_config(f"mmlu/default/mmlu_{subject}.yaml", files))
    out = run_builtin(lm_eval_model, configs, per_subject)

    monkeypatch.setattr(mmlu, "subjects", lambda split="test": chosen)
    items = BENCHMARKS["mmlu"].run(tiny_lm, per_subject * len(chosen), 8)
    for subject in chosen:
        samples = out["samples"][f"mmlu_{subject}"]
        theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in sorted(samples, key=lambda s: s["doc_id"])]
        mine = [i["ll"] for i in items if i["subject"] == subject]
        assert len(mine) == len(theirs) == per_subject
        assert sum(mine, []) == pytest.approx(sum(theirs, []), abs=1e-3)
        acc = sum(i["correct"] for i in items if i["subject"] == subject) / per_subject
        assert acc == pytest.approx(out["results"][f"mmlu_{subject}"]["acc,none"])
    macro = sum(out["results"][f"mmlu_{s}"]["acc,none"] for s in chosen) / len(chosen)
    assert BENCHMARKS["mmlu"].score(items)["acc"] == pytest.approx(100 * macro)


def _lm_eval_bbq_utils():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lm_eval_bbq_utils", LM_EVAL_TASKS / "bbq" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Docs(list):
    def map(self, function):
        return _Docs(function(copy.deepcopy(d)) for d in self)


def test_bbq_biased_and_unknown_answers_match_lm_eval():
    """On every row of the six offline categories, lm-eval's process_docs marks the same answers."""
    from benchmarks.bbq import biased_answers, is_unknown, items_in_order

    utils = _lm_eval_bbq_utils()
    rows = items_in_order()
    for row, doc in zip(rows, utils.process_docs(_Docs(rows)), strict=True):
        assert biased_answers(row) == [k for k in range(3) if row[f"ans{k}"] in doc["biased_answers"]]
        assert [is_unknown(row, k) for k in range(3)] == [row[f"ans{k}"] in utils.UNKNOWN_RESPONSES for k in range(3)]


def test_bbq_scoring_matches_lm_eval_on_its_choice_set(tiny_lm, lm_eval_model, tmp_path):
    """lm-eval's bbq swaps the unknown option for ten unknown phrasings (12 choices). Scoring lm-eval's
    choice set with our ChatLM and our bbq_scores reproduces lm-eval's numbers: the scoring logic is the
    same, only the choice set differs (ours keeps the dataset's three options)."""
    from benchmarks.bbq import bbq_scores, items_in_order

    n = 16
    rows = items_in_order()[:n]
    config = builtin_config("bbq/bbq_multiple_choice.yaml", {"test": write_jsonl(tmp_path / "bbq.jsonl", rows)})
    out = run_builtin(lm_eval_model, [config], n)
    theirs = out["results"]["bbq"]

    utils = _lm_eval_bbq_utils()
    docs = utils.process_docs(_Docs(rows))
    items = []
    for doc in docs:
        choices = utils.doc_to_choice(doc)
        requests = [(f"{doc['context']}\n\nQ: {doc['question']}\nA:", f" {c}") for c in choices]
        lls = [ll for ll, _ in tiny_lm.loglikelihood(requests)]
        pred = max(range(len(lls)), key=lambda k: lls[k])
        items.append({"context_condition": doc["context_condition"], "correct": pred in utils.doc_to_targets(doc),
                      "pred_unknown": choices[pred] in utils.UNKNOWN_RESPONSES,
                      "pred_biased": pred in utils.doc_to_biased_answer(doc)})
    ours = bbq_scores(items)
    assert ours["acc_ambig"] == pytest.approx(100 * theirs["accuracy_amb,none"])
    assert ours["acc_disambig"] == pytest.approx(100 * theirs["accuracy_disamb,none"])
    assert ours["bias_ambig"] == pytest.approx(100 * theirs["amb_bias_score,none"])
    disambig = [i for i in items if i["context_condition"] == "disambig" and not i["pred_unknown"]]
    if any(i["pred_biased"] for i in disambig) or not disambig:
        assert ours["bias_disambig"] == pytest.approx(100 * theirs["disamb_bias_score,none"])
    else:  # lm-eval returns 0 when no answer is biased; the paper's formula (ours) gives -1
        assert (ours["bias_disambig"], theirs["disamb_bias_score,none"]) == (-100.0, 0.0)


def test_bbq_aggregation_matches_lm_eval_functions():
    """Our bias and accuracy formulas against lm-eval's aggregation functions on made-up items."""
    import numpy as np

    from benchmarks.bbq import bbq_scores

    utils = _lm_eval_bbq_utils()
    # (condition, correct, unknown, biased)
    spec = [("ambig", 0, 0, 1), ("ambig", 0, 0, 1), ("ambig", 1, 1, 0), ("ambig", 0, 0, 0), ("disambig", 1, 0, 1),
            ("disambig", 0, 0, 0), ("disambig", 1, 0, 1), ("disambig", 1, 1, 0)]
    items = [{"context_condition": c, "correct": bool(a), "pred_unknown": bool(u), "pred_biased": bool(b)} for c, a, u, b in spec]
    tuples = [(float(a), float(b), 0.0 if u else 1.0, np.array(c == "disambig")) for c, a, u, b in spec]
    ours = bbq_scores(items)
    # by hand: ambig acc 1/4; non-unknown ambig answers 3, biased 2 -> s = (1 - 1/4) * (2*2/3 - 1) = 0.25
    assert ours["acc_ambig"] == pytest.approx(25.0) and ours["bias_ambig"] == pytest.approx(25.0)
    assert ours["bias_disambig"] == pytest.approx(100 * (2 * 2 / 3 - 1))
    assert ours["acc_ambig"] == pytest.approx(100 * utils.agg_accuracy_amb([(t[0], t[3]) for t in tuples]))
    assert ours["acc_disambig"] == pytest.approx(100 * utils.agg_accuracy_disamb([(t[0], t[3]) for t in tuples]))
    assert ours["bias_ambig"] == pytest.approx(100 * utils.agg_amb_bias_scores(tuples))
    assert ours["bias_disambig"] == pytest.approx(100 * utils.agg_disamb_bias_scores(tuples))


# ---- our tasks (benchmarks/tasks) through the bridge ---------------------------------------------------
@pytest.mark.slow
def test_our_lm_eval_tasks_match_our_scorers(tiny_lm):
    from benchmarks import lm_eval_bridge

    names = ["truthfulqa", "bbq", "mmlu", "medqa", "legalbench"]
    theirs = lm_eval_bridge.evaluate(tiny_lm.model, tiny_lm.tokenizer, names, limit=N, max_length=tiny_lm.max_length - 1)
    for name in names:
        ours = BENCHMARKS[name].score(BENCHMARKS[name].run(tiny_lm, N, 8))
        for metric, value in theirs[name].items():
            assert value == pytest.approx(ours[metric], abs=1e-3), (name, metric)


def test_task_yamls_are_indexed_with_their_tags():
    from benchmarks import lm_eval_bridge

    manager = lm_eval_bridge.task_manager()
    assert manager is lm_eval_bridge.task_manager()  # one per process
    tasks = {task for spec in lm_eval_bridge.SPECS.values() for task, _ in spec.metrics.values()}
    assert tasks <= set(manager.all_subtasks)
    assert {"erosion_loglik", "erosion_chat"} <= set(manager.all_tags)
    for spec in lm_eval_bridge.SPECS.values():
        for task, _ in spec.metrics.values():
            text = (lm_eval_bridge.TASKS_DIR / f"{task}.yaml").read_text()
            assert f"benchmarks/tasks/data/{spec.benchmark}.jsonl" in text and "${" not in text
            assert ("tag: erosion_chat" in text) == spec.chat
