"""Suites: the job graph (method x ordering x seed) and its execution, locally or on Ray.

Each run is one Ray task. On GPU machines a task asks for ``num_gpus_per_run`` GPUs and its worker
is not reused (``max_calls=1``, so GPU memory is returned); on CPU it asks for
``threads_per_run`` CPUs and sets torch's threads to match. ``address`` joins an existing cluster;
otherwise a local Ray starts without its dashboard and is shut down at the end. A task that raises
or whose worker dies is recorded as failed; the rest of the suite goes on, and a rerun redoes only
failed or missing runs.

A cluster (``--address``) works on one contract (docs/paper-scale.md): every node sees the results
folder, the data directory and the prepared model folders at the driver's paths (a shared
filesystem), and has the same code installed. Each task checks that before it starts
(:func:`check_shared_paths`) and fails its run with a message naming the path it cannot see; the
driver records that failure, since such a worker cannot write to the results folder itself.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from harness.core.errors import ConfigError, ErosionError, StoreError
from harness.core.models import ModelHandle
from harness.core.store import ResultStore, RunInfo, make_run_id
from harness.orchestration.config import SuiteConfig
from harness.orchestration.presets import PRESETS


@dataclass(frozen=True)
class Job:
    method: str
    ordering: tuple[str, ...]
    seed: int

    def run_id(self, suite: SuiteConfig) -> str:
        return make_run_id(suite.model, self.method, list(self.ordering), self.seed, suite.config_hash(self.method))

    def cost(self) -> float:
        """The run's cost in Standard LoRA runs (its method's ``relative_cost``)."""
        from methods import resolve_method

        return resolve_method(self.method).relative_cost


def job_graph(suite: SuiteConfig) -> list[Job]:
    return [Job(m, tuple(o), s) for o in suite.domain_orderings() for s in suite.seeds for m in suite.methods]


def pending_jobs(suite: SuiteConfig, store: ResultStore) -> list[Job]:
    """Jobs whose run is missing, failed or unfinished."""
    def finished(job: Job) -> bool:
        info = store.read_run(job.run_id(suite))
        return bool(info and info.status == "done")

    return [job for job in job_graph(suite) if not finished(job)]


def longest_first(jobs: list[Job]) -> list[Job]:
    """Costliest methods first (``Method.relative_cost``; stable otherwise): with a few slots, a
    suite whose slowest run starts last ends with that run alone on the machine."""
    return sorted(jobs, key=lambda job: -job.cost())


class SharedPathError(ErosionError):
    """A worker cannot see a path the driver shares with it."""


def shared_paths(handle: ModelHandle, results: str, data: str) -> dict[str, str]:
    """What every node must see at the driver's path: the results folder, the data directory and
    the model's folders (a hub id is not a path: each node loads it from its own hub cache)."""
    paths = {"results folder": results, "data directory": data}
    for what, ref in (("model", handle.chat), ("base model", handle.base), ("tokenizer", handle.tokenizer)):
        if Path(ref).is_absolute():
            paths[f"{what} folder"] = ref
    return paths


def check_shared_paths(paths: dict[str, str]) -> None:
    for what, path in paths.items():
        if not Path(path).is_dir():
            raise SharedPathError(
                f"The worker on {socket.gethostname()} cannot see the {what} {path}. Every node of a Ray cluster "
                f"must see the results folder, the data directory and the model folders at the driver's paths. "
                f"Fix: put {path} on a filesystem shared by every node, mounted at the same path (docs/paper-scale.md).")


def execute_job(suite: SuiteConfig, handle: ModelHandle, job: Job, results: str,
                shared: dict[str, str] | None = None) -> dict[str, Any]:
    """One run. ``shared`` (on a cluster): the paths of :func:`shared_paths`, checked first; the run
    then reads the driver's data directory."""
    from harness.orchestration.runner import Run

    if shared is not None:
        check_shared_paths(shared)
        os.environ["EROSION_DATA"] = shared["data directory"]

    run = Run(suite, handle, job.method, list(job.ordering), job.seed, ResultStore(results))
    info = run.execute()
    # "running" after execute means another process holds the run's lock: not ours to report.
    status = "busy" if info.status == "running" else info.status
    return {"run_id": info.run_id, "status": status, "error": info.error}


def record_crash(suite: SuiteConfig, handle: ModelHandle, job: Job, store: ResultStore, error: str) -> None:
    """A worker that died could not write its own failure: the driver does."""
    run_id = job.run_id(suite)
    info = store.read_run(run_id) or RunInfo(run_id, handle.name, handle.scale, job.method, list(job.ordering), job.seed,
                                             suite.config_hash(job.method))
    info.status, info.error, info.finished_at = "failed", error, time.time()
    store.write_run(info)


class Progress:
    """Runs done / running / failed / remaining, with an ETA from the suite's pace so far
    (elapsed time per finished run already reflects how many run in parallel)."""

    def __init__(self, total: int, slots: int) -> None:
        self.total, self.slots, self.done, self.failed, self.started = total, slots, 0, 0, time.time()
        self.bar = tqdm(total=total, desc="suite", unit="run")
        self._show()

    def _show(self) -> None:
        finished = self.done + self.failed
        left = self.total - finished
        running = min(self.slots, left)
        eta = f"{(time.time() - self.started) / finished * left / 60:.1f} min" if finished else "after the first run"
        self.bar.set_postfix_str(f"done {self.done} running {running} failed {self.failed} remaining {left - running} eta {eta}")

    def finish(self, status: str) -> None:
        self.done += status in ("done", "busy")
        self.failed += status == "failed"
        self._show()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_local(suite: SuiteConfig, handle: ModelHandle, jobs: list[Job], store: ResultStore) -> list[dict[str, Any]]:
    progress, outcomes = Progress(len(jobs), slots=1), []
    for job in jobs:
        outcome = execute_job(suite, handle, job, str(store.root))
        outcomes.append(outcome)
        progress.finish(outcome["status"])
    progress.close()
    return outcomes


