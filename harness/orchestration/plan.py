"""``erosion plan``: the job graph, resources per task and a compute estimate, without running.

A run costs its training tokens at the training throughput plus, at each evaluation point (before
the first domain and after each), its benchmarks' work: generated tokens at the generation
throughput, log-likelihood requests at the forward throughput (a forward pass is a third of a
training step's FLOPs, so 3x the training throughput), and the classifier judge's reading of the
judged responses (forward passes of a 13B model: 13/7 of a 7B's cost per token). Training tokens
count ``max_seq_len`` for every sequence (an upper bound). A method's training costs
``Method.relative_cost`` times Standard LoRA's (SafeAnchor's subspace recomputes, Vaccine's and
SafeGrad's second backward pass); evaluation costs every method the same.

Which throughput (printed by the plan, so every estimate names its source):

- paper scale, measured: ``bench/gpu-results.json`` from ``python -m bench.gpu_check`` on a GPU
  (its ``throughput`` block: Standard LoRA training tokens/s of a Llama-2-7B-shaped model at batch
  8 x 512, and batched greedy tokens/s with a KV cache; one GPU). A ``--tiny`` (CPU) result is
  never used.
- paper scale, default (no GPU measurement): calibrated on the paper's own cost, ~8 h per seed on
  2 x A100-40GB, i.e. 16 GPU-hours for one SafeAnchor run of Table 1 (sequences/paper.yaml). The
  split between training and generation keeps a FLOP-based A100 ratio (training: 6 x 7e9 FLOPs per
  token at ~40% of 312 TFLOP/s ~ 3,000 tokens/s, taken as 2,500; batched greedy generation ~1,000
  tokens/s): both scaled by 1.05 so that the SafeAnchor run of paper.yaml comes out at 16 GPU-h
  (the FLOP-based figures alone land within about 15% of it; tests/test_plan.py checks the calibration).
- small (SmolLM2-135M, CPU, one thread): ``SMALL_THROUGHPUT``, measured on the 2-core development
  machine (docs/lab-notebook.md; `make bench` remeasures it as target 7 once small-chat is built).
- micro (5M, CPU, one thread): 4,500 training tokens/s and an effective 700 generated tokens/s per
  evaluation point over 700 prompts, standing for every benchmark (measured: 60 steps of 16
  sequences in 30-50 s, 17-38 s per evaluation point of HarmBench, TruthfulQA, BBQ and XSTest on the
  2-core development machines).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.orchestration.config import SuiteConfig
from harness.orchestration.presets import ModelPreset
from harness.orchestration.scheduler import Job, job_graph
from harness.training import steps_for

GPU_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "gpu-results.json"

# The paper's reported cost (Guo, Wu, Yiu 2026), printed beside every paper-scale estimate.
PAPER_HOURS_PER_SEED, PAPER_GPUS, PAPER_TOTAL_GPU_HOURS = 8.0, 2, 250.0
PAPER_COST_LINE = (f"paper: ~{PAPER_HOURS_PER_SEED:g} h per seed on {PAPER_GPUS} x A100-40GB "
                   f"(~{PAPER_HOURS_PER_SEED * PAPER_GPUS:g} GPU-h per SafeAnchor run), "
                   f"~{PAPER_TOTAL_GPU_HOURS:g} GPU-h in all")
# See the module docstring: the SafeAnchor run of paper.yaml at 16 GPU-h (re-fit after SafeAnchor's
# relative cost became 2.4 and domain_nll joined the suite).
PAPER_CALIBRATION = 0.877

# Paper-scale work per evaluation point on the full sets of the offline data (a suite's eval.caps
# caps the items): generated responses, log-likelihood requests (items x choices) and the responses
# the classifier judge reads.
GENERATIONS = {"harmbench": 240, "xstest": 450, "wildguard": 1_091, "humaneval": 164}
LOGLIK_ITEMS = {"truthfulqa": (817, 12), "bbq": (11_956, 3), "medqa": (334, 4), "legalbench": (15_545, 2), "mmlu": (14_079, 4)}
JUDGED = {"harmbench": 240, "wildguard": 609}
LOGLIK_TOKENS = 300  # tokens per log-likelihood request (context + choice), a rough mean
JUDGE_TOKENS = 1_000  # tokens the judge reads per response (behaviour + a 512-token response + template)
JUDGE_COST = 13 / 7  # a 13B classifier's forward pass per token, in 7B forward passes
MICRO_PROMPTS_PER_POINT = 700


@dataclass(frozen=True)
class Throughput:
    train: float  # training tokens/s (forward + backward + AdamW)
    generate: float  # generated tokens/s, batched greedy with a KV cache
    source: str
    measured_forward: float | None = None  # log-likelihood tokens/s where measured, else 3 x training's

    @property
    def forward(self) -> float:
        return self.measured_forward or 3 * self.train


MICRO_THROUGHPUT = Throughput(4500.0, 700.0,
                              "micro default: measured on the 2-core development machines (harness/orchestration/plan.py)")
# Standard LoRA at the small preset, one thread per run, two runs side by side on 2 cores
# (docs/lab-notebook.md, 2026-12-07): 48 optimizer steps of 8 x 128 tokens in 567 s; per evaluation
# point HarmBench's 159 x 32 generated tokens in 91 s, and TruthfulQA/BBQ/MedQA/LegalBench's 1,440
# log-likelihood requests in 225 s. Batched scoring runs far above 3 x the training rate on a CPU.
SMALL_THROUGHPUT = Throughput(86.5, 56.0, "small: measured on the 2-core development machine, two runs side by side, "
                              "one thread each (harness/orchestration/plan.py)", measured_forward=1900.0)
PAPER_DEFAULT = Throughput(2500.0 * PAPER_CALIBRATION, 1000.0 * PAPER_CALIBRATION,
                           "paper default: calibrated on the paper's ~8 h per seed on 2 x A100-40GB (no bench/gpu-results.json)")


def measured_throughput(path: Path = GPU_RESULTS) -> Throughput | None:
    """The GPU check's measured throughput, or None when there is none (or only a --tiny CPU run)."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    block = results.get("throughput") if isinstance(results, dict) else None
    if (results.get("tiny") or not isinstance(block, dict)
            or not block.get("train_tokens_per_s") or not block.get("generated_tokens_per_s")):
        return None
    where = f"{results.get('device', 'a GPU')}, {results.get('finished_at', 'undated')}"
    return Throughput(float(block["train_tokens_per_s"]), float(block["generated_tokens_per_s"]),
                      f"measured: {path.name} ({where}; one GPU)")


