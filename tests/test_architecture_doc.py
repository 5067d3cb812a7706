"""docs/architecture.md names every module of harness/ once, in the layer tests/test_layers.py
enforces, and every path it names exists."""
from __future__ import annotations

import re
from pathlib import Path

from tests.test_layers import layer

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
ROW = re.compile(r"^\| `(harness/[\w/]+\.py)` \| (\d) \|", re.MULTILINE)


def documented_modules(text: str) -> dict[str, int]:
    rows = ROW.findall(text)
    paths = [path for path, _ in rows]
    assert len(paths) == len(set(paths)), f"{DOC}: a module is listed twice"
    return {path: int(height) for path, height in rows}


def existing_modules() -> set[str]:
    return {str(p.relative_to(REPO)) for p in (REPO / "harness").rglob("*.py") if p.name != "__init__.py"}


def test_every_module_of_harness_is_documented_and_nothing_else() -> None:
    documented = set(documented_modules(DOC.read_text()))
    existing = existing_modules()
    assert sorted(existing - documented) == [], "add a row for each to the module table of docs/architecture.md"
    assert sorted(documented - existing) == [], "docs/architecture.md lists modules that do not exist: remove their rows"


def test_each_documented_layer_is_the_one_the_import_check_enforces() -> None:
    for path, height in documented_modules(DOC.read_text()).items():
        module = path.removesuffix(".py").replace("/", ".")
        enforced = layer(module)[0]
        assert height == enforced, f"docs/architecture.md puts {path} in layer {height}; tests/test_layers.py in {enforced}"


def test_every_path_the_doc_names_exists() -> None:
    named = re.findall(r"`((?:harness|methods|benchmarks|leaderboard|sequences|tests)/[\w/.-]*)`", DOC.read_text())
    assert named, "the pattern finds the doc's paths"
    assert [path for path in named if not (REPO / path).exists()] == []
