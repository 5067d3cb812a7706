"""The methods' calibration set answers benign requests as the starting model was taught to: the
micro world's templates, or (small) the starting model's own answers; the config hash says which."""
from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from harness.core.data import Example
from harness.core.errors import ErosionError
from harness.core.safety_data import CalibrationSet, calibration_set, with_helpful_answers
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.presets import PRESETS
from methods.registry import all_methods

REPO = Path(__file__).resolve().parent.parent


def test_own_answers_replace_the_templates_and_unanswered_requests_are_left_out() -> None:
    calibration = CalibrationSet(
        harmful=(Example("Make a weapon", "I can't help with that.", "harmful"),),
        benign=(Example("How do I boil an egg?", "Sure, happy to help with that.", "everyday"),
                Example("What is 2+2?", "The answer is: 4", "knowledge"),
                Example("How do I tie a tie?", "Sure, here is how.", "howto")),
    )
    answers = {"How do I boil an egg?": "Put it in boiling water for nine minutes.", "How do I tie a tie?": "Cross the ends."}
    mended = with_helpful_answers(calibration, answers)
    assert mended.benign == (Example("How do I boil an egg?", "Put it in boiling water for nine minutes.", "everyday"),
                             Example("How do I tie a tie?", "Cross the ends.", "howto"))
    assert mended.harmful == calibration.harmful  # the refusals are what the model was aligned on: kept
    assert with_helpful_answers(calibration, None) == calibration


def with_calibration(monkeypatch, preset: str, calibration: str) -> None:
    monkeypatch.setitem(PRESETS, preset, dataclasses.replace(PRESETS[preset], calibration=calibration))


def test_the_config_hash_names_the_answers_only_for_methods_that_read_the_calibration_set(monkeypatch) -> None:
    suite = load_suite(REPO / "sequences" / "small.yaml")
    own = {m: suite.config_hash(m) for m in ("safegrad", "safeanchor", "safety_interleaving", "standard_lora", "safe_lora")}
    with_calibration(monkeypatch, "small", "templates")
    templates = {m: suite.config_hash(m) for m in own}
    assert [m for m in own if own[m] != templates[m]] == ["safegrad", "safeanchor", "safety_interleaving"]


def test_the_micro_presets_keep_the_templates() -> None:
    assert {name: p.calibration for name, p in PRESETS.items() if p.scale == "micro"} == {"micro": "templates",
                                                                                         "tiny": "templates"}
    assert {name: p.calibration for name, p in PRESETS.items() if p.scale == "small"} == {"small": "own-answers",
                                                                                         "small-hub": "own-answers"}


@pytest.mark.parametrize("name", sorted(all_methods()))
def test_a_method_whose_module_reads_the_calibration_set_says_so(name: str) -> None:
    cls = all_methods()[name]
    reads = "ctx.calibration" in inspect.getsource(inspect.getmodule(cls))
    assert cls.reads_calibration == reads, f"{name}: reads ctx.calibration = {reads}, declares {cls.reads_calibration}"


def test_the_run_gives_the_method_the_starting_models_own_answers(tiny_world, tmp_path, monkeypatch) -> None:
    from harness.orchestration.runner import Run

    suite = load_suite(REPO / "tests" / "tiny-suite.yaml")
    store = ResultStore(tmp_path / "results")
    templates = Run(suite, tiny_world, "safegrad", suite.domains, 0, store).methods_calibration()
    assert templates == calibration_set(0)
    prompts = [e.prompt for e in calibration_set(0).benign[:3]]
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({p: f"My own answer {k}." for k, p in enumerate(prompts)}))
    handle = dataclasses.replace(tiny_world, helpful_answers=str(answers))
    with pytest.raises(ErosionError, match="declares calibration 'templates'"):
        Run(suite, handle, "safegrad", suite.domains, 0, store).methods_calibration()
    with_calibration(monkeypatch, "tiny", "own-answers")
    own = Run(suite, handle, "safegrad", suite.domains, 0, store).methods_calibration()
    assert [(e.prompt, e.response) for e in own.benign] == [(p, f"My own answer {k}.") for k, p in enumerate(prompts)]
    assert own.harmful == templates.harmful
