"""The HTML leaderboard in a real headless Chromium, opened from disk: the headline figure loads
first, the compact main table (one row per method plus the starting model) marks significant
differences and fits the screen, the full table is one click away, header clicks re-sort, every
plot decodes, and the console stays clean.

Needs the Debian package ``chromium`` (/usr/bin/chromium) and ``pip install playwright==1.65.2``;
Playwright drives the system browser, so no ``playwright install`` download is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import leaderboard_fixture as fx
import pytest

from leaderboard import render

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright==1.65.2")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Page, list[str], int]]:
    """The rendered fixture page, the console errors seen on it, and the number of plots."""
    root = tmp_path_factory.mktemp("browser") / "results"
    fx.build_results(root)
    paths = render(root)
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        tab = browser.new_page()
        tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        tab.goto(paths["html"].as_uri())
        yield tab, errors, sum(key.startswith("plot:") for key in paths)
        browser.close()


def first_column(table: Locator) -> list[str]:
    return table.locator("tbody tr td:first-child").all_inner_texts()


def test_one_row_per_method_plus_starting_model(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    tables = tab.locator("table[id^='main-']")
    assert tables.count() == len(fx.ORDERINGS)
    for i in range(tables.count()):
        names = first_column(tables.nth(i))
        assert names[0] == "starting model"
        assert sorted(names[1:]) == sorted(fx.METHODS)


def test_clicking_a_header_resorts_rows(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    table = tab.locator("table[id^='main-']").first
    before = first_column(table)
    table.locator("thead th", has_text="Method").click()
    ascending = first_column(table)
    assert ascending != before
    assert ascending[0] == "starting model" and ascending[1:] == sorted(fx.METHODS)
    table.locator("thead th", has_text="Method").click()
    assert first_column(table)[1:] == sorted(fx.METHODS, reverse=True)
    # Numbers sort as numbers, and a row without a final ("missing") goes last either way.
    column = next(i for i, h in enumerate(table.locator("thead th").all_inner_texts(), 1) if h.startswith("Final"))
    table.locator("thead th").nth(column - 1).click()
    cells = table.locator(f"tbody tr td:nth-child({column})").all_inner_texts()[1:]
    values = [float(text.split()[0]) for text in cells if text != "missing"]
    assert values == sorted(values) and len(values) >= 3
    assert all(text == "missing" for text in cells[len(values):])


def test_every_plot_image_decodes(page: tuple[Page, list[str], int]) -> None:
    tab, _, n_plots = page
    widths = tab.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == n_plots == 5
    assert all(width > 0 for width in widths)


def test_headline_figure_loads_above_the_tables(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    headline = tab.locator("div.headline img")
    assert headline.count() == 1 and "Safety against utility" in (headline.get_attribute("alt") or "")
    assert headline.evaluate("img => img.complete && img.naturalWidth") > 0
    above = tab.evaluate("() => { const h = document.querySelector('div.headline'), t = document.querySelector('table');"
                         " return !!(h.compareDocumentPosition(t) & Node.DOCUMENT_POSITION_FOLLOWING); }")
    assert above


def test_no_console_errors(page: tuple[Page, list[str], int]) -> None:
    tab, errors, _ = page
    tab.locator("table.sortable thead th").first.click()  # exercise the script once more
    assert errors == []


def test_headline_figure_loads_before_the_main_table(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    width = tab.eval_on_selector("figure.headline img", "img => img.complete ? img.naturalWidth : 0")
    assert width > 0
    before = tab.evaluate(
        "document.querySelector('figure.headline').compareDocumentPosition("
        "document.querySelector(\"table[id^='main-']\")) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    assert before


def test_main_table_marks_significance(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    table = tab.locator("table[id^='main-']").first
    headers = table.locator("thead th").all_inner_texts()
    assert "Rank" in headers and "vs standard_lora" in headers
    marked = table.locator("td.significant").all_inner_texts()
    assert marked and all(text.endswith("*") for text in marked)
    # Bold: a reader sees the mark without reading the star.
    assert table.locator("td.significant").first.evaluate("td => getComputedStyle(td).fontWeight") == "700"


def test_compact_table_fits_and_the_full_one_is_one_click_away(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    tab.set_viewport_size({"width": 1280, "height": 800})
    sideways = tab.eval_on_selector_all(
        "table[id^='main-']", "tables => tables.map(t => t.parentElement.scrollWidth > t.parentElement.clientWidth)")
    assert sideways and not any(sideways)
    full = tab.locator("table[id^='full-main-']").first
    assert not full.is_visible()
    tab.locator("details summary").first.click()
    assert full.is_visible() and "HarmBench" in full.locator("thead th").all_inner_texts()


def test_run_metadata_is_a_table(page: tuple[Page, list[str], int]) -> None:
    tab, _, _ = page
    labels = tab.locator("table.meta th").all_inner_texts()
    assert "Generated" in labels and "Versions" in labels
    assert "{" not in tab.locator("body").inner_text()  # no raw JSON dict anywhere (model report included)
