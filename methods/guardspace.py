"""GuardSpace: adapters initialised in the safety-irrelevant subspace, updates kept in the null space
of the harmful prompts' activations."""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field

from harness.core.batching import IGNORE
from harness.core.errors import ConfigError
from methods.base import Method, MethodConfig
from methods.lora_utils import LoraPair, eval_mode, fixed_batches, lora_pairs
from methods.registry import register


class GuardSpaceConfig(MethodConfig):
    calibration_size: int = Field(256, gt=0, description="harmful calibration examples whose activations give C = X X^T")
    tokens: Literal["prompt", "prompt_and_refusal"] = Field(
        "prompt_and_refusal", description="positions in X: the harmful prompt's, or the prompt's and its refusal's")
    null_space: Literal["tolerance", "energy"] = Field(
        "tolerance", description="tolerance: the eigenvectors of C with eigenvalue <= max(1e-8, null_tolerance * lambda_max) "
        "(the authors' code); energy: the smallest eigen-directions holding at most null_energy of tr(C) (ours)")
    null_tolerance: float = Field(1e-6, ge=0, lt=1, description="tolerance rule: relative eigenvalue threshold (the code: 1e-6)")
    null_energy: float = Field(0.01, ge=0, lt=1, description="energy rule: share of tr(C) the null space may hold")
    damp: float = Field(0.01, gt=0, description="C^{-1} of the decomposition is (C + d * mean(diag C) I)^{-1}, d = damp "
                        "doubled until the float32 inverse is accurate (the code: 0.01)")
    batch_size: int = Field(8, gt=0, description="batch size of the activation passes")


# ---- the two parts, on plain tensors -------------------------------------------------------------
# The authors' code: the absolute floor of the null-space threshold, and the inverse error at which
# its damping stops doubling (||C_d C_d^{-1} - I||_F).
_NULL_FLOOR = 1e-8
_INVERSE_ERROR = 0.05


