"""EWC + LoRA: elastic weight consolidation on the adapter parameters, sequential (online) version."""
from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from harness.core.data import Example
from methods.base import Method, MethodConfig
from methods.lora_utils import batch_mean_fisher, collect_grads, lora_pairs, unflatten_pair
from methods.registry import register


class EWCConfig(MethodConfig):
    lam: float = Field(100.0, ge=0, description="penalty weight lambda in lambda * sum F (theta - theta*)^2 "
                       "(the SafeAnchor reference code: 100)")
    fisher_source: Literal["previous_domain", "safety"] = Field(
        "previous_domain", description="previous_domain: Fisher of the domains trained so far; "
        "safety: of the harmful->refusal calibration set")
    decay: float = Field(0.0, ge=0, le=1, description="online EWC: a domain's Fisher is weighted decay^(its age in domains) "
                         "(0: the previous domain's only, as the SafeAnchor reference code; 1: all earlier domains equally)")
    fisher_samples: int = Field(200, gt=0, description="examples per Fisher estimate (per domain, or of the safety set)")
    fisher_batch_size: int = Field(8, gt=0, description="batch of the batch-mean gradients the Fisher squares (the reference "
                                   "code's domain loader: 8), and of the gradient passes")


def ewc_penalty(params: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor],
                lam: float) -> torch.Tensor:
    """lambda * sum_j F_j (theta_j - theta*_j)^2 over the parameters that have a Fisher (no 1/2: the
    SafeAnchor reference code's EWC baseline)."""
    return lam * sum((fisher[n] * (params[n] - anchor[n]).pow(2)).sum() for n in fisher)


@register
class EWC(Method):
    """EWC + LoRA: minimise L_task(theta) + lambda * sum_j F_j (theta_j - theta*_j)^2 (lambda = 100) over the LoRA
    parameters, where F is the diagonal Fisher as the SafeAnchor reference code estimates it (the squared
    gradient of each batch's mean loss, batches of 8, summed and divided by the examples) and theta*
    the adapter at the start of the domain, i.e. the model that left the previous domain (with
    merge_per_domain: the fresh adapter, B = 0). F is evaluated at theta* in the current adapter's
    coordinates, on the earlier domains' data (online, weighted decay^age) or on the safety set.

    Why at the start of a domain rather than the end of the previous one: with merge_per_domain every
    domain gets a fresh adapter with a new random A, and B's gradients depend on A, so a Fisher of the
    previous adapter's coordinates would not describe the new ones. The model at theta* is the merged
    previous model either way. At B = 0 every lora_A gradient is zero, so F (and the penalty) constrain B
    only: moving A alone does not change the model while B stays near 0. ``fisher_source: safety`` is
    re-estimated on the safety set whenever the adapter is fresh (every domain under merge_per_domain,
    once under persistent) for the same reason. The first domain has no penalty under previous_domain.
    """

    name = "ewc"
    relative_cost = 1.1
    reads_calibration = True
    Config = EWCConfig

    def __init__(self, config: EWCConfig | None = None) -> None:
        super().__init__(config)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.domain_samples: list[list[tuple[str, str, str]]] = []

    # ---- hooks -----------------------------------------------------------------------------------
    def before_domain(self, ctx) -> None:
        cfg = self.config
        fresh_adapter = ctx.settings.adapter_policy == "merge_per_domain" or not self.anchor
        if cfg.fisher_source == "safety":
            if fresh_adapter:
                self.anchor = self._snapshot(ctx)
                self.fisher = self._fisher(ctx, [(list(ctx.calibration.harmful[: cfg.fisher_samples]), 1.0)])
            self._to_device(ctx)
            return
        self.anchor = self._snapshot(ctx)
        n = len(self.domain_samples)
        weighted = [([Example(*row) for row in rows], cfg.decay ** (n - 1 - j)) for j, rows in enumerate(self.domain_samples)
                    if j == n - 1 or cfg.decay > 0]  # 0 ** 0 = 1: the previous domain always counts
        self.fisher = self._fisher(ctx, weighted) if weighted else {}

    def extra_loss(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.fisher or self.config.lam == 0:
            return None
        return ewc_penalty(ctx.trainable(), self.anchor, self.fisher, self.config.lam)

    def after_domain(self, ctx) -> None:
        if self.config.fisher_source == "previous_domain":
            rng = random.Random(ctx.seed * 1000 + ctx.domain_index)
            sample = rng.sample(ctx.domain_examples, min(self.config.fisher_samples, len(ctx.domain_examples)))
            self.domain_samples.append([(e.prompt, e.response, e.source) for e in sample])
        return None

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"ewc": {"fisher_sum": float(sum(f.sum() for f in self.fisher.values())) if self.fisher else 0.0}}

    # ---- Fisher ----------------------------------------------------------------------------------
    def _fisher(self, ctx, weighted_sets: Sequence[tuple[list[Example], float]]) -> dict[str, torch.Tensor]:
        params = ctx.trainable()
        pairs = lora_pairs(params)
        total: dict[str, torch.Tensor] = {}
        batch_size = self.config.fisher_batch_size
        for examples, weight in weighted_sets:
            grads = collect_grads(ctx.model, ctx.tokenizer, examples, pairs, batch_size, ctx.settings.max_seq_len)
            for layer, g in grads.items():  # shuffled batches, as the reference's loader; on the CPU, where G is
                total[layer] = total.get(layer, 0) + weight * batch_mean_fisher(g, batch_size, ctx.seed).to(g.dtype)
        fisher: dict[str, torch.Tensor] = {}
        for layer, vector in total.items():
            fisher.update(unflatten_pair(pairs[layer], vector.to(params[pairs[layer].a]), params))  # dtype and device
        return fisher

    @staticmethod
    def _snapshot(ctx) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in ctx.trainable().items()}

    def _to_device(self, ctx) -> None:
        params = ctx.trainable()
        self.fisher = {n: f.to(params[n].device) for n, f in self.fisher.items()}
        self.anchor = {n: a.to(params[n].device) for n, a in self.anchor.items()}

    # ---- resumability ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"fisher": {n: f.cpu() for n, f in self.fisher.items()}, "anchor": {n: a.cpu() for n, a in self.anchor.items()},
                "domain_samples": self.domain_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher, self.anchor = dict(state["fisher"]), dict(state["anchor"])
        self.domain_samples = [list(map(tuple, rows)) for rows in state["domain_samples"]]
