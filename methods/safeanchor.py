"""SafeAnchor: safety subspace identification (SSI), orthogonal safety-constrained adaptation (OSCA)
and cumulative safety monitoring (CSM)."""
from __future__ import annotations

import random
from typing import Any, Literal, Mapping

import torch
from pydantic import Field

from harness.core.data import Example
# A module import, not `from ... import`: harness.training imports the methods package (a cycle).
from harness.core.losses import lm_loss
from methods.registry import register
from methods.base import Method, MethodConfig, TrainingBlock
from methods.lora_utils import (LoraPair, Subspace, collect_grads, complete_pairs, coverage_rank, flatten_pair,
                                kl_to_disabled_adapter, layer_subspaces, lora_pairs, merge_subspaces, remove_component,
                                safety_replay, unflatten_pair)

REPAIR = "csm_repair"
# The loop logs a block as {"type": block name, **note}; the note's "type" wins, and the leaderboard
# counts events of type "csm_trigger" (docs/results-schema.md).
CSM_EVENT = "csm_trigger"
# Batch-stream seed offset of the anchor's safety batches (domains use 1.. and 101..).
_ANCHOR_OFFSET = 3001


class SafeAnchorConfig(MethodConfig):
    # SSI
    calibration_size: int = Field(500, gt=0, description="N harmful->refusal calibration examples per Fisher estimate")
    rho: float = Field(0.9, gt=0, le=1, description="share of tr(F_i) the kept eigenvectors V_i cover")
    recompute_first: int = Field(1, ge=0, description="in-domain step at which V_i is first recomputed (0: not)")
    recompute_every: int = Field(50, ge=0, description="then at every multiple of this step (0: not)")
    fisher_batch_size: int = Field(8, gt=0, description="batch size of the batched per-example gradient passes")
    # OSCA
    lam: float = Field(0.5, ge=0, description="alpha_i = max(0, 1 - lam * tr(F_i) / mean_j tr(F_j))")
    project: Literal["gradient", "update", "both"] = Field("both", description="project the task gradient, the AdamW update, or both")
    gamma: float = Field(0.1, ge=0, description="weight of the anchor KL(p_{theta_{t-1}} || p_theta) on safety data")
    anchor_batch_size: int | None = Field(None, gt=0, description="safety examples per micro-batch in the anchor KL and "
                                          "the repair loss (None: batch_size / grad_accum, one safety batch per optimizer step)")
    # CSM
    tau: float = Field(0.05, ge=0, lt=1, description="repair when s_t < (1 - tau) s_0")
    repair_steps: int = Field(200, ge=0, description="E_repair: steps of the corrective block (0: monitor only)")
    beta: float = Field(1.0, ge=0, description="weight of the (unprojected) safety loss during the repair block")
    repair_safety_examples: int = Field(500, ge=0, description="calibration examples (half harmful, half benign) in the repair data")
    probe_size: int = Field(200, gt=0, description="HarmBench val behaviors in the refusal probe")
    # report
    report_spectrum: bool = Field(True, description="report per-layer Fisher spectra (safety vs. domain data) after each domain")
    spectrum_top: int = Field(32, gt=0, description="eigenvalues reported per layer")


def osca_alphas(traces: Mapping[str, float], lam: float) -> dict[str, float]:
    """alpha_i = max(0, 1 - lam * tr(F_i) / mean_j tr(F_j)): traces relative to the mean over layers,
    so alpha does not depend on the loss scale (a layer at the mean trace gets 1 - lam)."""
    mean = sum(traces.values()) / max(1, len(traces))
    if mean <= 0:
        return {layer: 1.0 for layer in traces}
    return {layer: max(0.0, 1.0 - lam * trace / mean) for layer, trace in traces.items()}


