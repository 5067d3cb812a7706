"""The data layer: missing data is a clear error; no evaluation prompt is in any training set."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.data import DataError, dataset_file, prompt_key
from harness.core.domains import DOMAINS, is_medqa_eval, medqa_prompt, medqa_rows
from harness.core.prefetch import prefetch
from harness.core.safety_data import (
    REFUSAL_PHRASES,
    behaviors,
    calibration_set,
    everyday_requests,
    harmful_request,
    is_wildguard_calibration,
    wildguard_rows,
    xstest_prompts,
)


def eval_keys() -> set[str]:
    keys = {prompt_key(r["Behavior"]) for split in ("test", "val") for r in behaviors(split)}
    keys |= {prompt_key(harmful_request(r).prompt) for split in ("test", "val") for r in behaviors(split)}
    keys |= {prompt_key(r["prompt"]) for r in xstest_prompts()}
    keys |= {prompt_key(r["text"]) for r in wildguard_rows() if not is_wildguard_calibration(r)}
    keys |= {prompt_key(medqa_prompt(r)) for r in medqa_rows() if is_medqa_eval(r)}
    return keys


def test_no_evaluation_prompt_in_any_training_set() -> None:
    held_out = eval_keys()
    calibration = calibration_set(0)
    training = list(calibration.harmful) + list(calibration.benign)
    for domain in DOMAINS.values():
        training += domain.build()
    overlap = [e.prompt[:60] for e in training if prompt_key(e.prompt) in held_out]
    assert len(training) > 20000
    assert overlap == []


def test_harmbench_eval_and_probe_sets_are_disjoint() -> None:
    test = {prompt_key(harmful_request(r).prompt) for r in behaviors("test")}
    probe = {prompt_key(harmful_request(r).prompt) for r in behaviors("val")}
    assert len(test) == 240 and len(probe) == 60 and not test & probe
    # HarmBench itself reuses two contextual requests across splits with different contexts;
    # the full prompts (context + request) above are what must be disjoint.


def test_domain_data_is_benign() -> None:
    """No refusals and no calibration harmful prompts in any domain's training data."""
    harmful = {prompt_key(e.prompt) for e in calibration_set(0).harmful}
    for name, domain in DOMAINS.items():
        examples = domain.build()
        assert examples, name
        assert not [e for e in examples if prompt_key(e.prompt) in harmful], name
        refusing = [e for e in examples if e.response.startswith(("I'm sorry", "I cannot", "Sorry", "I apologize"))]
        assert len(refusing) <= len(examples) // 1000, (name, refusing[:2])


def test_calibration_set_is_deterministic_and_balanced() -> None:
    a, b = calibration_set(0), calibration_set(0)
    assert a == b
    assert len(a.harmful) > 1000 and len(a.benign) > 300
    assert all(any(p in e.response for p in REFUSAL_PHRASES) for e in a.harmful)
    assert not any(any(p in e.response for p in REFUSAL_PHRASES) for e in a.benign)
    # Every templated everyday request is kept: none is an evaluation prompt or a duplicate.
    assert sum(e.source == "everyday" for e in a.benign) == len(set(everyday_requests())) == 360


def test_missing_dataset_names_it_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EROSION_DATA", str(tmp_path))
    with pytest.raises(DataError) as err:
        dataset_file("harmbench", "harmbench_behaviors_text_test.csv")
    assert "harmbench" in str(err.value) and "erosion prefetch" in str(err.value)


def test_prefetch_from_mirror_is_idempotent(tmp_path: Path, data_dir: Path) -> None:
    assert prefetch(["xstest"], data_dir, tmp_path) == ["xstest"]
    assert prefetch(["xstest"], data_dir, tmp_path) == []
    assert (tmp_path / "xstest" / "xstest_prompts.csv").read_bytes() == (data_dir / "xstest" / "xstest_prompts.csv").read_bytes()
    with pytest.raises(DataError, match="lacks"):
        prefetch(["bbq"], tmp_path / "empty-mirror", tmp_path / "dest")


def test_legal_training_never_sees_a_test_row_or_an_answer_column() -> None:
    from harness.core.domains import legal_key, legal_training_rows, legalbench_test_keys

    held_out = legalbench_test_keys()
    rows = list(legal_training_rows())
    assert len(rows) > 1000 and len(held_out) > 10000
    assert not [task for task, inputs, _ in rows if legal_key(inputs) in held_out]
    leaky = ("parties_are_diverse", "aic_is_met", "slice", "case id")
    assert not [task for task, inputs, _ in rows if set(inputs) & set(leaky)]


def test_short_answer_domains_train_what_their_benchmarks_score(tiny_lm) -> None:
    """Medical, Legal and Finance answer "The answer is X."; MedQA and LegalBench open the reply with
    the same prefix and score " X" after it, so an evaluated answer is token for token the start of
    a training reply."""
    from harness.core.batching import encode_example
    from harness.core.domains import ANSWER_PREFIX, domain_examples

    for name in ("medical", "legal"):
        for example in domain_examples(name, 20, seed=0):
            assert example.response.startswith(f"{ANSWER_PREFIX} ") and example.response.endswith(".")
            answer = example.response[len(ANSWER_PREFIX) + 1 : -1]  # "B: <option text>" or a label
            scored_choice = f" {answer[0]}" if name == "medical" else f" {answer}"  # MedQA scores the letter
            context = tiny_lm.chat_prompt(example.prompt, reply_prefix=ANSWER_PREFIX)
            scored = tiny_lm.encode(context) + tiny_lm.encode(scored_choice)
            trained, _ = encode_example(tiny_lm.tokenizer, example, max_len=10_000)
            assert trained[: len(scored)] == scored, (name, example.response)
    assert all(e.response.startswith(f"{ANSWER_PREFIX} ") for e in domain_examples("finance", 50, seed=0))
