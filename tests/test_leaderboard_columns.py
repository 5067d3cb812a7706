"""Columns are declared once: one declaration added to the main table reaches all five outputs
(Markdown, terminal, HTML, CSV, JSON), and its outputs set really decides where it shows."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from leaderboard import render, tables, terminal_table
from leaderboard.columns import EVERYWHERE, SHOWN, Cell, Column

GOLDEN_RESULTS = Path(__file__).resolve().parent / "golden" / "results"


def probe(outputs: frozenset[str]) -> Column:
    """Seeds done times 10 under the header "Probe": a number every row has, easy to check by hand."""
    return Column("probe", "Probe", lambda r: Cell(f"P{r.seeds_done * 10}", r.seeds_done),
                  lambda r: r.seeds_done * 10, outputs, compact=True)


def render_with(column: Column, monkeypatch: pytest.MonkeyPatch, out: Path) -> dict[str, Any]:
    declared = tables.main_columns
    monkeypatch.setattr(tables, "main_columns", lambda rows: [*declared(rows), column])
    paths = render(GOLDEN_RESULTS, out)
    with paths["csv"].open() as handle:
        csv_rows = list(csv.DictReader(handle))
    return {"markdown": paths["markdown"].read_text(), "html": paths["html"].read_text(), "csv": csv_rows,
            "json": json.loads(paths["json"].read_text())["main"], "terminal": terminal_table(GOLDEN_RESULTS)}


def test_one_declaration_reaches_all_five_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = render_with(probe(EVERYWHERE), monkeypatch, tmp_path)
    # The fixture's Standard LoRA has 2 seeds done in each ordering: 20 in every output.
    lora = [row for row in found["json"] if row["method"] == "standard_lora"]
    assert [row["probe"] for row in lora] == [20, 20]
    assert [row["probe"] for row in found["csv"] if row["method"] == "standard_lora"] == ["20", "20"]
    assert re.search(r"^\| Method \|.* \| Probe \|$", found["markdown"], flags=re.M)
    assert re.search(r"^\| standard_lora \|.* \| P20 \|$", found["markdown"], flags=re.M)
    assert re.search(r"^Method .* Probe$", found["terminal"], flags=re.M) and "P20" in found["terminal"]
    # The full HTML table and, being compact, the first-screen one: a header and a sortable cell each.
    assert found["html"].count('<th scope="col">Probe</th>') == 2 * 2  # two orderings
    assert '<td data-sort="2">P20</td>' in found["html"]


def test_outputs_set_decides_where_it_shows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = render_with(probe(SHOWN), monkeypatch, tmp_path)
    assert "| Probe |" in found["markdown"] and "Probe" in found["terminal"] and "<th scope=\"col\">Probe</th>" in found["html"]
    assert all("probe" not in row for row in found["json"]) and all("probe" not in row for row in found["csv"])
