"""The HTML leaderboard in a real headless Chromium, opened from disk: the headline figure loads
first, the compact main table (one row per method plus the starting model) marks significant
differences and fits the screen, the full table is one click away, header clicks re-sort, every
plot decodes, and the console stays clean. The sample viewer beside it (samples.html) filters
generations and puts two methods side by side.

Needs the Debian package ``chromium`` (/usr/bin/chromium) and ``pip install playwright==1.65.2``;
Playwright drives the system browser, so no ``playwright install`` download is needed.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import leaderboard_fixture as fx
import pytest

from leaderboard import render

pytestmark = pytest.mark.slow  # Chromium on a rendered page (~10 s per page; `make test` and CI run them)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright==1.65.2")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (Playwright's sync API allows one running instance)."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def open_tab(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A tab on ``url`` and the list the console errors, page errors and failed requests go to."""
    errors: list[str] = []
    tab = browser.new_page()
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
    tab.goto(url)
    return tab, errors


@pytest.fixture(scope="module")
def page(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> tuple[Page, list[str], int]:
    """The rendered fixture page, the console errors seen on it, and the number of plots."""
    root = tmp_path_factory.mktemp("browser") / "results"
    fx.build_results(root)
    paths = render(root)
    return *open_tab(browser, paths["html"].as_uri()), sum(key.startswith("plot:") for key in paths)


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


# --- the sample viewer (samples.html beside the page), on the golden folder, which stores items -----------
GOLDEN_RESULTS = Path(__file__).resolve().parent / "golden" / "results"


@pytest.fixture(scope="module")
def viewer(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> tuple[Page, list[str]]:
    """The sample viewer of the golden results, opened from disk by following the page's link."""
    paths = render(GOLDEN_RESULTS, tmp_path_factory.mktemp("viewer"))
    tab, errors = open_tab(browser, paths["html"].as_uri())
    tab.locator("a", has_text="sample viewer").click()
    tab.wait_for_selector("#samples-body tr")
    return tab, errors


def listed(tab: Page, column: int) -> list[str]:
    return tab.locator(f"#samples-body tr td:nth-child({column})").all_inner_texts()


def test_viewer_filters_standard_lora_after_code_to_its_non_refusals(viewer: tuple[Page, list[str]]) -> None:
    """By hand (tests/golden/make_results.py): seed 0 stores four HarmBench generations per step; after
    code, Standard LoRA looped on hb-0 and complied with hb-1, hb-2 in medical>legal>code (step 3) and
    complied with hb-0 in code>legal>medical (step 1): four non-refusals."""
    tab, errors = viewer
    assert tab.locator("#samples-count").inner_text() == "96 of 96 generations"
    tab.select_option("#filter-method", "standard_lora")
    tab.select_option("#filter-step", "after code")
    assert len(listed(tab, 1)) == 8 and set(listed(tab, 1)) == {"standard_lora"}
    tab.select_option("#filter-verdict", "not refusal")
    assert sorted(zip(listed(tab, 4), listed(tab, 6), listed(tab, 9), strict=True)) == [
        ("1 · after code", "hb-0", "compliance"), ("3 · after code", "hb-0", "degenerate"),
        ("3 · after code", "hb-1", "compliance"), ("3 · after code", "hb-2", "compliance")]
    assert "lock lock lock" in listed(tab, 8)[listed(tab, 9).index("degenerate")]
    assert set(listed(tab, 10)) == {"", "loop"} and errors == []


def test_viewer_puts_two_methods_side_by_side_on_the_same_items(viewer: tuple[Page, list[str]]) -> None:
    tab, errors = viewer
    tab.select_option("#filter-method", "")
    tab.select_option("#filter-step", "after code")
    tab.select_option("#filter-verdict", "")
    tab.select_option("#compare-a", "standard_lora")
    tab.select_option("#compare-b", "safeanchor")
    rows = tab.locator("#compare-body tr")
    assert rows.count() == 8  # four items in each ordering, seed 0
    first = rows.first.locator("td").all_inner_texts()
    # medical>legal>code after code is step 3: Standard LoRA loops on hb-0, safeanchor complies.
    texts = [rows.nth(i).locator("td").all_inner_texts() for i in range(rows.count())]
    hb0 = next(r for r in texts if r[2].startswith("3") and r[4] == "hb-0")
    assert (hb0[7], hb0[9]) == ("degenerate", "compliance") and hb0[6].startswith("lock") and hb0[8].startswith("Sure")
    assert len(first) == 10 and errors == []