def throughput_for(scale: str, results: Path = GPU_RESULTS) -> Throughput:
    if scale == "micro":
        return MICRO_THROUGHPUT
    if scale == "small":
        return SMALL_THROUGHPUT
    return measured_throughput(results) or PAPER_DEFAULT


@dataclass(frozen=True)
class Estimate:
    steps_per_run: int
    train_tokens_per_run: int
    eval_points_per_run: int
    eval_hours_per_point: float
    train_hours_per_run: float  # Standard LoRA's; a method's relative_cost scales only this part
    throughput: Throughput

    @property
    def eval_hours_per_run(self) -> float:
        return self.eval_points_per_run * self.eval_hours_per_point

    def hours(self, jobs: list[Job]) -> float:
        """Hours of ``jobs``: each method's training at its relative cost, every run's evaluations."""
        return suite_cost(jobs) * self.train_hours_per_run + len(jobs) * self.eval_hours_per_run


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


def _capped(suite: SuiteConfig, benchmark: str, items: int) -> float:
    """How many of ``items`` a suite's cap on ``benchmark`` keeps."""
    cap = suite.eval.caps.get(benchmark)
    return items if cap is None else min(cap, items)


def eval_seconds_per_point(suite: SuiteConfig, scale: str, speed: Throughput) -> float:
    if scale == "micro":
        return MICRO_PROMPTS_PER_POINT * suite.eval.max_new_tokens / speed.generate
    generated = sum(_capped(suite, b, GENERATIONS[b]) for b in suite.benchmarks if b in GENERATIONS) * suite.eval.max_new_tokens
    requests = sum(_capped(suite, b, LOGLIK_ITEMS[b][0]) * LOGLIK_ITEMS[b][1] for b in suite.benchmarks if b in LOGLIK_ITEMS)
    judged = sum(_capped(suite, b, JUDGED[b]) for b in suite.benchmarks if b in JUDGED) if suite.eval.judge != "refusal" else 0
    return (generated / speed.generate + requests * LOGLIK_TOKENS / speed.forward
            + judged * JUDGE_TOKENS * JUDGE_COST / speed.forward)


