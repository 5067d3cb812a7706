"""The one training loop. Methods change it only through the hooks of ``methods.base.Method``.

Adapter policy (``training.adapter_policy``): ``merge_per_domain`` (default) attaches a fresh LoRA
adapter (B = 0) at the start of every domain and merges it into the weights at the end, so the
model entering domain t is exactly the model that left domain t-1 and "disable the adapter" gives
that frozen snapshot for free. ``persistent`` keeps one adapter across all domains (disabling it
then gives the starting aligned model). A method may require ``persistent`` (``Method.adapter_policy``);
:func:`effective_settings` applies it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.core.adapters import attach_adapter, merge_adapter
from harness.core.context import TrainContext
from harness.core.data import Example
from harness.core.faults import reached
from harness.core.losses import lm_loss
from harness.core.settings import TrainSettings
from methods.base import Method, TrainingBlock


def effective_settings(settings: TrainSettings, method: Method) -> TrainSettings:
    """The suite's training settings with the adapter policy the method requires, if any."""
    if method.adapter_policy is None or method.adapter_policy == settings.adapter_policy:
        return settings
    return settings.model_copy(update={"adapter_policy": method.adapter_policy})


def steps_for(n_examples: int, settings: TrainSettings) -> int:
    per_step = settings.batch_size * settings.grad_accum
    steps = math.ceil(settings.epochs * n_examples / per_step)
    return min(steps, settings.max_steps) if settings.max_steps else steps


