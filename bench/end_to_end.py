"""Target 4: the default micro suite end to end.

* World build time, read from the cached world's build.json (pretrain_seconds, align_seconds).
* The default suite's wall time, read from a results folder that `make leaderboard` filled: from
  the first run's start to the last run's finish, over the runs of the suite's current config
  (running the 20-minute suite inside the bench would double the bench's time).
* A Standard LoRA domain's training time per step: ``run_block`` on a default domain's full
  training data (examples_per_domain examples) with the default suite's settings.
* Training padding share: ``BatchStream.padding_share`` over a whole default domain's micro-batches
  (steps x grad_accum) of each default domain, drawn without training.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch

from bench.common import REPO, Options, Target, bench_world, micro_training_settings, summary
from bench.training_cost import Subject, timed_block
from harness.core.adapters import attach_adapter
from harness.core.batching import BatchStream
from harness.core.context import TrainContext
from harness.core.domains import domain_examples
from harness.core.models import load_model, load_tokenizer
from harness.core.safety_data import calibration_set
from harness.core.store import ResultStore
from harness.orchestration.config import SuiteConfig, load_suite
from harness.orchestration.micro_world import WORLD_PRESETS, world_paths
from harness.orchestration.scheduler import job_graph, pending_jobs
from harness.training import steps_for
from methods.standard_lora import StandardLoRA

SEED = 0


def build_times(world: str) -> dict[str, Any]:
    path = world_paths(WORLD_PRESETS[world]).root / "build.json"
    if not path.exists():
        return {"available": False, "path": str(path)}
    build = json.loads(path.read_text())
    keys = ("pretrain_seconds", "align_seconds", "torch_threads", "parameters")
    return {"available": True, "path": str(path), **{k: build.get(k) for k in keys},
            "total_seconds": build["pretrain_seconds"] + build["align_seconds"]}


def suite_wall(results: Path, suite: SuiteConfig) -> dict[str, Any]:
    """The suite's wall time as its runs recorded it. The span from first start to last finish is
    the suite's time only when one invocation ran every run: a folder resumed after a pause spans
    the pause, so the span is reported beside each run's own wall time."""
    store = ResultStore(results)
    missing = pending_jobs(suite, store)  # what `erosion run` would still run
    if missing:
        return {"available": False, "results": str(results), "not_done": sorted(f"{job.method} s{job.seed}" for job in missing)}
    infos = {f"{job.method} s{job.seed}": store.read_run(job.run_id(suite)) for job in job_graph(suite)}
    done = list(infos.values())
    return {"available": True, "results": str(results),
            "span_s": max(i.finished_at for i in done) - min(i.started_at for i in done),
            "runs_sum_s": sum(i.wall_time_s for i in done),
            "run_wall_s": {run: info.wall_time_s for run, info in infos.items()}}


def padding_shares(tokenizer: Any, settings: Any, domains: list[str], n_batches: int) -> dict[str, float]:
    shares = {}
    for index, domain in enumerate(domains):
        stream = BatchStream(tokenizer, domain_examples(domain, settings.examples_per_domain, SEED), settings.batch_size,
                             settings.max_seq_len, SEED * 1000 + index + 1)  # the seed run_block gives domain `index`
        for _ in range(n_batches):
            next(stream)
        shares[domain] = stream.padding_share
    return shares


def standard_step_times(handle: Any, settings: Any, domain: str, steps: int, rounds: int) -> list[float]:
    torch.manual_seed(SEED)
    ctx = TrainContext(model=load_model(handle.chat), tokenizer=load_tokenizer(handle.tokenizer), settings=settings,
                       calibration=calibration_set(SEED), seed=SEED, domains=[domain], domain=domain, domain_index=0,
                       domain_examples=domain_examples(domain, settings.examples_per_domain, SEED))
    ctx.model = attach_adapter(ctx.model, settings, SEED * 100 + 1)
    subject = Subject(ctx, StandardLoRA(), ctx.domain_examples, {})
    return [t for _ in range(rounds) for t in timed_block(subject, steps).step_s]


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    handle = bench_world(options.quick)
    suite = load_suite(REPO / "sequences" / "micro.yaml", {"model": handle.name})
    quick = {"training": {"examples_per_domain": 64, "batch_size": 4, "grad_accum": 1, "max_seq_len": 64}}
    settings = micro_training_settings(handle.name, quick if options.quick else None)
    domain_steps = steps_for(settings.examples_per_domain, settings)
    times = standard_step_times(handle, settings, suite.domains[0], options.pick(8, 3), options.pick(2, 1))
    step_s = statistics.median(times)
    section = {
        "world": handle.name, "suite": suite.name, "domains": suite.domains, "build": build_times(handle.name),
        "settings": settings.model_dump(mode="json"), "domain_steps": domain_steps,
        "standard_lora_step_s": summary(times), "standard_lora_domain_s_estimate": domain_steps * step_s,
        "padding_share": padding_shares(load_tokenizer(handle.tokenizer), settings, suite.domains,
                                        domain_steps * settings.grad_accum),
        "suite_wall": suite_wall(REPO / options.results, suite),
    }
    return section, targets(section)


def build_note(section: dict[str, Any]) -> str:
    build = section["build"]
    if section["world"] != "micro":
        return f"measured on {section['world']}, not micro (--quick, or no cached micro world: `make world`)"
    if not build["available"]:
        return f"no {build['path']}"
    return (f"pretrain {build['pretrain_seconds']:.0f} s + align {build['align_seconds']:.0f} s "
            f"at {build['torch_threads']} thread(s)")


def suite_note(section: dict[str, Any]) -> str:
    wall = section["suite_wall"]
    if not wall["available"]:
        return (f"{wall['results']} has no finished run of this suite's config for {', '.join(wall['not_done'])} "
                "(`make leaderboard`)")
    runs = ", ".join(f"{run} {s / 60:.1f}" for run, s in sorted(wall["run_wall_s"].items(), key=lambda kv: -kv[1]))
    return (f"{len(wall['run_wall_s'])} runs, {wall['runs_sum_s'] / 60:.1f} min of runs in all; "
            f"per run (min): {runs}; from {wall['results']}")


def targets(section: dict[str, Any]) -> list[Target]:
    world, build = section["world"], section["build"]
    on_micro = world == "micro"
    shares, wall = section["padding_share"], section["suite_wall"]
    mean_share = 100 * sum(shares.values()) / len(shares)
    step = section["standard_lora_step_s"]["median"]
    return [
        Target("4a", "micro world build time (pretrain + align, build.json)",
               build.get("total_seconds") if on_micro else None, "s", "<= 300 s (issue 7)",
               build["total_seconds"] <= 300 if on_micro and build["available"] else None, build_note(section)),
        Target("4b", f"Standard LoRA training step, default suite settings ({world})", step, "s/step",
               "reported: measured on micro", True if on_micro else None,
               f"~{section['standard_lora_domain_s_estimate']:.0f} s per {section['domain_steps']}-step domain"
               if on_micro else build_note(section)),
        Target("4c", f"training padding share, default domains ({world})", mean_share, "%", "reported: measured", True,
               ", ".join(f"{d} {100 * s:.1f} %" for d, s in shares.items())),
        Target("4d", f"default suite wall time ({section['suite']}), first run start to last run finish",
               wall["span_s"] / 60 if wall["available"] else None, "min", "<= 20 min on 2 cores (issue 7)",
               wall["span_s"] <= 20 * 60 if wall["available"] else None, suite_note(section)),
    ]
