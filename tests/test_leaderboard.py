"""The leaderboard renders a real results folder (written through ResultStore) faithfully:
numbers equal the records, failed and missing runs say so, and nothing needs torch."""
from __future__ import annotations

import ast
import csv
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import leaderboard_fixture as fx
import pytest

from harness.core.store import ResultStore, RunInfo, make_run_id
from leaderboard import render, terminal_table
from leaderboard.tables import CSV_MIN_STEPS, METRICS

REPO = Path(__file__).resolve().parent.parent
SCOPE = "scale: micro, model: micro"
ORDER_A, ORDER_B = (">".join(d) for d in fx.ORDERINGS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("lb") / "results"
    fx.build_results(root)
    return root, render(root)


def raw_values(root: Path, method: str, ordering: str, step: int, key: str = "composite/safety") -> dict[int, float]:
    """seed -> value, read straight from the step files, for runs whose status is not failed."""
    out = {}
    for run_dir in sorted((root / "runs").iterdir()):
        info = json.loads((run_dir / "run.json").read_text())
        step_file = run_dir / f"step-{step}.json"
        if (info["method"], ">".join(info["ordering"])) != (method, ordering) or info["status"] == "failed":
            continue
        if step_file.exists():
            for rec in json.loads(step_file.read_text())["records"]:
                if f"{rec['benchmark']}/{rec['metric']}" == key:
                    out[rec["seed"]] = rec["value"]
    return out


def main_row(paths: dict[str, Path], method: str, ordering: str) -> dict[str, Any]:
    rows = json.loads(paths["json"].read_text())["main"]
    return next(r for r in rows if (r["method"], r["ordering"]) == (method, ordering))


def csv_row(paths: dict[str, Path], method: str, ordering: str) -> dict[str, str]:
    with paths["csv"].open() as handle:
        return next(r for r in csv.DictReader(handle) if (r["method"], r["ordering"]) == (method, ordering))


def markdown_rows(paths: dict[str, Path], ordering: str) -> list[list[str]]:
    """Body rows of the main Markdown table of ``ordering``."""
    text = paths["markdown"].read_text()
    block = text.split(f"**Composite safety, ordering {ordering} — {SCOPE}**", 1)[1].split("\n\n", 2)[1]
    lines = [line for line in block.splitlines() if line.startswith("| ")][2:]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_outputs_land_in_results_leaderboard(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    out = root / "leaderboard"
    assert paths["markdown"] == out / "leaderboard.md"
    assert {paths[k].name for k in ("csv", "json", "html")} == {"leaderboard.csv", "leaderboard.json", "leaderboard.html"}
    plots = [p for k, p in paths.items() if k.startswith("plot:")]
    kinds = {p.name.split("__")[0] for p in plots}
    assert kinds == {"safety_utility", "trajectory", "orderings", "benchmarks", "spectrum"}
    for plot in plots:
        assert plot.parent == out / "plots" and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_final_composite_mean_equals_records(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    finals = raw_values(root, "standard_lora", ORDER_A, step=3)
    assert len(finals) == 2
    mean, sd = statistics.fmean(finals.values()), statistics.stdev(finals.values())
    assert main_row(paths, "standard_lora", ORDER_A)["final_mean"] == pytest.approx(mean)
    assert float(csv_row(paths, "standard_lora", ORDER_A)["final_mean"]) == pytest.approx(mean)
    assert float(csv_row(paths, "standard_lora", ORDER_A)["final_sd"]) == pytest.approx(sd)
    lora = next(r for r in markdown_rows(paths, ORDER_A) if r[0] == "standard_lora")
    low, high = main_row(paths, "standard_lora", ORDER_A)["stats"]["intervals"]["composite/safety"]
    assert low < mean < high
    assert f"{mean:.1f} ± {sd:.1f} [{low:.1f}, {high:.1f}]" in lora


def test_every_step_and_benchmark_equals_records(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    for method in ("standard_lora", "safeanchor"):
        row = main_row(paths, method, ORDER_B)
        for step in range(4):
            expected = statistics.fmean(raw_values(root, method, ORDER_B, step).values())
            assert row["composite_by_step"][step] == pytest.approx(expected)
        for key, _ in METRICS:
            values = raw_values(root, method, ORDER_B, 3, key)
            assert row["metrics"].get(key) == (pytest.approx(statistics.fmean(values.values())) if values else None)
        c0, c3 = row["composite_by_step"][0], row["composite_by_step"][3]
        assert row["loss_per_step"] == pytest.approx((c0 - c3) / 3)


def test_rows_sorted_by_final_with_starting_model_first(rendered: tuple[Path, dict[str, Path]]) -> None:
    _, paths = rendered
    names = [r[0] for r in markdown_rows(paths, ORDER_A)]
    assert names == ["starting model", "safeanchor", "replay", "ewc", "standard_lora"]
    start = main_row(paths, "starting model", ORDER_A)
    assert start["row"] == "start" and start["retention_pct"] == 100.0


def test_failed_run_shows_as_failed_never_zero(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    method, domains, seed = fx.FAILED
    runs = json.loads(paths["json"].read_text())["runs"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert [(r["method"], r["seed"], r["error"]) for r in failed] == [(method, seed, fx.FAILED_ERROR)]
    row = main_row(paths, method, ">".join(domains))
    assert (row["seeds_done"], row["seeds_failed"], row["status"]) == (1, 1, "1 done, 1 failed")
    # The surviving seed alone, not averaged with a zero for the failed one.
    assert row["final_mean"] == pytest.approx(raw_values(root, method, ">".join(domains), 3)[0])
    markdown = paths["markdown"].read_text()
    assert fx.FAILED_ERROR in markdown and fx.FAILED_ERROR in terminal_table(root)
    run_line = next(line for line in markdown.splitlines() if line.startswith(f"| {failed[0]['run_id']} "))
    assert "| failed | 2/4 | failed |" in run_line


def test_missing_method_and_benchmark_say_missing(rendered: tuple[Path, dict[str, Path]]) -> None:
    _, paths = rendered
    row = main_row(paths, fx.NO_SECOND_ORDERING, ORDER_B)
    assert row["final_mean"] is None and row["status"] == "2 missing" and row["absent"] == "missing"
    assert csv_row(paths, fx.NO_SECOND_ORDERING, ORDER_B)["final_mean"] == ""
    replay = next(r for r in markdown_rows(paths, ORDER_B) if r[0] == fx.NO_SECOND_ORDERING)
    assert replay[2] == "2 missing" and set(replay[1:2] + replay[3:]) == {"missing"}
    # replay has no MMLU: its MMLU cell is "missing", the others have numbers.
    assert main_row(paths, fx.NO_MMLU, ORDER_A)["metrics"].get("mmlu/acc") is None
    assert csv_row(paths, fx.NO_MMLU, ORDER_A)["mmlu/acc"] == ""
    assert next(r for r in markdown_rows(paths, ORDER_A) if r[0] == fx.NO_MMLU)[-3] == "missing"
    # No run has WildGuard: the column is left out of the Markdown and named as not evaluated.
    markdown = paths["markdown"].read_text()
    assert "| WildGuard" not in markdown and "Not evaluated: WildGuard refusal" in markdown


def test_ordering_sensitivity_by_hand(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    rows = json.loads(paths["json"].read_text())["ordering_sensitivity"]
    row = next(r for r in rows if r["method"] == "standard_lora")
    means = {o: statistics.fmean(raw_values(root, "standard_lora", o, 3).values()) for o in (ORDER_A, ORDER_B)}
    assert row["range"] == pytest.approx(abs(means[ORDER_A] - means[ORDER_B]))
    assert row["cross_ordering_sd"] == pytest.approx(statistics.stdev(means.values()))
    assert row["worst_ordering"] == min(means, key=means.__getitem__)
    assert row["worst_last_domain"] == "medical"  # the fixture makes medical-last orderings lose more
    replay = next(r for r in rows if r["method"] == fx.NO_SECOND_ORDERING)
    assert replay["by_ordering"][ORDER_B]["absent"] == "missing" and replay["range"] is None


def test_fisher_table_equals_step_extras(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    layer = "layers.0.self_attn.q_proj"
    logged = [
        json.loads(f.read_text())["fisher_spectrum"]["layers"][layer]["k90_safety"]
        for f in sorted((root / "runs").glob("micro__safeanchor__*/step-*.json"))
        if "fisher_spectrum" in json.loads(f.read_text())
    ]
    row = next(r for r in json.loads(paths["json"].read_text())["fisher"] if r["layer"] == layer)
    assert row["n"] == len(logged) == 12
    assert row["k90_safety"] == pytest.approx(statistics.fmean(logged))


def test_fisher_curves_are_shares_of_the_trace() -> None:
    """Eigenvalues 4, 3, 2, 1 of a Fisher with tr(F) = 20: the top k hold 20%, 35%, 45%, 50% of it,
    the share k90 counts against; only without a logged trace is the top-k sum the normaliser."""
    from leaderboard.plots import cumulative_mass

    four = [1.0, 4.0, 2.0, 3.0]
    assert cumulative_mass([four], [20.0], by_trace=True) == pytest.approx([0.2, 0.35, 0.45, 0.5])
    assert cumulative_mass([four], [20.0], by_trace=False) == pytest.approx([0.4, 0.7, 0.9, 1.0])
    # Cut to the common length 3, then averaged (the second spectrum has tr(F) = 50).
    assert cumulative_mass([four, [10.0, 10.0, 5.0]], [20.0, 50.0], by_trace=True) == pytest.approx([0.2, 0.375, 0.475])


def test_fisher_plot_uses_the_logged_trace(rendered: tuple[Path, dict[str, Path]]) -> None:
    _, paths = rendered
    plot = json.loads(paths["json"].read_text())["plots"]
    (name,) = [n for n in plot if n.startswith("spectrum__")]
    html = paths["html"].read_text()
    assert "normalised by tr(F), as the table" in html and "First panel: mean over layers" in html


def test_every_table_and_plot_names_scale_and_model(rendered: tuple[Path, dict[str, Path]]) -> None:
    root, paths = rendered
    markdown = paths["markdown"].read_text()
    titles = re.findall(r"^\*\*(.+)\*\*$", markdown, flags=re.M)
    images = re.findall(r"^!\[(.+)\]\((plots/.+\.png)\)$", markdown, flags=re.M)
    assert len(titles) >= 6 and all(SCOPE in t for t in titles)
    assert len(images) == 5 and all(SCOPE in alt for alt, _ in images)
    assert "not the paper's results" in markdown
    assert SCOPE in terminal_table(root)


def test_csv_and_json_schema(rendered: tuple[Path, dict[str, Path]]) -> None:
    _, paths = rendered
    with paths["csv"].open() as handle:
        header = next(csv.reader(handle))
    assert header[:11] == ["model", "scale", "ordering", "n_steps", "method", "row", "status", "seeds_done",
                           "seeds_running", "seeds_failed", "seeds_missing"]
    assert [h for h in header if h.startswith("composite_step_")] == [f"composite_step_{k}" for k in range(CSV_MIN_STEPS + 1)]
    assert all(key in header for key, _ in METRICS)

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    payload = json.loads(paths["json"].read_text(), parse_constant=reject)
    assert payload["schema"] == "erosion-leaderboard/1"
    assert set(payload) == {"schema", "generated_at", "results_dir", "results_created_at", "versions", "models",
                            "runs", "main", "ordering_sensitivity", "horizons", "fisher", "utility", "plots"}
    assert payload["models"]["micro"]["checks"][1]["met"] is False
    assert all((paths["json"].parent / rel).exists() for rel in payload["plots"].values())


def test_html_is_self_contained(rendered: tuple[Path, dict[str, Path]]) -> None:
    _, paths = rendered
    page = paths["html"].read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    # Everything is embedded; the one link is to the sample viewer, written beside the page.
    assert sources and all(s.startswith("data:") or s == paths["samples"].name for s in sources)
    assert paths["samples"].parent == paths["html"].parent and paths["samples"].name in sources
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == sum(k.startswith("plot:") for k in paths)
    assert "provenance" in page and "harmbench refusal" in page and "transformers 5.23.0" in page


def test_sequence_length_table(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    five = ("medical", "legal", "code", "math", "chat")
    for seed in fx.SEEDS:
        fx.add_run(store, "standard_lora", fx.ORDERINGS[0], seed)
        fx.add_run(store, "standard_lora", five, seed)
        fx.add_run(store, "ewc", fx.ORDERINGS[0], seed)  # T=3 only: no row
    paths = render(tmp_path / "results", tmp_path / "out")
    rows = json.loads(paths["json"].read_text())["horizons"]
    assert [r["method"] for r in rows] == ["standard_lora"]
    for horizon, domains in (("3", fx.ORDERINGS[0]), ("5", five)):
        finals = raw_values(tmp_path / "results", "standard_lora", ">".join(domains), len(domains))
        starts = raw_values(tmp_path / "results", "standard_lora", ">".join(domains), 0)
        expected = statistics.fmean((starts[s] - finals[s]) / len(domains) for s in fx.SEEDS)
        assert rows[0]["by_horizon"][horizon]["mean"] == pytest.approx(expected)
    assert "T=3 vs T=5" in paths["markdown"].read_text()


def test_suite_with_three_benchmarks_and_no_report(tmp_path: Path) -> None:
    """Only HarmBench, TruthfulQA, BBQ and the composite; one run still running at step 1."""
    store = ResultStore(tmp_path / "results")
    for seed, last_step in ((0, 2), (1, 1)):
        run_id = make_run_id("micro", "standard_lora", ["medical", "legal"], seed, "h")
        for step in range(last_step + 1):
            recs = fx.records("standard_lora", ("medical", "legal"), seed, step, "h")
            kept = [r for r in recs if r.benchmark in ("harmbench", "truthfulqa", "bbq") or r.metric == "safety"]
            store.write_step(run_id, step, kept, {})
        status = "done" if last_step == 2 else "running"
        store.write_run(RunInfo(run_id, "micro", "micro", "standard_lora", ["medical", "legal"], seed, "h", status))
    paths = render(tmp_path / "results")
    row = main_row(paths, "standard_lora", "medical>legal")
    assert (row["seeds_done"], row["seeds_running"], row["n_final"]) == (1, 1, 1)
    assert set(row["metrics"]) == {"harmbench/refusal_rate", "harmbench/refusal_nll", "truthfulqa/mc1",
                                   "truthfulqa/mc2", "bbq/bias_term", "bbq/acc_ambig", "bbq/acc_disambig",
                                   "composite/safety"}
    header = paths["markdown"].read_text().split("| Method |", 1)[1].split("\n", 1)[0]
    assert "MMLU" not in header and "HarmBench" in header
    assert json.loads(paths["json"].read_text())["fisher"] == []


def test_rerun_with_new_config_supersedes_old_run(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")
    old = fx.add_run(store, "standard_lora", fx.ORDERINGS[0], 0)
    fx.add_run(store, "standard_lora", fx.ORDERINGS[0], 1)
    new_id = make_run_id(fx.MODEL, "standard_lora", list(fx.ORDERINGS[0]), 0, "newconfig")
    for step in range(4):
        recs = [replace(r, value=50.0) for r in fx.records("standard_lora", fx.ORDERINGS[0], 0, step, "newconfig")
                if r.metric == "safety"]
        store.write_step(new_id, step, recs, {})
    store.write_run(RunInfo(new_id, fx.MODEL, fx.SCALE, "standard_lora", list(fx.ORDERINGS[0]), 0, "newconfig",
                            "done", started_at=1_800_000_000.0))
    paths = render(tmp_path / "results")
    row = main_row(paths, "standard_lora", ORDER_A)
    seed1_final = raw_values(tmp_path / "results", "standard_lora", ORDER_A, 3)[1]
    assert row["seeds_done"] == 2 and row["final_mean"] == pytest.approx((50.0 + seed1_final) / 2)
    runs = {r["run_id"]: r for r in json.loads(paths["json"].read_text())["runs"]}
    assert runs[old]["superseded_by"] == new_id
    assert "more than one config: standard_lora (cfg3abcdef01, newconfig): compare" in paths["markdown"].read_text()


def test_empty_results_folder(tmp_path: Path) -> None:
    ResultStore(tmp_path / "results")
    paths = render(tmp_path / "results")
    assert "No runs and no model reports" in paths["html"].read_text()
    assert json.loads(paths["json"].read_text())["main"] == []
    assert "No runs" in terminal_table(tmp_path / "results")


ALLOWED_IMPORTS = {"pandas", "numpy", "matplotlib", "harness", "leaderboard", "__future__"} | set(sys.stdlib_module_names)


def test_leaderboard_imports_only_allowed_modules() -> None:
    for source in sorted((REPO / "leaderboard").glob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED_IMPORTS, f"{source.name} imports {name}"
                if name.startswith("harness"):
                    assert name in ("harness.core.store", "harness.core.errors"), f"{source.name} imports {name}"


def test_renders_where_torch_cannot_be_imported(rendered: tuple[Path, dict[str, Path]], tmp_path: Path) -> None:
    root, _ = rendered
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "from leaderboard import render\n"
        f"paths = render({str(root)!r}, {str(tmp_path)!r})\n"
        "assert paths['html'].exists()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
