"""Smoke test of the performance benchmarks (bench/): a --quick run of two cheap items writes
results.json and results.md with the documented schema. Timings are never asserted: the numbers
of a --quick run on shared cores mean nothing."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
STATUSES = ("met", "not met")


def bench(out: Path, only: str) -> dict:
    # The tiny_world fixture has set EROSION_CACHE: the child reuses the world built for this session.
    proc = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", only, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow  # a whole quick bench (~14 s)
def test_quick_bench_writes_the_results_schema(tiny_world, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    results = bench(out, "ssi,gpu")

    assert {"machine", "options", "runs", "items", "targets"} == set(results)
    assert [run["items"] for run in results["runs"]] == [["ssi", "gpu"]]
    assert {"started_at", "wall_s", "load_average_at_start", "load_average_at_end"} <= set(results["runs"][0])
    machine = results["machine"]
    assert machine["cpu_count"] >= 1 and machine["torch_threads"] == 1
    assert {"torch", "transformers", "peft", "lm_eval", "ray"} <= set(machine["versions"])
    assert results["options"] == {"quick": True, "threads": 1, "results": "results", "only": ["ssi", "gpu"]}
    assert list(results["items"]) == ["ssi", "gpu"] and all("wall_s" in s and "error" not in s for s in results["items"].values())

    ssi = results["items"]["ssi"]
    for point in [ssi["paper"], ssi["isotropic_paper"], *ssi["by_n"], *ssi["by_p"]]:
        assert {"n", "p", "rank_k", "seconds", "extra_mib", "peak_rss_mib", "largest_tensor"} <= set(point)
        assert set(point["seconds"]) == {"median", "min", "max", "n"}
        assert point["largest_over_np"] <= 1  # no p x p tensor: a property of the code, not a timing
    assert {"time_vs_p", "memory_vs_p", "time_vs_n", "memory_vs_n"} == set(ssi["loglog_slopes"])
    grads = ssi["per_example_grads"]
    assert grads["max_relative_difference"] < 1e-4 and {"batched_s", "looped_s", "speedup"} <= set(grads)

    targets = {t["id"]: t for t in results["targets"]}
    assert list(targets) == ["2a", "2b", "2c", "6"]
    for target in targets.values():
        assert {"item", "what", "value", "unit", "criterion", "met", "status", "line"} <= set(target)
        assert target["status"] in STATUSES or target["status"].startswith("not measured: ")
        assert target["line"].startswith(target["id"] + " ") and target["status"] in target["line"]
    if not torch.cuda.is_available():
        assert targets["6"]["status"] == "not measured: no GPU" and results["items"]["gpu"]["measured"] is False

    markdown = (out / "results.md").read_text()
    assert "## Targets (issue 7)" in markdown and all(t["line"] in markdown for t in targets.values())

    rerun = bench(out, "gpu")  # --only remeasures one item and keeps the others
    assert list(rerun["items"]) == ["ssi", "gpu"] and rerun["items"]["ssi"] == ssi
    assert [t["id"] for t in rerun["targets"]] == ["2a", "2b", "2c", "6"] and len(rerun["runs"]) == 2


def test_loglog_slope_by_hand_and_unmeasured_points_left_out() -> None:
    from bench.ssi import loglog_slope

    assert loglog_slope([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)
    assert loglog_slope([1, 2, 4], [1, 4, 16]) == pytest.approx(2.0)
    # A 0 MiB reading (below what RSS resolves) is not a measurement of growth.
    assert loglog_slope([8192, 32768, 131072], [0, 250, 1000]) == pytest.approx(1.0)
    assert math.isnan(loglog_slope([1, 2], [0, 5]))


def test_suite_wall_reads_the_suites_runs_from_a_results_folder(tmp_path: Path) -> None:
    from bench.end_to_end import suite_wall
    from harness.core.store import ResultStore, RunInfo
    from harness.orchestration.config import load_suite
    from harness.orchestration.scheduler import job_graph

    suite = load_suite(REPO / "sequences" / "micro.yaml")
    store = ResultStore(tmp_path)
    jobs = job_graph(suite)
    assert suite_wall(tmp_path, suite)["not_done"] == sorted(f"{j.method} s0" for j in jobs)

    # Two at a time: run k starts at 100 + 60 * (k // 2) and takes 50 + k seconds.
    for k, job in enumerate(jobs):
        start = 100.0 + 60 * (k // 2)
        store.write_run(RunInfo(job.run_id(suite), suite.model, "micro", job.method, list(job.ordering), job.seed,
                                suite.config_hash(job.method), status="done", started_at=start, finished_at=start + 50 + k,
                                wall_time_s=50.0 + k))
    wall = suite_wall(tmp_path, suite)
    last = len(jobs) - 1
    assert wall["available"] and wall["span_s"] == pytest.approx(60 * (last // 2) + 50 + last)
    assert wall["runs_sum_s"] == pytest.approx(sum(50 + k for k in range(len(jobs))))

    # Runs of another config (the suite before a settings change) are not this suite's.
    older = load_suite(REPO / "sequences" / "micro.yaml", {"training": {"max_steps": 150}})
    assert older.config_hash("standard_lora") != suite.config_hash("standard_lora")
    assert not suite_wall(tmp_path, older)["available"]
