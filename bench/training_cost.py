"""Target 1: each method's training-step time relative to Standard LoRA, and its one-off costs.

Every method gets its own copy of the chat model and walks the runner's protocol to the middle of a
sequence: ``prepare``, domain 1 (fresh adapter, ``before_domain``, a short warm-up, ``edit_weights``,
``after_domain``, merge), then domain 2 (fresh adapter, ``before_domain``, warm-up). Domain 2 is the
one timed, because methods that learn from earlier domains (EWC's Fisher, O-LoRA's A matrices,
SafeAnchor's subspace memory) only then pay their full per-step price; the warm-up leaves B != 0,
where SafeGrad's KL and SafeAnchor's lora_A subspace stop being trivially zero.

Timed steps are ``run_block`` steps on the same examples with the same batch stream seed for every
method, in rotating rounds; ratios are within-round. SafeAnchor's in-domain subspace recomputation
is switched off for the timed steps and timed on its own (``ssi_refresh``); the per-domain estimate
adds it back at the default schedule. ``safeanchor_osca`` (projection only, gamma = 0) is a copy of
the prepared SafeAnchor, so both project on the same subspaces.
"""
from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any
from unittest import mock

import torch

import harness.training as training
from bench.common import Options, Target, bench_world, clock, micro_training_settings, paired_ratio, rotating, timed
from harness.core.adapters import attach_adapter, merge_adapter
from harness.core.context import TrainContext
from harness.core.data import Example
from harness.core.domains import domain_examples
from harness.core.models import ModelHandle, load_model, load_tokenizer
from harness.core.safety_data import calibration_set
from harness.training import apply_edits, run_block, steps_for
from methods import build_method
from methods.base import Method
from methods.safeanchor import SafeAnchor, SafeAnchorConfig

DOMAINS = ("medical", "legal")
PER_STEP_HOOKS = ("extra_loss", "transform_gradients", "transform_update")
OSCA_HOOKS = ("transform_gradients", "transform_update")
REFERENCE = "standard_lora"
_NO_RECOMPUTE = {"recompute_first": 0, "recompute_every": 0}
# variant -> (method, config fields)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "standard_lora": ("standard_lora", {}),
    "safeanchor": ("safeanchor", _NO_RECOMPUTE),
    "ewc": ("ewc", {}),
    "olora": ("olora", {}),
    "safe_lora": ("safe_lora", {}),
    "vaccine": ("vaccine", {"steps": 10}),  # its alignment stage is a one-off; 10 of the default 200 steps
    "safegrad": ("safegrad", {}),
    "safety_interleaving": ("safety_interleaving", {}),
}
# variant -> (the variant it copies, config changes): OSCA's projection alone (no anchor KL), on the
# very same subspaces as the full SafeAnchor, so the two differ only by the anchor term.
DERIVED: dict[str, tuple[str, dict[str, Any]]] = {"safeanchor_osca": ("safeanchor", {"gamma": 0.0})}
# --quick: seconds-sized one-offs.
_QUICK_FIELDS: dict[str, dict[str, Any]] = {
    "safeanchor": {"calibration_size": 8}, "ewc": {"fisher_samples": 8},
    "vaccine": {"steps": 1, "examples": 16}, "safegrad": {"alignment_examples": 16},
}


@dataclass
class Subject:
    """One method, mid-sequence, ready for timed steps."""

    ctx: TrainContext
    method: Method
    examples: list[Example]
    one_offs: dict[str, float]


@dataclass
class BlockTiming:
    """One timed ``run_block``: seconds per step (the first dropped: it also builds the optimizer
    and encodes the batch stream) and seconds per step spent inside each per-step hook."""

    step_s: list[float]
    hook_s: dict[str, float]


@contextmanager
def step_clock() -> Iterator[list[float]]:
    """Moments at which ``run_block`` finished each optimizer step. The loop has no per-step
    callback, but its fault-injection point ``reached("train_step")`` fires once per step, so
    wrapping it marks step ends without changing the loop."""
    marks: list[float] = []
    original = training.reached

    def mark(point: str) -> None:
        original(point)
        if point == "train_step":
            marks.append(time.perf_counter())

    with mock.patch.object(training, "reached", mark):
        yield marks


