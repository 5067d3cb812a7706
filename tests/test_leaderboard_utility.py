"""The utility axis on the leaderboard: tables from R[t][i], and the safety-utility figure as each
section's headline (Markdown and HTML), from a hand-made results folder."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.core.store import Record, ResultStore, RunInfo, make_run_id
from leaderboard import render

ORDER = ("medical", "legal", "code")
START_NLL = (2.0, 3.0, 4.0)
# Per method: the held-out NLL gain on each domain when trained, and its final composite safety.
GAIN = {"standard_lora": 0.6, "safeanchor": 0.3, "no_training": 0.0}
SAFETY = {"standard_lora": 50.0, "safeanchor": 70.0, "no_training": 80.0}


def step_values(method: str, seed: int, step: int) -> dict[str, float]:
    gain = GAIN[method] + (0.06 * seed if method == "standard_lora" else 0.0)
    nll = [start - (gain if i < step else 0.0) for i, start in enumerate(START_NLL)]
    safety = 80.0 - (80.0 - SAFETY[method]) * step / len(ORDER)
    return {"composite/safety": safety, "composite/domain": 40.0 + 2 * step * gain,
            **{f"domain_nll/{d}": v for d, v in zip(ORDER, nll, strict=True)}}


def add_run(store: ResultStore, method: str, seed: int) -> None:
    run_id = make_run_id("micro", method, list(ORDER), seed, "cfg")
    for step in range(len(ORDER) + 1):
        records = [Record("micro", "micro", method, ">".join(ORDER), seed, step, ORDER[step - 1] if step else None,
                          *key.split("/", 1), value, 10, "cfg", 1.0, {})
                   for key, value in step_values(method, seed, step).items()]
        store.write_step(run_id, step, records, {"step": step})
    store.write_run(RunInfo(run_id, "micro", "micro", method, list(ORDER), seed, "cfg", status="done",
                            started_at=1.0, finished_at=2.0, wall_time_s=1.0, versions={}, config={}))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    store = ResultStore(tmp_path_factory.mktemp("utility-board") / "results")
    for method in GAIN:
        for seed in ((0, 1) if method == "standard_lora" else (0,)):
            add_run(store, method, seed)
    return render(store.root)


def test_utility_table_shows_learning_retained_by_hand(rendered):
    payload = json.loads(rendered["json"].read_text())
    rows = {r["method"]: r for r in payload["utility"] if r["measure"] == "nll"}
    # Standard LoRA's seeds gain 0.60 and 0.66 per domain (mean 0.63): 0.3 is 47.6 %.
    assert rows["safeanchor"]["learning_retained"]["mean"] == pytest.approx(100 * 0.3 / 0.63)
    assert rows["no_training"]["learning_retained"]["mean"] == pytest.approx(0.0)
    assert rows["standard_lora"]["learning_retained"]["mean"] == pytest.approx(100.0)
    assert rows["standard_lora"]["plasticity"]["sd"] == pytest.approx(0.06 / 2**0.5)
    markdown = rendered["markdown"].read_text()
    assert "| safeanchor | 1 | 0.300 | 0.300 | 0.300 | 0.300 | 47.6 |" in markdown


def test_headline_figure_opens_each_section(rendered):
    markdown = rendered["markdown"].read_text()
    headings = re.findall(r"^### (.+)$", markdown, flags=re.M)
    assert headings[0] == "Headline: safety against utility" and "Utility (continual learning)" in headings
    image = re.search(r"^!\[Safety against utility.*\]\((plots/safety_utility__.+\.png)\)$", markdown, flags=re.M)
    assert image and (rendered["markdown"].parent / image.group(1)).stat().st_size > 10_000
    html = rendered["html"].read_text()
    headline = html.index('<div class="headline">')
    assert headline < html.index("<table") and html.index("data:image/png;base64,", headline) < html.index("<table")


def test_main_table_shows_learning_retained_and_flags_a_method_that_learns_little(rendered):
    """The main table ranks by safety; beside it, what the safety cost in learning: no_training (0 %) and a
    method keeping 47.6 % of Standard LoRA's learning are flagged, Standard LoRA (100 %) is not."""
    payload = json.loads(rendered["json"].read_text())
    main = {r["method"]: r for r in payload["main"]}
    assert main["safeanchor"]["learning_retained"] == pytest.approx(100 * 0.3 / 0.63)
    assert main["no_training"]["flags"] == ["learns_little (learning retained 0.0% < 50%)"]
    assert main["safeanchor"]["flags"] == ["learns_little (learning retained 47.6% < 50%)"]
    assert main["standard_lora"]["flags"] == [] and main["starting model"]["learning_retained"] is None
    markdown = rendered["markdown"].read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| Method | Rank |"))
    row = next(line for line in markdown.splitlines() if line.startswith("| no_training |"))
    cells = dict(zip(header.split(" | "), row.split(" | "), strict=True))
    assert cells["Learning retained %"] == "0.0" and cells["Flags"].startswith("learns_little")
