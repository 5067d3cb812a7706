"""Ray scheduling: one task per run; a killed worker fails only its run; the rerun completes it;
no Ray processes are left behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.store import ResultStore

REPO = Path(__file__).resolve().parent.parent


def ray_processes() -> set[str]:
    """PIDs of Ray's daemons (another suite may run its own cluster beside the test's)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return {line.split()[0] for line in out if "raylet" in line or "gcs_server" in line}


@pytest.mark.slow
def test_killed_worker_fails_only_its_run_and_rerun_completes(tmp_path: Path, tiny_world) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: ray\ninclude: {REPO / 'tests' / 'tiny-suite.yaml'}\n"
                     "methods: [standard_lora, safety_interleaving]\nmax_retries: 0\n")
    before = ray_processes()
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite), "--results", str(tmp_path / "r"), "--executor", "ray",
           "--no-leaderboard"]
    env = {**os.environ, "EROSION_KILL_AT": "train_step:2", "EROSION_KILL_RUN": "safety_interleaving"}
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stderr[-2000:]
    status = {i.method: i.status for i in ResultStore(tmp_path / "r", create=False).runs()}
    assert status == {"standard_lora": "done", "safety_interleaving": "failed"}
    assert ray_processes() <= before  # the test's local cluster was shut down
    second = subprocess.run(cmd, cwd=REPO, env={**os.environ, "EROSION_KILL_AT": ""}, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 run(s) done" in second.stdout  # only the failed run was redone
    status = {i.method: i.status for i in ResultStore(tmp_path / "r", create=False).runs()}
    assert status == {"standard_lora": "done", "safety_interleaving": "done"}