@contextmanager
def hook_clock(method: Method) -> Iterator[dict[str, float]]:
    """Seconds spent inside the per-step hooks the method overrides (the loop calls them through
    the instance, so an instance attribute shadows the class's method)."""
    spent = {hook: 0.0 for hook in PER_STEP_HOOKS if method.overrides(hook)}

    def timed_hook(hook: str) -> Callable[..., Any]:
        original = getattr(method, hook)

        def run(*args: Any, **kwargs: Any) -> Any:
            seconds, result = timed(partial(original, *args, **kwargs))
            spent[hook] += seconds
            return result

        return run

    with ExitStack() as stack:
        for hook in spent:
            stack.enter_context(mock.patch.object(method, hook, timed_hook(hook)))
        yield spent


def timed_block(subject: Subject, steps: int) -> BlockTiming:
    with step_clock() as marks, hook_clock(subject.method) as hooks:
        start = time.perf_counter()
        run_block(subject.ctx, subject.method, subject.examples, steps, "timed")
    step_s = [end - begin for begin, end in zip([start, *marks[:-1]], marks, strict=False)][1:]
    return BlockTiming(step_s, {hook: seconds / steps for hook, seconds in hooks.items()})


def _walk_to_second_domain(ctx: TrainContext, method: Method, n_examples: int, warmup: int,
                           one_offs: dict[str, float]) -> list[Example]:
    """Domain 1 and its end-of-domain hooks, then domain 2 up to its first timed step (see module doc)."""
    mixture: list[Example] = []
    for index, domain in enumerate(DOMAINS):
        ctx.domain, ctx.domain_index = domain, index
        ctx.domain_examples = domain_examples(domain, n_examples, ctx.seed)
        ctx.model = attach_adapter(ctx.model, ctx.settings, ctx.seed * 100 + index + 1)
        one_offs["before_domain"] = clock(partial(method.before_domain, ctx))  # domain 2's is kept
        mixture = method.data_mixture(ctx, ctx.domain_examples)
        run_block(ctx, method, mixture, warmup, "warm-up")
        if index + 1 < len(DOMAINS):
            one_offs["edit_weights"] = clock(lambda: apply_edits(ctx, method.edit_weights(ctx)))
            one_offs["after_domain"] = clock(partial(method.after_domain, ctx))
            ctx.model = merge_adapter(ctx.model)
    return mixture


def prepare_subject(variant: str, handle: ModelHandle, settings: Any, options: Options) -> Subject:
    method_name, fields = VARIANTS[variant]
    quick_fields = _QUICK_FIELDS.get(method_name, {}) if options.quick else {}
    method = build_method(method_name, {**fields, **quick_fields})
    torch.manual_seed(0)
    ctx = TrainContext(model=load_model(handle.chat), tokenizer=load_tokenizer(handle.tokenizer), settings=settings,
                       calibration=calibration_set(0), seed=0, domains=list(DOMAINS),
                       checkpoints={"base": handle.base, "aligned": handle.chat})
    one_offs = {"prepare": clock(partial(method.prepare, ctx))}
    examples = _walk_to_second_domain(ctx, method, options.pick(500, 16), options.pick(2, 1), one_offs)
    if isinstance(method, SafeAnchor):
        one_offs["ssi_refresh"] = clock(partial(method.refresh, ctx))
    return Subject(ctx, method, examples, one_offs)


def derive(subject: Subject, changes: dict[str, Any]) -> Subject:
    """An independent copy (model, optimizer-free state, streams) with a changed method config;
    its one-offs are the original's."""
    copied = copy.deepcopy(subject)
    copied.method.config = copied.method.config.model_copy(update=changes)
    return copied


def default_recomputes(steps: int) -> int:
    """In-domain SSI recomputations of SafeAnchor's default schedule over ``steps`` steps."""
    default = SafeAnchor(SafeAnchorConfig())
    return sum(default._recompute_due(step) for step in range(steps))