def project_pairs(tensors: Mapping[str, torch.Tensor], pairs: Mapping[str, LoraPair], subspaces: Mapping[str, Subspace],
                  alphas: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """OSCA per layer: t_i <- t_i - (1 - alpha_i) V_i (V_i^T t_i) on vec([B_i; A_i]); other names unchanged."""
    out = dict(tensors)
    for pair in complete_pairs(pairs, tensors):
        space = subspaces.get(pair.layer)
        if space is None or space.rank == 0:
            continue
        vector = remove_component(flatten_pair(pair, tensors), space.basis, 1.0 - alphas.get(pair.layer, 1.0))
        out.update(unflatten_pair(pair, vector, tensors))
    return out


@register
class SafeAnchor(Method):
    """SafeAnchor: SSI keeps, per LoRA layer i, the eigenvectors V_i of the empirical safety Fisher
    F_i = 1/N sum_n g_n g_n^T (g_n = grad of log p(refusal | harmful prompt n) w.r.t. vec([B_i; A_i]),
    N = 500) covering rho = 90% of tr(F_i); OSCA steps on g_i <- g_i - (1 - alpha_i) V_i V_i^T g_i with
    alpha_i = max(0, 1 - lambda tr(F_i)) (lambda = 0.5, tr relative to the mean over layers), projects
    the AdamW update the same way, and adds gamma KL(p_{theta_{t-1}} || p_theta) on safety data
    (gamma = 0.1, not projected; one safety batch per optimizer step); CSM measures the probe
    refusal rate s_t after each domain and, if s_t < (1 - tau) s_0 (tau = 0.05), runs E_repair =
    200 OSCA steps on safety + domain data with weight beta = 1 on the safety loss.

    SSI schedule: a fresh adapter has B = 0, so every lora_A gradient is zero and a subspace computed
    at step 0 protects nothing in A. V_i is therefore computed when the domain starts, recomputed at
    step ``recompute_first`` (1: after one update) and every ``recompute_every`` (50) steps, and once
    more after the domain; that final one is SVD-merged into the memory carried to later domains, and
    every in-domain subspace is the merge of the memory with the fresh estimate. Merging averages the
    two Fishers, (F_old + F_new) / 2, through their low-rank factors; rho is measured against the
    averaged full traces so repeated merges do not shrink coverage. Per-example gradients come from
    batched backward passes (hooks on the LoRA modules); only V_i (p x k) and the eigenvalues are kept,
    computed through the N x N Gram matrix (tr(F_i) = ||G_i||_F^2 / N).

    Anchor and projections: the anchor's reference is the model with the adapter disabled, which under
    merge_per_domain is exactly the frozen model before the current domain (under persistent, the
    starting aligned model). The task gradient is projected in transform_gradients; the anchor's
    gradient bypasses it (extra_loss), but the update projection after AdamW acts on the whole step,
    so with alpha_i = 0 nothing moves inside V_i and the anchor works in the complement. During the
    repair block only the task gradient is projected (no update projection), so the beta-weighted
    safety loss, added unprojected through extra_loss, can restore the protected directions.
    """

    name = "safeanchor"
    relative_cost = 3.4
    Config = SafeAnchorConfig

    def __init__(self, config: SafeAnchorConfig | None = None) -> None:
        super().__init__(config)
        self.memory: dict[str, Subspace] = {}
        self.current: dict[str, Subspace] = {}
        self.alphas: dict[str, float] = {}
        self.s0: float | None = None
        self.triggers: list[dict[str, Any]] = []
        self.report: dict[str, Any] = {}
        self._anchor_stream = None

    # ---- hooks -----------------------------------------------------------------------------------
    def prepare(self, ctx) -> None:
        if ctx.refusal_rate is not None:
            self.s0 = float(ctx.refusal_rate(self.probe_prompts(ctx)))

    def before_domain(self, ctx) -> None:
        cfg = self.config
        device = next(iter(ctx.trainable().values())).device
        self.memory = {layer: space.to(device) for layer, space in self.memory.items()}
        self.refresh(ctx)
        replay = safety_replay(ctx.calibration, cfg.calibration_size, 0.5, ctx.seed * 1000 + ctx.domain_index)
        self._anchor_stream = ctx.batches(replay, self.anchor_batch_size(ctx.settings), seed_offset=_ANCHOR_OFFSET + ctx.domain_index)
        self.report = {}

    def anchor_batch_size(self, settings) -> int:
        """The expectation over safety data in the anchor term is estimated on one batch per
        optimizer step, spread over its micro-batches (a KL per micro-batch of a full batch would
        spend grad_accum times the compute on one estimate: measured 1.60x a Standard step, not 1.34x)."""
        return self.config.anchor_batch_size or max(1, settings.batch_size // settings.grad_accum)

    def extra_loss(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        cfg = self.config
        repairing = ctx.block == REPAIR and cfg.beta > 0
        if cfg.gamma == 0 and not repairing:
            return None
        device = next(iter(ctx.trainable().values())).device
        safety = {k: v.to(device) for k, v in next(self._anchor_stream).items()}
        loss = cfg.gamma * kl_to_disabled_adapter(ctx.model, safety)
        return loss + cfg.beta * lm_loss(ctx.model, safety) if repairing else loss

    def transform_gradients(self, ctx, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._recompute_due(ctx.step):
            self.refresh(ctx)
        if self.config.project == "update":
            return grads
        return project_pairs(grads, lora_pairs(grads), self.current, self.alphas)

    def transform_update(self, ctx, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.config.project == "gradient" or ctx.block == REPAIR:
            return update
        return project_pairs(update, lora_pairs(update), self.current, self.alphas)

    def after_domain(self, ctx) -> TrainingBlock | None:
        final = self.ssi(ctx)
        self.memory = self._with_memory(final)
        if self.config.report_spectrum:
            self.report["fisher_spectrum"] = self.spectrum_report(final, self._domain_spectra(ctx))
        self.report["osca"] = {"alpha": dict(self.alphas), "rank": {layer: s.rank for layer, s in self.current.items()}}
        return self._monitor(ctx)

    def domain_report(self, ctx) -> dict[str, Any]:
        return self.report

    # ---- SSI -------------------------------------------------------------------------------------
    def ssi(self, ctx) -> dict[str, Subspace]:
        """Fresh safety subspaces of the current adapter (no merge with the memory)."""
        return self._fisher_subspaces(ctx, list(ctx.calibration.harmful[: self.config.calibration_size]))

    def refresh(self, ctx) -> None:
        """Recompute the subspaces OSCA projects on (memory merged with a fresh estimate) and alphas."""
        self.current = self._with_memory(self.ssi(ctx))
        self.alphas = osca_alphas({layer: s.trace for layer, s in self.current.items()}, self.config.lam)

    def _fisher_subspaces(self, ctx, examples: list[Example]) -> dict[str, Subspace]:
        cfg = self.config
        grads = collect_grads(ctx.model, ctx.tokenizer, examples, lora_pairs(ctx.trainable()), cfg.fisher_batch_size, ctx.settings.max_seq_len)
        return layer_subspaces(grads, next(ctx.model.parameters()).device, cfg.rho)

    def _with_memory(self, fresh: Mapping[str, Subspace]) -> dict[str, Subspace]:
        rho = self.config.rho
        return {layer: merge_subspaces(self.memory[layer], space, rho) if layer in self.memory else space
                for layer, space in fresh.items()}

    def _recompute_due(self, step: int) -> bool:
        first, every = self.config.recompute_first, self.config.recompute_every
        return step > 0 and (step == first or (every > 0 and step % every == 0))

    # ---- report ----------------------------------------------------------------------------------
    def _domain_spectra(self, ctx) -> dict[str, Subspace]:
        """The same Fisher on a random sample of the domain's own data (the near-flat control)."""
        rng = random.Random(ctx.seed * 1000 + ctx.domain_index)
        return self._fisher_subspaces(ctx, rng.sample(ctx.domain_examples, min(self.config.calibration_size, len(ctx.domain_examples))))

    def spectrum_report(self, safety: Mapping[str, Subspace], random_data: Mapping[str, Subspace]) -> dict[str, Any]:
        top = self.config.spectrum_top
        layers = {}
        for layer, space in safety.items():
            other = random_data[layer]
            layers[layer] = {"k90_safety": coverage_rank(space.eigenvalues, space.trace, 0.9),
                             "k90_random": coverage_rank(other.eigenvalues, other.trace, 0.9),
                             "eigenvalues_safety": space.eigenvalues[:top].tolist(),
                             "eigenvalues_random": other.eigenvalues[:top].tolist()}
        return {"layers": layers}

    # ---- CSM -------------------------------------------------------------------------------------
    def probe_prompts(self, ctx) -> list[str]:
        if ctx.probe_prompts:
            return list(ctx.probe_prompts[: self.config.probe_size])
        from harness.core.safety_data import PROBE_SPLIT, behaviors, harmful_request

        return [harmful_request(row).prompt for row in behaviors(PROBE_SPLIT)[: self.config.probe_size]]

    def _monitor(self, ctx) -> TrainingBlock | None:
        cfg = self.config
        if self.s0 is None or ctx.refusal_rate is None:
            self.report["csm"] = {"s0": None, "s_t": None, "triggered": False}
            return None
        s_t = float(ctx.refusal_rate(self.probe_prompts(ctx)))
        threshold = (1 - cfg.tau) * self.s0
        record = {"s0": self.s0, "s_t": s_t, "threshold": threshold, "triggered": s_t < threshold and cfg.repair_steps > 0}
        if record["triggered"]:
            self.triggers.append({"domain": ctx.domain, **record})
        self.report["csm"] = {**record, "triggers_so_far": len(self.triggers)}
        if not record["triggered"]:
            return None
        replay = safety_replay(ctx.calibration, cfg.repair_safety_examples, 0.5, ctx.seed * 1000 + 500 + ctx.domain_index)
        note = {"type": CSM_EVENT, "block": REPAIR, **record}
        return TrainingBlock(REPAIR, replay + list(ctx.domain_examples), cfg.repair_steps, note=note)

    # ---- resumability ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"memory": {layer: s.state() for layer, s in self.memory.items()}, "s0": self.s0, "triggers": self.triggers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory = {layer: Subspace.from_state(s) for layer, s in state["memory"].items()}
        self.s0, self.triggers = state["s0"], list(state["triggers"])
