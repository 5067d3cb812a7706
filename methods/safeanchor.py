"""SafeAnchor: safety subspace identification (SSI), orthogonal safety-constrained adaptation (OSCA)
and cumulative safety monitoring (CSM)."""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import Field

from harness.core.data import Example

# A module import, not `from ... import`: harness.training imports the methods package (a cycle).
from harness.core.losses import lm_loss
from harness.core.safety_data import CalibrationSet
from methods.base import Method, MethodConfig, TrainingBlock
from methods.lora_utils import (
    LoraPair,
    Subspace,
    batch_mean_fisher,
    collect_grads,
    complete_pairs,
    coverage_rank,
    flatten_pair,
    kl_to_snapshot,
    layer_subspaces,
    lora_pairs,
    merge_bases,
    merge_subspaces,
    remove_component,
    safety_replay,
    unflatten_pair,
)
from methods.registry import register

REPAIR = "csm_repair"
# The loop logs a block as {"type": block name, **note}; the note's "type" wins, and the leaderboard
# counts events of type "csm_trigger" (docs/results-schema.md).
CSM_EVENT = "csm_trigger"
# Batch-stream seed offset of the anchor's safety batches (domains use 1.. and 101..).
_ANCHOR_OFFSET = 3001


class SafeAnchorConfig(MethodConfig):
    # SSI
    calibration_size: int = Field(500, gt=0, description="N calibration examples per Fisher estimate (D_safe)")
    calibration_harmful_share: float = Field(0.5, ge=0, le=1, description="share of harmful->refusal in D_safe "
                                             "(rest benign->helpful, as the reference code)")
    rho: float = Field(0.9, gt=0, le=1, description="share of tr(F_i) the kept eigenvectors V_i cover")
    recompute_first: int = Field(1, ge=0, description="in-domain step at which V_i is first recomputed (0: not)")
    recompute_every: int = Field(50, ge=0, description="then at every multiple of this step (0: not)")
    fisher_batch_size: int = Field(8, gt=0, description="batch size of the per-example gradient passes and of the batch-mean "
                                   "gradients in tr(F_i) of alpha (the reference code's calibration loader: 8)")
    memory_merge: Literal["bases", "fisher"] = Field(
        "bases", description="bases: SVD of [V_old | V_new] keeping rho of the squared singular values (the paper and code); "
        "fisher: eigenvalue-weighted (F_old + F_new) / 2 (ours)")
    # OSCA
    lam: float = Field(0.5, ge=0, description="alpha_i = max(0, 1 - lam * tr(F_i))")
    alpha_traces: Literal["raw", "relative"] = Field(
        "raw", description="raw: the paper's tr(F_i), F as the reference code estimates it (squared batch-mean gradients / N); "
        "relative: tr(F_i) / mean_j tr(F_j) (ours)")
    project: Literal["gradient", "update", "both"] = Field(
        "gradient", description="project the task gradient (the paper), the AdamW update, or both")
    gamma: float = Field(0.1, ge=0, description="weight of the anchor KL(p_{theta_{t-1}} || p_theta) on safety data")
    anchor_batch_size: int | None = Field(None, gt=0, description="safety examples per micro-batch in the anchor KL and "
                                          "the repair loss (None: batch_size / grad_accum, one safety batch per optimizer step)")
    # CSM
    tau: float = Field(0.05, ge=0, lt=1, description="repair when s_t < (1 - tau) s_0")
    repair_steps: int = Field(200, ge=0, description="E_repair: steps of the corrective block (0: monitor only)")
    repair_fraction: float | None = Field(None, gt=0, description="E_repair as this share of the domain's steps instead "
                                          "(paper: 200 / 938 = 0.213; None: repair_steps)")
    beta: float = Field(1.0, ge=0, description="weight of the (unprojected) safety loss during the repair block")
    repair_optimizer: Literal["continue", "fresh"] = Field(
        "continue", description="continue: the repair steps on with the domain's AdamW, as the authors' code passes the "
                                "domain's optimizer to CSM; fresh: a new AdamW (its first steps move every weight by ~lr)")
    repair_safety_examples: int = Field(500, ge=0, description="calibration examples (half harmful, half benign) "
                                        "in the repair data")
    probe_size: int = Field(200, gt=0, description="prompts in the refusal probe: HarmBench val behaviors, "
                            "then held-out calibration harmful prompts")
    # report
    report_spectrum: bool = Field(True, description="report per-layer Fisher spectra (safety vs. domain data) after each domain")
    spectrum_top: int = Field(32, gt=0, description="eigenvalues reported per layer")


