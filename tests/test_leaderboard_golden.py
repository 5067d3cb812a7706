"""Same numbers: the stored results folder tests/golden/results, rendered now, gives every number of
the CSV and JSON that the renderer gave when the golden files were written (before the leaderboard
moved onto pandas). Floats agree within 1e-9, NaN equals NaN, an absent number stays absent.

tests/golden/make_results.py says how the folder and the golden files were made.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from leaderboard import render

GOLDEN = Path(__file__).resolve().parent / "golden"
TOLERANCE = 1e-9
# Where and when the page was rendered: not numbers of the results.
VOLATILE_KEYS = ("generated_at", "results_dir")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return render(GOLDEN / "results", tmp_path_factory.mktemp("golden-out"))


def as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def same_scalar(expected: Any, found: Any) -> bool:
    """Equal, with numbers (int or float, not bool) compared within TOLERANCE and NaN equal to NaN."""
    numeric = (int, float)
    if isinstance(expected, numeric) and isinstance(found, numeric) and not isinstance(expected, bool) \
            and not isinstance(found, bool):
        if math.isnan(expected) or math.isnan(found):
            return math.isnan(expected) and math.isnan(found)
        return math.isclose(expected, found, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return type(expected) is type(found) and expected == found


def differences(expected: Any, found: Any, where: str = "") -> list[str]:
    """Every place where two JSON values differ, as "path: expected ... found ..."."""
    if isinstance(expected, dict) and isinstance(found, dict):
        keys = sorted(set(expected) | set(found))
        return [d for k in keys for d in (differences(expected[k], found[k], f"{where}/{k}") if k in expected and k in found
                                          else [f"{where}/{k}: only in {'golden' if k in expected else 'new output'}"])]
    if isinstance(expected, list) and isinstance(found, list):
        if len(expected) != len(found):
            return [f"{where}: {len(expected)} items in golden, {len(found)} now"]
        return [d for i, (e, f) in enumerate(zip(expected, found, strict=True)) for d in differences(e, f, f"{where}[{i}]")]
    return [] if same_scalar(expected, found) else [f"{where}: golden {expected!r}, now {found!r}"]


def csv_cell(text: str) -> Any:
    """A CSV cell as a number where it is one ("nan" included), else its text ("" = absent)."""
    number = as_number(text)
    return text if number is None else number


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        return [{key: csv_cell(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def read_json(path: Path) -> dict[str, Any]:
    payload = json.loads(path.read_text())
    return {key: value for key, value in payload.items() if key not in VOLATILE_KEYS}


def test_csv_equals_golden(rendered: dict[str, Path]) -> None:
    expected, found = read_csv(GOLDEN / "leaderboard.csv"), read_csv(rendered["csv"])
    assert expected, "the golden CSV has rows"
    assert (GOLDEN / "leaderboard.csv").read_text().splitlines()[0] == rendered["csv"].read_text().splitlines()[0]
    assert differences(expected, found) == []


def test_json_equals_golden(rendered: dict[str, Path]) -> None:
    assert differences(read_json(GOLDEN / "leaderboard.json"), read_json(rendered["json"])) == []


def test_golden_folder_exercises_every_table() -> None:
    """The folder is only a good witness if its tables have rows: every JSON table is non-empty
    except the sequence-length one (one T only), and it holds a flag, a failed run and a missing row."""
    golden = read_json(GOLDEN / "leaderboard.json")
    assert all(golden[key] for key in ("main", "ordering_sensitivity", "fisher", "utility", "runs", "plots"))
    assert any(row["flags"] for row in golden["main"]) and any(row["status"] == "failed" for row in golden["runs"])
    assert any(row["absent"] == "missing" and row["final_mean"] is None for row in golden["main"])


def test_comparison_catches_a_changed_number() -> None:
    """The comparison itself: a change past the tolerance, a NaN for a number and a lost key are caught."""
    golden = {"a": [1.0, float("nan"), None], "b": {"c": 2}}
    assert differences(golden, {"a": [1.0 + 1e-12, float("nan"), None], "b": {"c": 2.0}}) == []
    assert differences(golden, {"a": [1.0 + 1e-6, float("nan"), None], "b": {"c": 2}}) == ["/a[0]: golden 1.0, now 1.000001"]
    assert differences(golden, {"a": [1.0, 3.0, None], "b": {}}) == ["/a[1]: golden nan, now 3.0", "/b/c: only in golden"]
    assert differences({"x": None}, {"x": 0.0}) == ["/x: golden None, now 0.0"]
