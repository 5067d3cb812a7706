"""Ray scheduling, in one module so that one pytest-xdist worker runs every Ray test, one after another
(`make test` distributes by file): each counts or starts the machine's Ray daemons, which another
worker's cluster would change under it.

A local cluster: one task per run; a killed worker fails only its run; the rerun completes it; no Ray
processes are left behind. A real two-node cluster on 127.0.0.1: a head with no CPUs (so no run can
land there) and a second raylet with its own temp dir that runs every task. A suite run with
``--address`` gives the same records as a local run; a worker node that cannot see the results folder
(hidden from it by a mount namespace) fails its run with a message naming the folder (the contract:
docs/paper-scale.md). Both cluster tests share one cluster; only the processes it starts are stopped,
by their process group."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.core.store import ResultStore

REPO = Path(__file__).resolve().parent.parent
TINY_SUITE = REPO / "tests" / "tiny-suite.yaml"
RAY = str(Path(sys.executable).with_name("ray"))


# ---- a local cluster --------------------------------------------------------------------------
def ray_processes() -> set[str]:
    """PIDs of Ray's daemons (another suite may run its own cluster beside the test's)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return {line.split()[0] for line in out if "raylet" in line or "gcs_server" in line}


def left_behind(before: set[str], grace_s: float = 30.0) -> set[str]:
    """Ray daemons started since ``before`` that are still alive after ``grace_s``: the driver has exited,
    but its raylet stops asynchronously, later still when the other test worker keeps the cores busy."""
    deadline = time.monotonic() + grace_s
    while (extra := ray_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return extra


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
    assert not left_behind(before)  # the test's local cluster was shut down
    second = subprocess.run(cmd, cwd=REPO, env={**os.environ, "EROSION_KILL_AT": ""}, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 run(s) done" in second.stdout  # only the failed run was redone
    status = {i.method: i.status for i in ResultStore(tmp_path / "r", create=False).runs()}
    assert status == {"standard_lora": "done", "safety_interleaving": "done"}


# ---- a two-node cluster (the local-cluster test runs first: no other cluster is up during it) ----
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"Ray's head did not listen on port {port} within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the node's own process group (``ray start --block`` then stops what it started)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def token_auth(temp: Path) -> dict[str, str]:
    """The environment of a cluster with Ray's token authentication and its own token file: explicit,
    so neither ~/.ray/auth_token nor the caller's RAY_AUTH_* decides whether the driver is let in."""
    (temp / "auth_token").write_text(secrets.token_hex(32))
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(temp / "auth_token")}


@contextmanager
def two_node_cluster(hide: Path | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """Address of a head (0 CPUs) plus one worker node (1 CPU), and the environment a driver needs
    to join it; ``hide``: a folder the worker node sees as an empty tmpfs (its own mount namespace)."""
    port, temp = free_port(), Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    common = ["--block", "--disable-usage-stats"]
    environment, nodes = token_auth(temp), []
    try:
        nodes.append(subprocess.Popen([RAY, "start", "--head", "--port", str(port), "--num-cpus", "0", "--num-gpus", "0",
                                       "--include-dashboard=false", "--temp-dir", str(temp / "head"), *common],
                                      cwd=REPO, env=environment, start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_for_port(port)
        worker = [RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--num-gpus", "0",
                  "--temp-dir", str(temp / "worker"), *common]
        if hide is not None:
            worker = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f'mount -t tmpfs none "{hide}" && exec "$@"', "sh", *worker]
        nodes.append(subprocess.Popen(worker, cwd=REPO, env=environment, start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        yield f"127.0.0.1:{port}", environment
    finally:
        for node in reversed(nodes):
            stop(node)
        shutil.rmtree(temp, ignore_errors=True)


def erosion_run(results: Path, *extra: str, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.cli", "run", str(TINY_SUITE), "--results", str(results), "--no-leaderboard", *extra]
    return subprocess.run(cmd, cwd=REPO, env=environment, capture_output=True, text=True, timeout=400)


def scores(results: Path) -> list[tuple]:
    keys = ("model", "method", "ordering", "seed", "config_hash", "step", "benchmark", "metric", "value")
    return sorted(tuple(r[k] for k in keys) for r in ResultStore(results, create=False).records())


def can_hide_folders() -> bool:
    probe = Path(tempfile.mkdtemp(prefix="hide-", dir="/tmp"))
    try:
        return shutil.which("unshare") is not None and subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "none", str(probe)],
            capture_output=True).returncode == 0
    finally:
        probe.rmdir()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path | None]]:
    """One two-node cluster for the module (a start and a stop cost half a minute); its worker node sees
    the yielded folder as empty where the machine can hide one (else None)."""
    hidden = tmp_path_factory.mktemp("hidden") if can_hide_folders() else None
    with two_node_cluster(hide=hidden) as (address, environment):
        yield address, environment, hidden


@pytest.mark.slow
def test_a_suite_on_a_second_node_records_what_a_local_run_records(tmp_path: Path, tiny_world, cluster) -> None:
    address, environment, _ = cluster
    local = erosion_run(tmp_path / "local", "--executor", "local")
    assert local.returncode == 0, local.stderr[-2000:]
    refused = erosion_run(tmp_path / "refused", "--address", address, environment={**environment, "RAY_AUTH_MODE": "disabled"})
    remote = erosion_run(tmp_path / "cluster", "--address", address, environment=environment)
    assert refused.returncode == 2 and "did not accept this driver" in refused.stderr, refused.stderr[-2000:]
    assert "RAY_AUTH_MODE=token" in refused.stderr and not (tmp_path / "refused").exists()
    assert remote.returncode == 0, remote.stderr[-2000:]
    assert scores(tmp_path / "cluster") == scores(tmp_path / "local") != []


@pytest.mark.slow
@pytest.mark.skipif(not can_hide_folders(), reason="needs unshare and mount (root) to hide a folder from one node")
def test_a_worker_that_cannot_see_the_results_folder_fails_its_run_naming_it(tiny_world, cluster) -> None:
    address, environment, hidden = cluster
    results = hidden / "results"
    remote = erosion_run(results, "--address", address, environment=environment)
    assert remote.returncode == 1, remote.stderr[-2000:]
    (info,) = ResultStore(results, create=False).runs()
    assert info.status == "failed"
    assert f"cannot see the results folder {results}" in info.error and "docs/paper-scale.md" in info.error
