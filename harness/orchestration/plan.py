"""``erosion plan``: the job graph, resources per task and a compute estimate, without running.

Token counts use ``max_seq_len`` as the length of every training sequence (an upper bound). Time is
estimated from a documented throughput assumption per scale:

- paper (7B, bf16, LoRA r=16 on q/k/v/o, one 80 GB GPU): 2,500 training tokens/s (forward +
  backward of a 7B model is about 6 x 7e9 FLOPs per token ~ 4.2e10; at a realistic 40% of an A100's
  312 TFLOP/s that is ~3,000 tokens/s, rounded down for LoRA bookkeeping and padding), and
  1,000 generated tokens/s for batched greedy evaluation.
- micro (5M, CPU, one thread): 4,500 training tokens/s (counted at ``max_seq_len`` per sequence, as
  above; measured: 60 steps of 16 sequences in 30-50 s on the 2-core development machines) and an
  effective 700 generated tokens/s per evaluation point, which stands for the log-likelihood
  benchmarks too (measured: 17-38 s per point of HarmBench, TruthfulQA, BBQ and XSTest).

A run of a method costs ``Method.relative_cost`` Standard LoRA runs (SafeAnchor's subspace
recomputes, Vaccine's and SafeGrad's second backward pass).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.orchestration.config import SuiteConfig
from harness.orchestration.presets import ModelPreset
from harness.orchestration.scheduler import Job, job_graph
from harness.training import steps_for

THROUGHPUT = {  # (training tokens/s, generated tokens/s)
    "paper": (2500.0, 1000.0),
    "micro": (4500.0, 700.0),
}
EVAL_PROMPTS_PER_POINT = {"micro": 700, "paper": 1200}  # generation prompts per evaluation point (HarmBench + XSTest ...)


@dataclass(frozen=True)
class Estimate:
    steps_per_run: int
    train_tokens_per_run: int
    eval_points_per_run: int
    hours_per_run: float


def domain_sizes(suite: SuiteConfig) -> dict[str, int]:
    """Examples each domain contributes (capped by examples_per_domain)."""
    from harness.core.data import DataError
    from harness.core.domains import DOMAINS

    sizes = {}
    for name in suite.domains:
        try:
            sizes[name] = min(len(DOMAINS[name].build()), suite.training.examples_per_domain)
        except DataError:
            sizes[name] = suite.training.examples_per_domain  # data not prefetched: assume the cap
    return sizes


def estimate(suite: SuiteConfig, scale: str) -> Estimate:
    settings = suite.training
    steps = sum(steps_for(n, settings) for n in domain_sizes(suite).values())
    tokens = steps * settings.batch_size * settings.grad_accum * settings.max_seq_len
    points = len(suite.domains) + 1
    train_tps, gen_tps = THROUGHPUT.get(scale, THROUGHPUT["paper"])
    eval_tokens = points * EVAL_PROMPTS_PER_POINT.get(scale, 1200) * suite.eval.max_new_tokens
    return Estimate(steps, tokens, points, (tokens / train_tps + eval_tokens / gen_tps) / 3600)


def suite_cost(jobs: list[Job]) -> float:
    """The suite in Standard LoRA runs (each method's ``relative_cost``)."""
    return sum(job.cost() for job in jobs)


def describe_plan(suite: SuiteConfig, preset: ModelPreset) -> str:
    scale = preset.scale
    jobs = job_graph(suite)
    est = estimate(suite, scale)
    gpu = scale == "paper"
    resources = (f"{suite.num_gpus_per_run:g} GPU + {suite.threads_per_run} CPU per task (max_calls=1, retries {suite.max_retries})"
                 if gpu else f"{suite.threads_per_run} CPU thread(s) per task, no GPU (retries {suite.max_retries})")
    unit = "GPU-hours" if gpu else "CPU-thread-hours"
    lines = [
        f"suite {suite.name}: model {suite.model} (scale {scale}), {len(jobs)} run(s) = "
        f"{len(suite.methods)} method(s) x {len(suite.domain_orderings())} ordering(s) x {len(suite.seeds)} seed(s)",
        f"resources: {resources}",
        *([f"weights: {preset.weights}"] if preset.weights else []),
        f"judge: {suite.eval.judge}" + (f" ({suite.eval.judge_model})" if suite.eval.judge_model else ""),
        f"per run: {est.steps_per_run} optimizer steps, ~{est.train_tokens_per_run:,} training tokens (upper bound), "
        f"{est.eval_points_per_run} evaluation points",
        f"estimate: {est.hours_per_run:.2f} {unit} per Standard LoRA run, {est.hours_per_run * suite_cost(jobs):.1f} {unit} "
        f"in all (throughput assumption and method costs: see harness/orchestration/plan.py)",
        "jobs:",
    ]
    lines += [f"  {job.run_id(suite)}  [{' -> '.join(job.ordering)}]" for job in jobs]
    return "\n".join(lines)
