"""Kill-and-resume: a run SIGKILLed at any point resumes to exactly the uninterrupted numbers,
without redoing finished steps; a rerun of a finished suite does nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.store import ResultStore

pytestmark = pytest.mark.slow  # each test runs and kills real runs (10-30 s each; `make test` and CI run them)

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "tests" / "tiny-suite.yaml"


def run_suite(results: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EROSION_KILL_AT": kill_at or ""}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(SUITE), "--results", str(results), "--executor", "local",
           "--no-leaderboard"]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def numbers(results: Path) -> list[tuple]:
    return [(r["step"], r["benchmark"], r["metric"], r["value"]) for r in ResultStore(results, create=False).records()]


@pytest.fixture(scope="module")
def reference(tiny_world, tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    results = tmp_path_factory.mktemp("reference")
    assert run_suite(results).returncode == 0
    return numbers(results)


def kill_then_resume(tmp_path: Path, kill_at: str) -> Path:
    killed = run_suite(tmp_path, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = run_suite(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return tmp_path


def test_kill_during_training_resumes_to_same_numbers(reference: list[tuple], tmp_path: Path) -> None:
    # The tiny suite trains 3 steps per domain: the 5th step is inside the second domain.
    results = kill_then_resume(tmp_path, "train_step:5")
    assert numbers(results) == reference


def test_resume_skips_finished_steps(reference: list[tuple], tmp_path: Path) -> None:
    run_suite(tmp_path, "train_step:5")
    store = ResultStore(tmp_path, create=False)
    (run_id,) = store.run_ids()
    first = store.step_path(run_id, 0).stat().st_mtime_ns, store.step_path(run_id, 1).stat().st_mtime_ns
    assert run_suite(tmp_path).returncode == 0
    assert (store.step_path(run_id, 0).stat().st_mtime_ns, store.step_path(run_id, 1).stat().st_mtime_ns) == first
    assert store.read_run(run_id).status == "done"
    again = run_suite(tmp_path)
    assert "everything was already done" in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["after_benchmark:4", "checkpoint:2", "before_rename:6", "before_write:9", "train_step:1"])
def test_kill_anywhere_resumes_to_same_numbers(reference: list[tuple], tmp_path: Path, kill_at: str) -> None:
    assert numbers(kill_then_resume(tmp_path, kill_at)) == reference


def test_two_suites_on_one_results_folder(reference: list[tuple], tmp_path: Path) -> None:
    """Concurrent suites share the work through per-run locks: no corruption, no duplicate run."""
    env = {**os.environ, "EROSION_KILL_AT": ""}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(SUITE), "--results", str(tmp_path), "--executor", "local",
           "--no-leaderboard"]
    first = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert numbers(tmp_path) == reference  # each step written once, nothing interleaved
    store = ResultStore(tmp_path, create=False)
    assert [i.status for i in store.runs()] == ["done"]
    if run_suite(tmp_path).returncode != 0:
        raise AssertionError("a rerun after both finished must find everything done")