def _schedule(settings: TrainSettings, total: int) -> Callable[[int], float]:
    warmup = int(settings.warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if settings.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@contextmanager
def block_settings(ctx: TrainContext, settings: TrainSettings | None) -> Iterator[None]:
    """``ctx.settings`` replaced by a block's own settings while it trains (hooks see them too)."""
    if settings is None:
        yield
        return
    suite_settings, ctx.settings = ctx.settings, settings
    try:
        yield
    finally:
        ctx.settings = suite_settings


def block_optimizer(settings: TrainSettings, params: dict[str, torch.nn.Parameter],
                    carried: torch.optim.Optimizer | None = None) -> torch.optim.Optimizer:
    """A new AdamW over ``params``, or ``carried`` (an earlier block's, with its moment estimates)
    set to these settings, so that the block's own schedule starts from ``settings.lr``."""
    if carried is None:
        return torch.optim.AdamW(params.values(), lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
    for group in carried.param_groups:
        group.update(lr=settings.lr, initial_lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay)
    return carried


def run_block(ctx: TrainContext, method: Method, examples: list[Example], steps: int, desc: str,
              optimizer: torch.optim.Optimizer | None = None) -> dict[str, float]:
    """``steps`` optimizer steps over ``examples`` with every hook applied; returns loss stats.
    ``optimizer``: the one to step with (block_optimizer), else a new AdamW."""
    settings = ctx.settings
    params = ctx.trainable()
    optimizer = optimizer or block_optimizer(settings, params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings, steps))
    stream = ctx.batches(examples, seed_offset=ctx.domain_index + 1 + (100 if ctx.block != "domain" else 0))
    wants_update = method.overrides("transform_update")
    wants_grads = method.overrides("transform_gradients")
    wants_extra = method.overrides("extra_loss")
    ctx.total_steps, losses = steps, []
    ctx.model.train()
    for step in tqdm(range(steps), desc=desc, leave=False, mininterval=2.0):
        ctx.step = step
        task_total = 0.0
        extra_grads: dict[str, torch.Tensor] = {}
        for _ in range(settings.grad_accum):
            batch = next(stream)
            with method.forward_context(ctx, batch):
                task = lm_loss(ctx.model, batch) / settings.grad_accum
                task.backward()
            task_total += task.item()
            if wants_extra:
                # The extra term's gradient bypasses transform_gradients (e.g. SafeAnchor's anchor KL).
                extra_grads = _accumulate_extra(ctx, method, batch, params, extra_grads)
        grads = {n: p.grad for n, p in params.items() if p.grad is not None}
        if wants_grads:
            grads = method.transform_gradients(ctx, grads)
        for name, p in params.items():
            combined = grads.get(name)
            if name in extra_grads:
                combined = extra_grads[name] if combined is None else combined + extra_grads[name]
            p.grad = combined
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(params.values(), settings.grad_clip)
        before = {n: p.detach().clone() for n, p in params.items()} if wants_update else {}
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if wants_update:
            _apply_update_transform(ctx, method, params, before)
        losses.append(task_total)
        reached("train_step")
    ctx.model.eval()
    return {"steps": steps, "loss_first": losses[0] if losses else float("nan"),
            "loss_last": sum(losses[-10:]) / max(1, len(losses[-10:])), "padding_share": stream.padding_share}


def _accumulate_extra(ctx: TrainContext, method: Method, batch: dict[str, torch.Tensor],
                      params: dict[str, torch.nn.Parameter], acc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    term = method.extra_loss(ctx, batch)
    if term is None or not term.requires_grad:
        return acc
    names = list(params)
    grads = torch.autograd.grad(term / ctx.settings.grad_accum, [params[n] for n in names], allow_unused=True)
    for name, grad in zip(names, grads, strict=True):
        if grad is not None:
            acc[name] = acc[name] + grad if name in acc else grad
    return acc


@torch.no_grad()
def _apply_update_transform(ctx: TrainContext, method: Method, params: dict[str, torch.nn.Parameter],
                            before: dict[str, torch.Tensor]) -> None:
    update = {n: params[n].detach() - before[n] for n in params}
    new_update = method.transform_update(ctx, update)
    for name, delta in new_update.items():
        params[name].copy_(before[name] + delta)


@torch.no_grad()
def apply_edits(ctx: TrainContext, edits: dict[str, torch.Tensor] | None) -> None:
    if not edits:
        return
    params = dict(ctx.model.named_parameters())
    unknown = sorted(set(edits) - set(params))
    if unknown:
        raise KeyError(f"edit_weights returned unknown parameter names: {unknown[:3]}")
    for name, value in edits.items():
        params[name].copy_(value)


def train_before_sequence(ctx: TrainContext, method: Method, seed: int) -> dict[str, Any]:
    """The method's ``before_sequence`` block, if any: a fresh adapter of the block's LoRA shape
    (seeded with ``seed``), the loop with every hook, then merged into ``ctx.model``. Returns the
    block's loss stats keyed by its name ({} without a block)."""
    block: TrainingBlock | None = method.before_sequence(ctx)
    if block is None:
        return {}
    with block_settings(ctx, block.settings):
        ctx.model = attach_adapter(ctx.model, ctx.settings, seed)
        ctx.block, ctx.domain, ctx.domain_index = block.name, None, -1
        stats = run_block(ctx, method, block.examples, block.steps, block.name)
        ctx.model = merge_adapter(ctx.model)
    ctx.block = "domain"
    return {block.name: {**stats, "n_examples": len(block.examples)}}


def train_domain(ctx: TrainContext, method: Method, examples: list[Example]) -> dict[str, Any]:
    """One domain: hooks, the loop, the weight edit and an optional follow-up block."""
    method.before_domain(ctx)
    ctx.block = "domain"
    mixture = method.data_mixture(ctx, examples)
    optimizer = block_optimizer(ctx.settings, ctx.trainable())
    stats: dict[str, Any] = {
        "domain": run_block(ctx, method, mixture, steps_for(len(mixture), ctx.settings), f"train {ctx.domain}", optimizer)}
    stats["n_examples"] = len(mixture)
    apply_edits(ctx, method.edit_weights(ctx))
    follow_up: TrainingBlock | None = method.after_domain(ctx)
    if follow_up is not None:
        ctx.block = follow_up.name
        ctx.log_event({"type": follow_up.name, **follow_up.note})
        with block_settings(ctx, follow_up.settings):
            stats[follow_up.name] = run_block(ctx, method, follow_up.examples, follow_up.steps, f"{follow_up.name} {ctx.domain}",
                                              block_optimizer(ctx.settings, ctx.trainable(), optimizer)
                                              if follow_up.continue_optimizer else None)
    return stats