def run_ray(suite: SuiteConfig, handle: ModelHandle, jobs: list[Job], store: ResultStore,
            address: str | None) -> list[dict[str, Any]]:
    import ray
    import torch

    owns_cluster = address is None
    connect_cluster(address)
    try:
        gpus = suite.num_gpus_per_run if torch.cuda.is_available() else 0
        task = ray.remote(
            num_cpus=suite.threads_per_run, num_gpus=gpus, max_retries=suite.max_retries,
            retry_exceptions=False, max_calls=1 if gpus else 0,  # 0: reuse CPU workers without limit
        )(execute_job)
        from harness.core.data import data_dir

        results = str(store.root.resolve())  # a worker's working directory is not the driver's
        shared = shared_paths(handle, results, str(data_dir().resolve()))
        futures = {task.remote(suite, handle, job, results, shared): job for job in jobs}
        per_task = gpus or suite.threads_per_run
        capacity = ray.cluster_resources().get("GPU" if gpus else "CPU", 1)
        progress, outcomes = Progress(len(jobs), slots=max(1, int(capacity // per_task))), []
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            job = futures.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as err:  # worker killed / crashed: the run is marked failed, the suite goes on
                record_crash(suite, handle, job, store, f"{type(err).__name__}: {err}")
                outcome = {"run_id": job.run_id(suite), "status": "failed", "error": str(err)}
            outcomes.append(outcome)
            progress.finish(outcome["status"])
        progress.close()
        return outcomes
    finally:
        if owns_cluster:
            ray.shutdown()


ADDRESS_TIMEOUT_S = 5.0  # a reachable head answers a TCP connect in milliseconds


def check_address(address: str) -> None:
    """Fail in seconds, before anything is written, when no Ray cluster listens at ``address``
    (``ray.init`` itself retries for minutes). ``RAY_ADDRESS`` overrides it, as in Ray; ``auto``
    and ``local`` are left to Ray (it searches this machine and fails fast, or starts a cluster)."""
    effective = os.environ.get("RAY_ADDRESS") or address
    if effective in ("auto", "local"):  # Ray's own: search this machine / start a new local cluster
        return
    source = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "--address"
    host, sep, port = effective.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{source} {effective!r}: expected ray://HOST:PORT (Ray client), HOST:PORT (the head's GCS "
                          f"port, 6379 by default), auto or local. Fix: pass the address `ray start --head` printed.")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(
            f"{source} {effective!r}: no Ray cluster answers at {host}:{port} ({err.strerror or err}). Fix: start one "
            f"(`ray start --head`) and pass the address it prints, or leave out --address to run on this machine. "
            f"Nothing was written."
        ) from None


AUTH_HELP = ("If the cluster was started with token authentication (Ray does so when ~/.ray/auth_token exists or "
             "RAY_AUTH_MODE=token), run with RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or "
             "~/.ray/auth_token; otherwise start the head and every node with RAY_AUTH_MODE=disabled.")


def connect_cluster(address: str | None) -> None:
    """Join the cluster at ``address`` (None: start a local one). A head that answers but refuses
    this driver (a token mismatch, a version mismatch) is a ConfigError naming the address and the
    fix, not an OSError about disk space."""
    import ray

    try:
        ray.init(address=address, include_dashboard=False if address is None else None, log_to_driver=False,
                 ignore_reinit_error=True, configure_logging=False)
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:
        raise ConfigError(f"--address {address!r}: the Ray cluster there did not accept this driver ({err}). "
                          f"{AUTH_HELP} Nothing was written.") from None


def prepare_model(suite: SuiteConfig) -> ModelHandle:
    return PRESETS[suite.model].prepare()


def run_suite(suite: SuiteConfig, store: ResultStore, executor: str = "auto", address: str | None = None) -> list[dict[str, Any]]:
    """Prepare the model once, then run every pending job. Returns one outcome per job run."""
    handle = prepare_model(suite)
    check_same_build(store, handle)
    update_model_report(store, handle)
    jobs = longest_first(pending_jobs(suite, store))
    outcomes: list[dict[str, Any]] = []
    if jobs:
        use_ray = executor == "ray" or (executor == "auto" and (len(jobs) > 1 or address))
        outcomes = run_ray(suite, handle, jobs, store, address) if use_ray else run_local(suite, handle, jobs, store)
    update_model_report(store, handle)
    return outcomes


def check_same_build(store: ResultStore, handle: ModelHandle) -> None:
    """A results folder holds runs from one build of each model. A run's identity names the model, not
    its build, so runs from an earlier micro world or small organism would otherwise count as done for
    this one, and the leaderboard would rank the two builds side by side."""
    stored = store.model_reports().get(handle.name, {}).get("key")
    built = handle.report.get("key")
    if stored and built and stored != built:
        raise StoreError(f"{store.root}: its runs of model '{handle.name}' start from the build {stored}; this "
                         f"machine's '{handle.name}' is the build {built}. Fix: pass another --results folder (or move "
                         f"this one away) to run on this build; nothing was written.")


def update_model_report(store: ResultStore, handle: ModelHandle) -> None:
    """The starting model's report plus the organism checks that need finished runs."""
    from harness.orchestration.organism import erosion_checks

    report = {**handle.report, "model": handle.name, "scale": handle.scale}
    report["checks"] = list(report.get("checks", [])) + erosion_checks(store, handle.name)
    store.write_model_report(handle.name, report)