def domain_seconds(step_s: float, one_offs: dict[str, float], steps: int) -> float:
    """A default micro domain: its steps plus the per-domain one-offs (prepare is per sequence)."""
    per_domain = sum(v for k, v in one_offs.items() if k not in ("prepare", "ssi_refresh"))
    return steps * step_s + per_domain + default_recomputes(steps) * one_offs.get("ssi_refresh", 0.0)


def prepare_subjects(handle: ModelHandle, settings: Any, options: Options) -> dict[str, Subject]:
    subjects: dict[str, Subject] = {}
    for variant in VARIANTS:
        subjects[variant] = prepare_subject(variant, handle, settings, options)
        subjects |= {copy_name: derive(subjects[variant], changes)
                     for copy_name, (base, changes) in DERIVED.items() if base == variant}
    return subjects


def summarize(subject: Subject, blocks: list[BlockTiming], reference: list[BlockTiming], domain_steps: int) -> dict[str, Any]:
    """One variant's numbers; ratios are within-round (each round's median step over the reference's)."""
    reference_medians = [statistics.median(b.step_s) for b in reference]
    step_s = statistics.median([t for b in blocks for t in b.step_s])
    hooks = {hook: statistics.median(b.hook_s[hook] for b in blocks) for hook in blocks[0].hook_s}
    osca = [sum(b.hook_s.get(h, 0.0) for h in OSCA_HOOKS) for b in blocks]
    return {
        "method": subject.method.name, "config": subject.method.config.model_dump(mode="json"), "step_s": step_s,
        "ratio_to_standard": paired_ratio([statistics.median(b.step_s) for b in blocks], reference_medians),
        "hook_s_per_step": hooks, "osca_hooks_over_standard_step": paired_ratio(osca, reference_medians),
        "one_offs_s": subject.one_offs, "domain_s": domain_seconds(step_s, subject.one_offs, domain_steps),
    }


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    handle = bench_world(options.quick)
    quick_training = {"training": {"batch_size": 4, "grad_accum": 1, "max_seq_len": 64}}
    settings = micro_training_settings(handle.name, quick_training if options.quick else None)
    subjects = prepare_subjects(handle, settings, options)
    steps, rounds = options.pick(4, 3), options.pick(3, 1)
    blocks = rotating({v: partial(timed_block, s, steps) for v, s in subjects.items()}, rounds)
    domain_steps = steps_for(settings.examples_per_domain, settings)
    methods = {v: summarize(subjects[v], blocks[v], blocks[REFERENCE], domain_steps) for v in subjects}
    for entry in methods.values():
        entry["domain_ratio_to_standard"] = entry["domain_s"] / methods[REFERENCE]["domain_s"]
    section = {
        "world": handle.name, "settings": settings.model_dump(mode="json"), "timed_steps_per_round": steps - 1,
        "rounds": rounds, "domain_steps": domain_steps, "ssi_recomputes_per_domain": default_recomputes(domain_steps),
        "methods": methods,
    }
    return section, targets(methods, handle.name)


def targets(methods: dict[str, Any], world: str) -> list[Target]:
    osca = methods["safeanchor_osca"]
    direct = 100 * osca["osca_hooks_over_standard_step"]
    side_by_side = 100 * (osca["ratio_to_standard"] - 1)
    full = methods["safeanchor"]["ratio_to_standard"]
    return [
        Target("1a", f"OSCA projection overhead on a training step ({world})", direct, "%", "<= 5 %", direct <= 5,
               f"time inside OSCA's hooks / Standard LoRA step; whole-step difference side by side: {side_by_side:+.1f} %"),
        Target("1b", f"full SafeAnchor step / Standard LoRA step ({world})", full, "x", "<= 1.5 x", full <= 1.5),
        Target("1c", f"SafeAnchor domain incl. SSI recomputes / Standard LoRA domain ({world})",
               methods["safeanchor"]["domain_ratio_to_standard"], "x", "reported: measured", True),
    ]
