"""SafeGrad + LoRA: gradient surgery against a KL alignment gradient, every step."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from methods.base import Method, MethodConfig
from methods.lora_utils import kl_to_disabled_adapter, lora_pairs, safety_replay
from methods.registry import register

# Batch-stream seed offset of the alignment batches (domains use 1.. and 101..).
_STREAM_OFFSET = 5001
# A KL (nats per token) this small means the model equals its reference up to round-off: the true
# gradient is 0 there, and projecting on the round-off noise would remove an arbitrary direction.
_KL_FLOOR = 1e-10


class SafeGradConfig(MethodConfig):
    projection: Literal["global", "per_layer"] = Field(
        "global", description="conflict test and projection over all LoRA parameters, or per LoRA layer ([B; A])")
    add_alignment_gradient: bool = Field(True, description="step on g_u' + g_a (the KL alignment loss is learned) "
                                         "rather than g_u' alone")
    project: Literal["gradient", "update", "both"] = Field("gradient", description="surgery on the gradient (the paper), "
                                                           "on the update after AdamW, or both (ours)")
    alignment_batch_size: int = Field(4, gt=0, description="calibration examples per alignment batch")
    alignment_examples: int = Field(200, gt=0, description="calibration examples the alignment batches are drawn from")
    harmful_share: float = Field(0.5, ge=0, le=1, description="share of harmful->refusal among them (rest benign->helpful)")


def surgery(vectors: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
            groups: Sequence[Sequence[str]]) -> tuple[dict[str, torch.Tensor], int]:
    """Per group of names: if v . r < 0, v <- v - (v . r / ||r||^2) r. A zero reference changes nothing
    (at a fresh adapter the KL and its gradient are exactly 0). Returns new vectors and #conflicts."""
    out, conflicts = dict(vectors), 0
    for names in groups:
        names = [n for n in names if n in vectors and n in reference]
        dot = sum(float((vectors[n].double() * reference[n].double()).sum()) for n in names)
        norm_sq = sum(float(reference[n].double().pow(2).sum()) for n in names)
        if norm_sq > 0 and dot < 0:
            conflicts += 1
            for n in names:
                out[n] = vectors[n] - (dot / norm_sq) * reference[n].to(vectors[n].dtype)
    return out, conflicts


@register
class SafeGrad(Method):
    """SafeGrad + LoRA: every step, g_a = grad of KL(p_ref || p_theta) on a small calibration batch
    (p_ref = the model with the adapter disabled); if g_u . g_a < 0, g_u <- g_u - (g_u . g_a / ||g_a||^2) g_a,
    and the step uses g_u' + g_a (add_alignment_gradient), so the optimizer descends the KL. The paper's
    surgery is on the gradient only (``project: gradient``); ``update`` or ``both`` (ours) also give the
    update after AdamW the same surgery (u conflicts when u . g_a > 0), since Adam's scaling can undo a
    gradient projection. p_ref is the aligned model at every domain, as in the paper: SafeGrad keeps one persistent adapter
    across the sequence, so disabling it gives the aligned weights exactly (no second model copy).
    """

    name = "safegrad"
    relative_cost = 1.15
    reads_calibration = True
    adapter_policy = "persistent"
    Config = SafeGradConfig

    def __init__(self, config: SafeGradConfig | None = None) -> None:
        super().__init__(config)
        self._stream = None
        self._alignment_grad: dict[str, torch.Tensor] = {}
        self.counts = {"steps": 0, "gradient_conflicts": 0, "update_conflicts": 0}

    def before_domain(self, ctx) -> None:
        cfg = self.config
        examples = safety_replay(ctx.calibration, cfg.alignment_examples, cfg.harmful_share, ctx.seed * 1000 + ctx.domain_index)
        self._stream = ctx.batches(examples, cfg.alignment_batch_size, seed_offset=_STREAM_OFFSET + ctx.domain_index)
        self.counts = {"steps": 0, "gradient_conflicts": 0, "update_conflicts": 0}

    def transform_gradients(self, ctx, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._alignment_grad = self.alignment_gradient(ctx)
        self.counts["steps"] += 1
        return self.gradient_rule(grads, self._alignment_grad)

    def transform_update(self, ctx, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.update_rule(update, self._alignment_grad)

    # ---- the rules -------------------------------------------------------------------------------
    def gradient_rule(self, grads: Mapping[str, torch.Tensor], g_a: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Surgery of the task gradient against g_a, then (optionally) g_a added."""
        out = dict(grads)
        if self.config.project in ("gradient", "both"):
            out, conflicts = surgery(grads, g_a, self._groups(grads))
            self.counts["gradient_conflicts"] += conflicts
        if self.config.add_alignment_gradient:
            out = {n: g + g_a[n] if n in g_a else g for n, g in out.items()}
        return out

    def update_rule(self, update: Mapping[str, torch.Tensor], g_a: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Surgery of the AdamW update: descending the alignment loss means moving along -g_a, so an
        update conflicts when u . (-g_a) < 0."""
        if self.config.project == "gradient":
            return dict(update)
        out, conflicts = surgery(update, {n: -g for n, g in g_a.items()}, self._groups(update))
        self.counts["update_conflicts"] += conflicts
        return out

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"safegrad": dict(self.counts)}

    def _groups(self, tensors: Mapping[str, torch.Tensor]) -> list[list[str]]:
        if self.config.projection == "global":
            return [list(tensors)]
        pairs = lora_pairs(tensors)
        paired = {n for p in pairs.values() for n in (p.a, p.b)}
        return [[p.b, p.a] for p in pairs.values()] + [[n] for n in tensors if n not in paired]

    def alignment_gradient(self, ctx) -> dict[str, torch.Tensor]:
        """g_a: gradient of KL(p_ref || p_theta) on the next alignment batch (zeros while the KL is 0)."""
        params = ctx.trainable()
        device = next(iter(params.values())).device
        batch = {k: v.to(device) for k, v in next(self._stream).items()}
        with torch.enable_grad():
            kl = kl_to_disabled_adapter(ctx.model, batch)
            if float(kl.detach()) <= _KL_FLOOR:
                return {n: torch.zeros_like(p) for n, p in params.items()}
            grads = torch.autograd.grad(kl, list(params.values()), allow_unused=True)
        return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads, strict=True)}
