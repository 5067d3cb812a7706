"""Target 5: what Ray costs.

* Start/stop of a local cluster as ``harness.orchestration.scheduler.run_ray`` starts it (no dashboard).
* Per-task overhead: no-op tasks, both as a throughput (many in flight) and as a round trip (one at
  a time), after the workers are warm.
* A suite of four tiny-world runs long enough to matter (hundreds of steps each) through ``run_ray``
  (runs side by side, one thread each) against the best sequential schedule, ``run_local`` with one
  run at a time using every core; each into a fresh result folder, run_ray's time including its
  cluster start/stop.
"""
from __future__ import annotations

import tempfile
from functools import partial
from itertools import count
from pathlib import Path
from typing import Any

from bench.common import Options, Target, bench_world, clock, paired_ratio, side_by_side, summary, tiny_suite
from harness.core.store import ResultStore
from harness.orchestration.scheduler import job_graph, run_local, run_ray

# run_ray's own ray.init arguments for a cluster it owns.
INIT = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True, "configure_logging": False}


def start_stop(cycles: int) -> dict[str, Any]:
    import ray

    starts, stops = [], []
    for _ in range(cycles):
        starts.append(clock(partial(ray.init, **INIT)))
        stops.append(clock(ray.shutdown))
    return {"init_s": summary(starts), "shutdown_s": summary(stops)}


def task_overhead(n_tasks: int, round_trips: int) -> dict[str, Any]:
    import ray

    def noop() -> None:  # defined here so Ray ships it by value (the bench package is not installed)
        return None

    ray.init(**INIT)
    try:
        task = ray.remote(noop).options(num_cpus=1)
        ray.get([task.remote() for _ in range(8)])  # warm: workers started, function exported
        many = clock(lambda: ray.get([task.remote() for _ in range(n_tasks)]))
        one_by_one = [clock(lambda: ray.get(task.remote())) for _ in range(round_trips)]
    finally:
        ray.shutdown()
    return {"tasks": n_tasks, "throughput_ms_per_task": 1000 * many / n_tasks,
            "round_trip_ms": summary([1000 * t for t in one_by_one])}


def suite_ray_vs_local(rounds: int, max_steps: int) -> dict[str, Any]:
    import os

    methods = ["standard_lora", "safety_interleaving", "olora", "ewc"]
    cores = os.cpu_count() or 1
    parallel = tiny_suite(methods, max_steps, examples_per_domain=2000, threads_per_run=1)
    sequential = tiny_suite(methods, max_steps, examples_per_domain=2000, threads_per_run=cores)
    handle = bench_world(True)  # the tiny preset, whatever world the other items use
    jobs = job_graph(parallel)
    outcomes: list[dict[str, Any]] = []
    section: dict[str, Any] = {"runs": len(jobs), "steps_per_domain": max_steps,
                               "threads_per_run": {"ray": 1, "sequential": cores}}
    with tempfile.TemporaryDirectory() as tmp:
        fresh = count()

        def local() -> None:
            outcomes.extend(run_local(sequential, handle, jobs, ResultStore(Path(tmp) / f"local-{next(fresh)}")))

        def on_ray() -> None:
            outcomes.extend(run_ray(parallel, handle, jobs, ResultStore(Path(tmp) / f"ray-{next(fresh)}"), None))

        try:
            times = side_by_side({"local": local, "ray": on_ray}, rounds)
        except Exception as err:  # a failing run_ray is the finding: report it, keep the other numbers
            return {**section, "error": f"run_ray failed: {type(err).__name__}: {err}"}
    return {**section, "local_s": summary(times["local"]), "ray_s": summary(times["ray"]),
            "ray_over_local": paired_ratio(times["ray"], times["local"]),
            "all_done": all(o["status"] == "done" for o in outcomes)}


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    section = {
        "start_stop": start_stop(options.pick(2, 1)),
        "tasks": task_overhead(options.pick(200, 20), options.pick(50, 5)),
        "suite": suite_ray_vs_local(options.pick(2, 1), options.pick(400, 2)),
    }
    return section, targets(section)


def targets(section: dict[str, Any]) -> list[Target]:
    start_stop, tasks, suite = section["start_stop"], section["tasks"], section["suite"]
    cluster = start_stop["init_s"]["median"] + start_stop["shutdown_s"]["median"]
    return [
        Target("5a", "Ray per-task overhead (no-op, many in flight)", tasks["throughput_ms_per_task"], "ms/task",
               "reported: measured", True, f"round trip one at a time {tasks['round_trip_ms']['median']:.1f} ms"),
        Target("5b", "local Ray cluster start + stop", cluster, "s", "reported: measured", True,
               f"init {start_stop['init_s']['median']:.1f} s, shutdown {start_stop['shutdown_s']['median']:.1f} s"),
        suite_target(suite),
    ]


def suite_target(suite: dict[str, Any]) -> Target:
    what = (f"suite of {suite['runs']} tiny runs ({suite['steps_per_domain']} steps per domain): run_ray "
            f"(one thread per run) / best sequential (one run at a time, all cores)")
    if "error" in suite:
        return Target("5c", what, None, "x", "<= 1.10 x (Ray within 10% of sequential)", None, suite["error"])
    return Target("5c", what, suite["ray_over_local"], "x", "<= 1.10 x (Ray within 10% of sequential)",
                  suite["all_done"] and suite["ray_over_local"] <= 1.10,
                  f"ray {suite['ray_s']['median']:.1f} s vs sequential {suite['local_s']['median']:.1f} s")