def osca_alphas(traces: Mapping[str, float], lam: float, relative: bool = False) -> dict[str, float]:
    """The paper's alpha_i = max(0, 1 - lam * tr(F_i)). With ``relative`` (ours) the traces are
    divided by their mean over layers, so alpha does not depend on the loss scale (a layer at the
    mean trace gets 1 - lam)."""
    scale = sum(traces.values()) / max(1, len(traces)) if relative else 1.0
    if scale <= 0:
        return {layer: 1.0 for layer in traces}
    return {layer: max(0.0, 1.0 - lam * trace / scale) for layer, trace in traces.items()}


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
    F_i = 1/N sum_n g_n g_n^T (g_n = grad of log p(y_n | x_n) w.r.t. vec([B_i; A_i]) over D_safe, N = 500
    calibration pairs, half harmful -> refusal and half benign -> helpful) covering rho = 90% of tr(F_i);
    OSCA steps on g_i <- g_i - (1 - alpha_i) V_i V_i^T g_i for the task gradient only, with
    alpha_i = max(0, 1 - lambda tr(F_i)) (lambda = 0.5, tr(F_i) as the reference code estimates it:
    squared gradients of batch-mean losses, batches of 8, over N), and adds gamma KL(p_{theta_{t-1}} || p_theta)
    on safety data (gamma = 0.1, not projected; one safety batch per optimizer step); CSM measures the
    probe refusal rate s_t after each domain and, if s_t < (1 - tau) s_0 (tau = 0.05), runs E_repair = 200
    steps on safety + domain data with weight beta = 1 on the (unprojected) safety loss, stepping on with the
    domain's AdamW (the authors' code passes the domain's optimizer to CSM). After each domain
    (and its repair) SSI is recomputed and merged into the memory by an SVD of [V_old | V_new] keeping
    rho of the squared singular values, as the paper and its code.

    One coordinate system: SafeAnchor keeps one persistent adapter for the whole sequence (as the
    authors' code does), so a basis in vec([B; A]) means the same directions in every domain. With a
    fresh adapter per domain (new random A) the carried memory would describe another adapter.

    SSI schedule: at B = 0 every lora_A gradient is zero, so a subspace computed before the first step
    protects nothing in A. The in-domain subspaces are therefore recomputed at step ``recompute_first``
    (1) and every ``recompute_every`` (50) steps (ours), each the merge of the memory with the fresh
    estimate (``memory_merge: fisher``, ours, averages the two Fishers instead of the bases).
    Per-example gradients come from batched backward passes (hooks on the LoRA modules); only V_i
    (p x k) and the eigenvalues are kept, computed through the N x N Gram matrix (tr(F_i) = ||G_i||_F^2 / N).

    Anchor: the reference p_{theta_{t-1}} is the model entering the domain, i.e. the same model with
    the adapter at its snapshot from the domain's start (an adapter copy, not a model copy). The repair
    block projects the task gradient as the domain does; the beta-weighted safety loss is added
    unprojected (extra_loss). ``project: update`` or ``both`` also project the AdamW update (ours).
    """

    name = "safeanchor"
    # Estimate: the default micro suite measured 3.4 with 225 domain + 200 repair steps; at micro
    # scale the repair is now 21% of a domain (16 steps), so about 241 steps, and the probe 200 prompts.
    relative_cost = 2.4
    reads_calibration = True
    adapter_policy = "persistent"
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
        self._anchor_snapshot: dict[str, torch.Tensor] = {}

    # ---- hooks -----------------------------------------------------------------------------------
    def prepare(self, ctx) -> None:
        if ctx.refusal_rate is not None:
            self.s0 = float(ctx.refusal_rate(self.probe_prompts(ctx)))

    def before_domain(self, ctx) -> None:
        cfg = self.config
        device = next(iter(ctx.trainable().values())).device
        self.memory = self._with_memory({layer: space for layer, space in self.ssi(ctx).items()},
                                        {layer: space.to(device) for layer, space in self.memory.items()})
        self._set_current(self.memory)
        self._anchor_snapshot = {n: p.detach().clone() for n, p in ctx.trainable().items()}
        replay = safety_replay(self.calibration(ctx), cfg.calibration_size, 0.5, ctx.seed * 1000 + ctx.domain_index)
        self._anchor_stream = ctx.batches(replay, self.anchor_batch_size(ctx.settings),
                                          seed_offset=_ANCHOR_OFFSET + ctx.domain_index)
        self.report = {"osca": {"memory_rank": {layer: s.rank for layer, s in self.memory.items()}}}

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
        loss = cfg.gamma * kl_to_snapshot(ctx.model, ctx.trainable(), self._anchor_snapshot, safety)
        return loss + cfg.beta * lm_loss(ctx.model, safety) if repairing else loss

    def transform_gradients(self, ctx, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._recompute_due(ctx.step):
            self._set_current(self._with_memory(self.ssi(ctx)))
        if self.config.project == "update":
            return grads
        return project_pairs(grads, lora_pairs(grads), self.current, self.alphas)

    def transform_update(self, ctx, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.config.project == "gradient" or ctx.block == REPAIR:
            return update
        return project_pairs(update, lora_pairs(update), self.current, self.alphas)

    def after_domain(self, ctx) -> TrainingBlock | None:
        if self.config.report_spectrum:
            self.report["fisher_spectrum"] = self.spectrum_report(self.ssi(ctx), self._domain_spectra(ctx))
        self.report["osca"].update({"alpha": dict(self.alphas), "rank": {layer: s.rank for layer, s in self.current.items()}})
        return self._monitor(ctx)

    def domain_report(self, ctx) -> dict[str, Any]:
        return self.report

    # ---- SSI -------------------------------------------------------------------------------------
    def calibration(self, ctx) -> CalibrationSet:
        """The calibration pairs SafeAnchor trains and measures on: the harmful prompts the probe
        holds out are left out (the probe must stay disjoint from D_safe)."""
        held_out = set(self._held_out_prompts(ctx))
        return dataclasses.replace(ctx.calibration, harmful=tuple(e for e in ctx.calibration.harmful if e.prompt not in held_out))

    def safety_set(self, ctx) -> list[Example]:
        """D_safe of SSI: the same N seeded calibration pairs at every estimate of a run."""
        cfg = self.config
        return safety_replay(self.calibration(ctx), cfg.calibration_size, cfg.calibration_harmful_share, ctx.seed)

    def ssi(self, ctx) -> dict[str, Subspace]:
        """Fresh safety subspaces of the current adapter (no merge with the memory)."""
        return self._fisher_subspaces(ctx, self.safety_set(ctx))

    def _set_current(self, subspaces: dict[str, Subspace]) -> None:
        """The subspaces OSCA projects on, and their alphas: from the latest estimate's tr(F_i) in the
        reference code's normalisation (the code keeps the new estimate's trace when it merges), or,
        with ``relative``, from the merged per-example traces relative to their mean (ours)."""
        relative = self.config.alpha_traces == "relative"
        self.current = subspaces
        self.alphas = osca_alphas({layer: s.trace if relative else s.batch_trace for layer, s in subspaces.items()},
                                  self.config.lam, relative=relative)

    def _fisher_subspaces(self, ctx, examples: list[Example]) -> dict[str, Subspace]:
        """Per-layer Fisher subspaces, each with its trace as the reference code estimates F (the
        batch-mean gradients of shuffled batches of ``fisher_batch_size``, seeded by the run)."""
        cfg = self.config
        grads = collect_grads(ctx.model, ctx.tokenizer, examples, lora_pairs(ctx.trainable()), cfg.fisher_batch_size,
                              ctx.settings.max_seq_len)
        batch_traces = {layer: float(batch_mean_fisher(g, cfg.fisher_batch_size, ctx.seed).sum()) for layer, g in grads.items()}
        spaces = layer_subspaces(grads, next(ctx.model.parameters()).device, cfg.rho)
        return {layer: dataclasses.replace(space, batch_trace=batch_traces[layer]) for layer, space in spaces.items()}

    def _with_memory(self, fresh: Mapping[str, Subspace], memory: Mapping[str, Subspace] | None = None) -> dict[str, Subspace]:
        memory = self.memory if memory is None else memory
        merge = merge_bases if self.config.memory_merge == "bases" else merge_subspaces
        return {layer: merge(memory[layer], space, self.config.rho) if layer in memory else space
                for layer, space in fresh.items()}

    def _recompute_due(self, step: int) -> bool:
        first, every = self.config.recompute_first, self.config.recompute_every
        return step > 0 and (step == first or (every > 0 and step % every == 0))

    # ---- report ----------------------------------------------------------------------------------
    def _domain_spectra(self, ctx) -> dict[str, Subspace]:
        """The same Fisher on a random sample of the domain's own data (the near-flat control)."""
        rng = random.Random(ctx.seed * 1000 + ctx.domain_index)
        sample_size = min(self.config.calibration_size, len(ctx.domain_examples))
        return self._fisher_subspaces(ctx, rng.sample(ctx.domain_examples, sample_size))

    def spectrum_report(self, safety: Mapping[str, Subspace], random_data: Mapping[str, Subspace]) -> dict[str, Any]:
        top = self.config.spectrum_top
        layers = {}
        for layer, space in safety.items():
            other = random_data[layer]
            layers[layer] = {"k90_safety": coverage_rank(space.eigenvalues, space.trace, 0.9),
                             "k90_random": coverage_rank(other.eigenvalues, other.trace, 0.9),
                             "eigenvalues_safety": space.eigenvalues[:top].tolist(),
                             "eigenvalues_random": other.eigenvalues[:top].tolist(),
                             # tr(F), so a plot of the top eigenvalues normalises as k90 does
                             "trace_safety": float(space.trace), "trace_random": float(other.trace)}
        return {"layers": layers}

    # ---- CSM -------------------------------------------------------------------------------------
    def probe_prompts(self, ctx) -> list[str]:
        if ctx.probe_prompts:
            return list(ctx.probe_prompts[: self.config.probe_size])
        from harness.core.safety_data import PROBE_SPLIT, behaviors, harmful_request

        val = [harmful_request(row).prompt for row in behaviors(PROBE_SPLIT)[: self.config.probe_size]]
        return val + self._held_out_prompts(ctx, len(val))

    def _held_out_prompts(self, ctx, n_val: int | None = None) -> list[str]:
        """Calibration harmful prompts that fill the probe up to probe_size after HarmBench val
        (60 behaviors; the paper's probe has 200): the last ones of the seeded pool."""
        if ctx.probe_prompts:
            return []
        if n_val is None:
            from harness.core.safety_data import PROBE_SPLIT, behaviors

            n_val = min(len(behaviors(PROBE_SPLIT)), self.config.probe_size)
        missing = max(0, self.config.probe_size - n_val)
        return [e.prompt for e in ctx.calibration.harmful[len(ctx.calibration.harmful) - missing:]] if missing else []

    def repair_length(self, ctx) -> int:
        """E_repair: fixed, or a share of this domain's optimizer steps (micro scale)."""
        cfg = self.config
        if cfg.repair_fraction is None or cfg.repair_steps == 0:
            return cfg.repair_steps
        return max(1, round(cfg.repair_fraction * ctx.total_steps))

    def _monitor(self, ctx) -> TrainingBlock | None:
        cfg = self.config
        if self.s0 is None or ctx.refusal_rate is None:
            self.report["csm"] = {"s0": None, "s_t": None, "triggered": False, "repair_steps": 0}
            return None
        s_t = float(ctx.refusal_rate(self.probe_prompts(ctx)))
        threshold = (1 - cfg.tau) * self.s0
        steps = self.repair_length(ctx)
        triggered = s_t < threshold and steps > 0
        record = {"s0": self.s0, "s_t": s_t, "threshold": threshold, "triggered": triggered,
                  "repair_steps": steps if triggered else 0}
        if triggered:
            self.triggers.append({"domain": ctx.domain, **record})
        self.report["csm"] = {**record, "triggers_so_far": len(self.triggers),
                              "repair_steps_so_far": sum(t["repair_steps"] for t in self.triggers)}
        if not triggered:
            return None
        replay = safety_replay(self.calibration(ctx), cfg.repair_safety_examples, 0.5, ctx.seed * 1000 + 500 + ctx.domain_index)
        note = {"type": CSM_EVENT, "block": REPAIR, **record}
        return TrainingBlock(REPAIR, replay + list(ctx.domain_examples), steps, note=note,
                             continue_optimizer=cfg.repair_optimizer == "continue")

    # ---- resumability ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"memory": {layer: s.state() for layer, s in self.memory.items()}, "s0": self.s0, "triggers": self.triggers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory = {layer: Subspace.from_state(s) for layer, s in state["memory"].items()}
        self.s0, self.triggers = state["s0"], list(state["triggers"])