def null_basis(cov: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Orthonormal N (d_in x m): the eigenvectors of C of (near-)zero eigenvalue, at most
    max(1e-8, tolerance * lambda_max) (the authors' code). For x among the activations, N^T x = 0 up
    to that tolerance; none may qualify (then A, and with it the adapter, cannot move)."""
    eigenvalues, vectors = torch.linalg.eigh(cov.double())
    threshold = max(_NULL_FLOOR, tolerance * float(eigenvalues.abs().max()))
    return vectors[:, eigenvalues <= threshold].to(cov.dtype)


def low_energy_basis(cov: torch.Tensor, energy: float) -> torch.Tensor:
    """Orthonormal N (d_in x m): the eigenvectors of C with the smallest eigenvalues whose sum is at
    most ``energy * tr(C)``. For every column x of X, ||N^T x||^2 summed over X is that sum, so an
    update Delta W N N^T changes the outputs on X by at most ||Delta W||_2 * sqrt(energy * tr(C))."""
    eigenvalues, vectors = torch.linalg.eigh(cov.double())  # ascending
    eigenvalues = eigenvalues.clamp(min=0)
    within = torch.cumsum(eigenvalues, 0) <= energy * eigenvalues.sum() * (1 + 1e-12)
    return vectors[:, within].to(cov.dtype)


def project_rows(matrix: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """M N N^T for orthonormal N, without forming the d_in x d_in projector."""
    return (matrix @ basis) @ basis.T


def damped(cov: torch.Tensor, damp: float) -> torch.Tensor:
    """C + d * mean(diag C) I (float64), d = ``damp`` doubled until the float32 inverse is accurate,
    ||C_d C_d^{-1} - I||_F < 0.05: the authors' code's rule (a singular C has no inverse)."""
    c = cov.double()
    eye = torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    scale = torch.diagonal(c).mean().clamp(min=torch.finfo(torch.float64).tiny)
    while True:
        fixed = c + damp * scale * eye
        single = fixed.float()
        if float(torch.dist(single @ torch.linalg.inv(single), eye.float())) < _INVERSE_ERROR:
            return fixed
        damp *= 2


def safety_irrelevant_init(weight: torch.Tensor, cov: torch.Tensor, rank: int, scale: float,
                           damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B0, A0) from the r smallest components of the covariance-preconditioned SVD W C = U S V^T:
    scale * B0 A0 = U_r S_r V_r^T C^{-1}, split evenly, B0 = U_r sqrt(S_r / scale) and
    A0 = sqrt(S_r / scale) V_r^T C^{-1}. Summed over all components U S V^T C^{-1} = W, so these are
    the parts of W that the harmful activations excite least."""
    w, c = weight.double(), damped(cov, damp)
    u, s, vh = torch.linalg.svd(w @ c, full_matrices=False)  # descending
    root = (s[-rank:] / scale).sqrt()
    b0 = u[:, -rank:] * root
    a0 = root[:, None] * torch.linalg.solve(c, vh[-rank:].T).T  # V_r^T C^{-1} (C symmetric)
    return b0.to(weight.dtype), a0.to(weight.dtype)


@dataclass
class LayerGuard:
    """One layer's null-space basis and what its harmful-output drift is measured against."""

    basis: torch.Tensor          # N, d_in x m
    cov: torch.Tensor            # C, on the CPU (only the report needs it)
    start: torch.Tensor          # scale * B0 A0, on the CPU
    start_output_energy: float   # ||W X||_F^2 = tr(W C W^T)


# ---- activations ---------------------------------------------------------------------------------
class _CovarianceHook:
    """Accumulates X X^T of one module's inputs over the positions the current batch selects."""

    def __init__(self) -> None:
        self.keep: torch.Tensor | None = None
        self.cov: torch.Tensor | None = None

    def __call__(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0][self.keep].float()
        gram = x.T @ x
        self.cov = gram if self.cov is None else self.cov + gram


@contextmanager
def _hooked(model: torch.nn.Module, layers: Iterable[str]) -> Iterator[dict[str, _CovarianceHook]]:
    hooks = {layer: _CovarianceHook() for layer in layers}
    handles = [model.get_submodule(layer).register_forward_hook(hook) for layer, hook in hooks.items()]
    try:
        yield hooks
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def input_covariances(model: torch.nn.Module, tokenizer: Any, examples, layers: list[str], tokens: str,
                      batch_size: int, max_len: int) -> dict[str, torch.Tensor]:
    """C = X X^T (d_in x d_in) of each layer's inputs over the examples' real tokens (the prompt's,
    or the prompt's and the response's)."""
    device = next(model.parameters()).device
    with _hooked(model, layers) as hooks, eval_mode(model):
        for batch in fixed_batches(tokenizer, examples, batch_size, max_len):
            keep = batch["attention_mask"].bool()
            if tokens == "prompt":
                keep &= batch["labels"] == IGNORE
            for hook in hooks.values():
                hook.keep = keep.to(device)
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    return {layer: hook.cov for layer, hook in hooks.items()}


@register
class GuardSpace(Method):
    """GuardSpace (Zhang et al., ICLR 2026, arXiv 2510.14301). Part I, safety-sensitive subspace: with
    X the inputs of a LoRA-adapted weight W on harmful prompts and C = X X^T, factor
    W C = U S V^T; the r components with the smallest singular values are safety-irrelevant and
    initialise the adapter, scale * B A = U_r S_r V_r^T C^{-1} (B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T C^{-1}
    up to the LoRA scale alpha / r); the rest, W' = W - scale * B A, is frozen, so the model starts
    exactly where it was. Part II, harmful-resistant null space: P = N N^T with N the eigenvectors of
    C of (near-)zero eigenvalue; A and every update of A are kept in its row space, A <- A P, so
    Delta W X = scale * (B A - B_0 A_0) X = 0: the outputs on harmful prompts, the refusals, do not
    change while B and A adapt to the task on every other input direction.

    Null space: as the authors' code, the eigenvectors of C with eigenvalue <= max(1e-8, 1e-6 lambda_max);
    ``null_space: energy`` (ours) keeps the smallest eigen-directions holding at most ``null_energy`` of
    tr(C), which bounds the harmful-output change by ||Delta W||_2 sqrt(null_energy tr(C)) where an exact
    null space is empty. C^{-1} is damped as the code: (C + d mean(diag C) I)^{-1}, d = 0.01 doubled
    until the float32 inverse is accurate. A's gradient is projected
    (so Adam's moments see the constrained gradient) and so is A's applied update (Adam's
    per-coordinate scaling and weight decay would leave the null space otherwise). Sequentially, with
    a fresh adapter per domain (``merge_per_domain``, required), both parts are recomputed at the
    start of every domain on the model entering it: its activations, its weights, its refusals.
    The report gives each layer's null-space dimension and its harmful-output drift
    ||Delta W X||_F / ||W X||_F after training (tr(dW C dW^T) / tr(W C W^T), square-rooted).
    """

    name = "guardspace"
    relative_cost = 1.15
    reads_calibration = True
    Config = GuardSpaceConfig

    def __init__(self, config: GuardSpaceConfig | None = None) -> None:
        super().__init__(config)
        self.guards: dict[str, LayerGuard] = {}
        self.report: dict[str, Any] = {}

    # ---- hooks -----------------------------------------------------------------------------------
    def prepare(self, ctx) -> None:
        if ctx.settings.adapter_policy != "merge_per_domain":
            raise ConfigError("guardspace needs training.adapter_policy: merge_per_domain (its adapter is initialised "
                              "from each domain's starting weights). Fix: remove the adapter_policy override for this method.")

    def before_domain(self, ctx) -> None:
        cfg = self.config
        pairs = lora_pairs(ctx.trainable())
        covs = input_covariances(ctx.model, ctx.tokenizer, list(ctx.calibration.harmful[: cfg.calibration_size]), list(pairs),
                                 cfg.tokens, cfg.batch_size, ctx.settings.max_seq_len)
        self.guards = {layer: self._guard_layer(ctx, pair, covs.pop(layer)) for layer, pair in pairs.items()}
        self.report = {}

    @torch.no_grad()
    def _guard_layer(self, ctx, pair: LoraPair, cov: torch.Tensor) -> LayerGuard:
        """Part I and II on one layer: writes W', B0 and A0 P into the model; returns its guard."""
        module = ctx.model.get_submodule(pair.layer)
        weight, scale = module.base_layer.weight, float(module.scaling[pair.adapter])
        a_param, b_param = module.lora_A[pair.adapter].weight, module.lora_B[pair.adapter].weight
        original = weight.detach().float()
        basis = self.null_space(cov)
        b0, a0 = safety_irrelevant_init(original, cov, a_param.shape[0], scale, self.config.damp)
        a0 = project_rows(a0, basis)
        start = scale * b0 @ a0
        weight.copy_((original - start).to(weight.dtype))
        a_param.copy_(a0.to(a_param.dtype))
        b_param.copy_(b0.to(b_param.dtype))
        output_energy = float(torch.trace(original @ cov @ original.T))  # ||W X||_F^2
        return LayerGuard(basis, cov.cpu(), start.cpu(), output_energy)

    def transform_gradients(self, ctx, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._project_a(grads)

    def transform_update(self, ctx, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._project_a(update)

    def after_domain(self, ctx) -> None:
        self.report = {"null_dim": {layer: g.basis.shape[1] for layer, g in self.guards.items()},
                       "d_in": {layer: g.basis.shape[0] for layer, g in self.guards.items()},
                       "harmful_output_drift": self.harmful_output_drift(ctx)}
        return None

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"guardspace": self.report}

    # ---- helpers ---------------------------------------------------------------------------------
    def null_space(self, cov: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return null_basis(cov, cfg.null_tolerance) if cfg.null_space == "tolerance" else low_energy_basis(cov, cfg.null_energy)

    def _project_a(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(tensors)
        for layer, pair in lora_pairs(tensors).items():
            if pair.a in tensors and layer in self.guards:
                basis = self.guards[layer].basis.to(tensors[pair.a])
                out[pair.a] = project_rows(tensors[pair.a], basis)
        return out

    @torch.no_grad()
    def harmful_output_drift(self, ctx) -> dict[str, float]:
        """||Delta W X||_F / ||W X||_F per layer, Delta W = scale * B A - scale * B0 A0, from C alone."""
        params = ctx.trainable()
        drift = {}
        for layer, pair in lora_pairs(params).items():
            guard = self.guards[layer]
            scale = float(ctx.model.get_submodule(layer).scaling[pair.adapter])
            delta = scale * params[pair.b].float().cpu() @ params[pair.a].float().cpu() - guard.start
            change = float(torch.trace(delta @ guard.cov @ delta.T))
            drift[layer] = (max(change, 0.0) / guard.start_output_energy) ** 0.5 if guard.start_output_energy > 0 else 0.0
        return drift
