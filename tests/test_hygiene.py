"""Resource hygiene: a suite leaves no temporary files and no open file descriptors behind
(Ray processes: tests/test_ray.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run

pytestmark = pytest.mark.slow  # whole runs watched for leftovers (10-15 s each; `make test` and CI run them)

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny-suite.yaml"


def test_suite_leaves_no_temporary_files(tmp_path: Path, tiny_world) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    cmd = [sys.executable, "-m", "harness.cli", "run", str(TINY), "--results", str(tmp_path / "r"), "--executor", "local"]
    result = subprocess.run(cmd, cwd=REPO, env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in scratch.iterdir()) == []
    leftovers = [p for p in (tmp_path / "r").rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert leftovers == []


def test_runs_leave_no_open_files(tmp_path: Path, tiny_world) -> None:
    suite = load_suite(TINY)
    store = ResultStore(tmp_path / "r")
    Run(suite, tiny_world, "standard_lora", suite.domains, 0, store).execute()  # warm-up: lazy library loads
    before = len(os.listdir("/proc/self/fd"))
    info = Run(suite, tiny_world, "standard_lora", suite.domains, 1, store).execute()
    assert info.status == "done"
    assert len(os.listdir("/proc/self/fd")) == before