def estimate(suite: SuiteConfig, scale: str, results: Path = GPU_RESULTS) -> Estimate:
    speed = throughput_for(scale, results)
    settings = suite.training
    steps = sum(steps_for(n, settings) for n in domain_sizes(suite).values())
    tokens = steps * settings.batch_size * settings.grad_accum * settings.max_seq_len
    points = len(suite.domains) + 1
    per_point = eval_seconds_per_point(suite, scale, speed) / 3600
    return Estimate(steps, tokens, points, per_point, tokens / speed.train / 3600, speed)


def suite_cost(jobs: list[Job]) -> float:
    """The suite in Standard LoRA runs (each method's ``relative_cost``)."""
    return sum(job.cost() for job in jobs)


def describe_plan(suite: SuiteConfig, preset: ModelPreset, results: Path = GPU_RESULTS) -> str:
    scale = preset.scale
    jobs = job_graph(suite)
    est = estimate(suite, scale, results)
    gpu = scale == "paper"
    resources = (f"{suite.num_gpus_per_run:g} GPU + {suite.threads_per_run} CPU per task "
                 f"(max_calls=1, retries {suite.max_retries})"
                 if gpu else f"{suite.threads_per_run} CPU thread(s) per task, no GPU (retries {suite.max_retries})")
    unit = "GPU-hours" if gpu else "CPU-thread-hours"
    per_gpu = suite.num_gpus_per_run if gpu else 1.0
    lines = [
        f"suite {suite.name}: model {suite.model} (scale {scale}), {len(jobs)} run(s) = "
        f"{len(suite.methods)} method(s) x {len(suite.domain_orderings())} ordering(s) x {len(suite.seeds)} seed(s)",
        f"methods: {', '.join(suite.methods)}",
        f"benchmarks ({len(suite.benchmarks)}): {', '.join(suite.benchmarks)}",
        f"resources: {resources}",
        *([f"weights: {preset.weights}"] if preset.weights else []),
        f"judge: {suite.eval.judge}" + (f" ({suite.eval.judge_model})" if suite.eval.judge_model else ""),
        f"per run: {est.steps_per_run} optimizer steps, ~{est.train_tokens_per_run:,} training tokens (upper bound), "
        f"{est.eval_points_per_run} evaluation points (~{est.eval_hours_per_point:.2f} h each)",
        f"throughput: {est.throughput.train:,.0f} training tokens/s, {est.throughput.generate:,.0f} generated tokens/s "
        f"({est.throughput.source})",
        f"estimate: {(est.train_hours_per_run + est.eval_hours_per_run) * per_gpu:.2f} {unit} per Standard LoRA run "
        f"({est.train_hours_per_run * per_gpu:.2f} training + {est.eval_hours_per_run * per_gpu:.2f} evaluation), "
        f"{est.hours(jobs) * per_gpu:.1f} {unit} in all (method costs: see harness/orchestration/plan.py)",
        *([PAPER_COST_LINE] if gpu else []),
        "jobs:",
    ]
    lines += [f"  {job.run_id(suite)}  [{' -> '.join(job.ordering)}]" for job in jobs]
    return "\n".join(lines)
