"""Shipped suites are found by name from any folder (``micro``, ``micro.yaml``, the docs'
``sequences/micro.yaml``), a path always wins, and an unknown name lists the shipped ones. The
wheel's own copy is checked in tests/test_packaging.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.orchestration.config import SUITES_DIR, find_suite, load_suite, shipped_names

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["micro", "micro.yaml", "sequences/micro.yaml"])
def test_a_shipped_suite_is_found_by_name_from_any_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_suite(name) == SUITES_DIR / "micro.yaml"
    assert load_suite(name).name == "micro-paper-order"


def test_the_packaged_suites_are_the_checkouts_sequences_folder() -> None:
    """harness/suites (package data) and sequences/ (what the docs name) are one set of files."""
    assert SUITES_DIR.resolve() == (REPO / "sequences").resolve()
    assert shipped_names() == sorted(p.stem for p in (REPO / "sequences").glob("*.yaml"))


def test_a_path_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "micro.yaml").write_text("name: mine\ninclude: micro\nseeds: [7]\n")
    assert find_suite("micro.yaml") == Path("micro.yaml")
    suite = load_suite("micro.yaml")  # its include: micro is the shipped suite, not itself
    assert (suite.name, suite.seeds) == ("mine", [7])


@pytest.mark.parametrize("given", ["nosuch", "elsewhere/micro.yaml", "scale-micro"])
def test_an_unknown_suite_names_the_shipped_ones(given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder other than sequences/ is a path, not a name; a preset is a fragment, not a suite."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        find_suite(given)
    assert f"Suite file {given} does not exist" in str(err.value)
    assert "Fix: check the path, or name a shipped suite: micro, micro-extended," in str(err.value)
