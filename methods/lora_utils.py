"""Helpers shared by methods: LoRA (A, B) pairs, batched per-example gradients, Fisher subspaces from
the N x N Gram matrix, projections that never form V V^T (or any p x p matrix), a response-token KL
against the adapter-disabled model, and balanced safety replay data.

Conventions: a LoRA layer's parameter vector is ``vec([B; A]) = cat(B.flatten(), A.flatten())``
(B is out x r, A is r x in); a subspace basis V is p x k with orthonormal columns.
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from harness.core.batching import collate, encode_example
from harness.core.data import Example

# A module import, not `from ... import`: harness.training imports the methods package (a cycle).
from harness.core.losses import labelled_logits, lm_loss
from harness.core.safety_data import CalibrationSet

_LORA_PARAM = re.compile(r"^(?P<layer>.+)\.lora_(?P<part>[AB])\.(?P<adapter>[^.]+)\.weight$")


# ---- LoRA pairs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoraPair:
    """One LoRA layer: its module path, adapter name and the parameter names of A and B."""

    layer: str
    adapter: str
    a: str
    b: str


def lora_pairs(names: Iterable[str]) -> dict[str, LoraPair]:
    """LoRA layers found among parameter names (e.g. ``ctx.trainable()``), keyed by module path."""
    parts: dict[tuple[str, str], dict[str, str]] = {}
    for name in names:
        match = _LORA_PARAM.match(name)
        if match:
            parts.setdefault((match["layer"], match["adapter"]), {})[match["part"]] = name
    pairs: dict[str, LoraPair] = {}
    for (layer, adapter), found in sorted(parts.items()):
        if set(found) != {"A", "B"}:
            continue
        if layer in pairs:
            raise ValueError(f"{layer} has more than one trainable LoRA adapter; methods expect one")
        pairs[layer] = LoraPair(layer, adapter, found["A"], found["B"])
    return pairs


def flatten_pair(pair: LoraPair, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """vec([B; A]) of one layer from a name -> tensor mapping (gradients, updates or parameters)."""
    return torch.cat([tensors[pair.b].reshape(-1), tensors[pair.a].reshape(-1)])


def unflatten_pair(pair: LoraPair, vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten_pair`, shaped like ``like``."""
    n_b = like[pair.b].numel()
    return {pair.b: vector[:n_b].view_as(like[pair.b]), pair.a: vector[n_b:].view_as(like[pair.a])}


def complete_pairs(pairs: Mapping[str, LoraPair], tensors: Mapping[str, torch.Tensor]) -> list[LoraPair]:
    """The pairs whose A and B both appear in ``tensors`` (a parameter without a gradient is absent)."""
    return [p for p in pairs.values() if p.a in tensors and p.b in tensors]


# ---- projections -----------------------------------------------------------------------------------
def remove_component(vector: torch.Tensor, basis: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """``vector - strength * V (V^T vector)`` for orthonormal V (p x k), without forming V V^T."""
    if basis.shape[1] == 0 or strength == 0.0:
        return vector
    basis = basis.to(vector.dtype)
    return vector - strength * (basis @ (basis.T @ vector))


# ---- per-example gradients ---------------------------------------------------------------------------
class _Capture:
    """Input activations and output gradients of one LoRA linear module during one batch."""

    def __init__(self) -> None:
        self.inputs: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None

    def forward_hook(self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self.inputs = inputs[0].detach()
        output.register_hook(self._keep_grad)

    def _keep_grad(self, grad: torch.Tensor) -> None:
        self.grad = grad.detach()

    def weight_grads(self, batch_size: int, weight: torch.Tensor) -> torch.Tensor:
        """Per-example d loss / d W = sum over positions of grad_out^T x: (batch, out, in)."""
        if self.grad is None or self.inputs is None:
            return torch.zeros(batch_size, *weight.shape, device=weight.device)
        grad = self.grad.reshape(batch_size, -1, self.grad.shape[-1]).float()
        inputs = self.inputs.reshape(batch_size, -1, self.inputs.shape[-1]).float()
        return torch.einsum("bto,bti->boi", grad, inputs)


@contextmanager
def _captured(model: torch.nn.Module, pairs: Mapping[str, LoraPair]) -> Iterator[dict[str, tuple[_Capture, _Capture]]]:
    captures: dict[str, tuple[_Capture, _Capture]] = {}
    handles = []
    for layer, pair in pairs.items():
        module = model.get_submodule(layer)
        capture_a, capture_b = _Capture(), _Capture()
        handles.append(module.lora_A[pair.adapter].register_forward_hook(capture_a.forward_hook))
        handles.append(module.lora_B[pair.adapter].register_forward_hook(capture_b.forward_hook))
        captures[layer] = (capture_a, capture_b)
    try:
        yield captures
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Deterministic forward passes (no dropout) for measurements taken in the middle of training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def per_example_grads(model: torch.nn.Module, batch: dict[str, torch.Tensor], pairs: Mapping[str, LoraPair],
                      to: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Per-example gradients of the per-example response NLL w.r.t. vec([B; A]) of every layer,
    from one batched backward pass (hooks on the LoRA modules: input activations x output gradients).
    Returns layer -> (batch, p) float32, moved to ``to`` layer by layer as each is formed (so the
    accelerator never holds more than one layer's rows). Parameter ``.grad`` fields are left untouched."""
    batch_size = batch["input_ids"].shape[0]
    modules = {layer: model.get_submodule(layer) for layer in pairs}
    weights = {layer: (modules[layer].lora_A[p.adapter].weight, modules[layer].lora_B[p.adapter].weight)
               for layer, p in pairs.items()}
    with _captured(model, pairs) as captures, torch.enable_grad():
        losses = lm_loss(model, batch, per_example=True)
        # Examples are independent, so the gradient of the sum w.r.t. example i's activations is
        # the gradient of loss_i alone: the hooks see per-example output gradients.
        torch.autograd.grad(losses.sum(), [w for pair in weights.values() for w in pair], allow_unused=True)
    grads = {}
    for layer, (capture_a, capture_b) in captures.items():
        weight_a, weight_b = weights[layer]
        grad_b = capture_b.weight_grads(batch_size, weight_b)
        grad_a = capture_a.weight_grads(batch_size, weight_a)
        grads[layer] = torch.cat([grad_b.flatten(1), grad_a.flatten(1)], dim=1).to(to or grad_b.device)
    return grads


def fixed_batches(tokenizer: Any, examples: Sequence[Example], batch_size: int,
                  max_len: int) -> Iterator[dict[str, torch.Tensor]]:
    """Every example exactly once, in length order (little padding), deterministic."""
    encoded = sorted((encode_example(tokenizer, e, max_len) for e in examples), key=lambda pair: len(pair[0]))
    for start in range(0, len(encoded), batch_size):
        yield collate(encoded[start : start + batch_size], tokenizer.pad_token_id)


def collect_grads(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], pairs: Mapping[str, LoraPair],
                  batch_size: int, max_len: int) -> dict[str, torch.Tensor]:
    """Per-example gradient matrices G (N x p) of every layer over ``examples`` (eval mode).

    G is kept in host memory: all layers together are large at 7B (128 LoRA layers x N=500 x
    p=131,072 floats = 31 GiB), so the accelerator holds one batch's gradients at a time and a
    consumer moves one layer's G to the device when it needs it."""
    device = next(model.parameters()).device
    rows: dict[str, list[torch.Tensor]] = {layer: [] for layer in pairs}
    with eval_mode(model):
        for batch in fixed_batches(tokenizer, examples, batch_size, max_len):
            batch = {k: v.to(device) for k, v in batch.items()}
            for layer, grads in per_example_grads(model, batch, pairs, to="cpu").items():
                rows[layer].append(grads)
    # Each layer's chunks are dropped as its G is formed: host memory peaks at G plus one layer, not 2 G.
    return {layer: torch.cat(rows.pop(layer)) for layer in list(rows)}


# ---- Fisher subspaces -----------------------------------------------------------------------------
@dataclass
class Subspace:
    """Top eigenvectors of an empirical Fisher F (p x p, never formed): ``basis`` (p x k, orthonormal)
    pairs with ``eigenvalues[:k]``; ``eigenvalues`` may hold more (the spectrum, descending);
    ``trace`` is tr(F) including everything that was discarded."""

    basis: torch.Tensor
    eigenvalues: torch.Tensor
    trace: float
    # tr(F) with F estimated as the SafeAnchor reference code estimates it (squared batch-mean
    # gradients, see batch_mean_fisher), where the estimate recorded it; None otherwise.
    batch_trace: float | None = None

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def to(self, device: torch.device | str) -> Subspace:
        return replace(self, basis=self.basis.to(device), eigenvalues=self.eigenvalues.to(device))

    def state(self) -> dict[str, Any]:
        return {"basis": self.basis.cpu(), "eigenvalues": self.eigenvalues.cpu(), "trace": self.trace,
                "batch_trace": self.batch_trace}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Subspace:
        return cls(state["basis"], state["eigenvalues"], float(state["trace"]), state.get("batch_trace"))


def coverage_rank(eigenvalues: torch.Tensor, trace: float, rho: float) -> int:
    """Fewest leading eigenvalues whose sum reaches rho * trace (all positive ones if it is never reached)."""
    positive = eigenvalues[eigenvalues > 0]
    if trace <= 0 or positive.numel() == 0:
        return 0
    cumulative = torch.cumsum(positive.double(), 0)
    short = int((cumulative < rho * trace * (1 - 1e-9)).sum())
    return min(short + 1, positive.numel())


def _eigen_basis(rows: torch.Tensor, trace: float, rho: float) -> Subspace:
    """Eigen-decomposition of F = rows^T rows (p x p) through the small Gram matrix rows rows^T."""
    rows64 = rows.double()
    eigenvalues, vectors = torch.linalg.eigh(rows64 @ rows64.T)
    eigenvalues, vectors = eigenvalues.flip(0).clamp(min=0), vectors.flip(1)
    # Drop eigenvalues that are round-off of exact zeros (e.g. every lora_A gradient at B = 0).
    significant = eigenvalues > eigenvalues[:1].clamp(min=torch.finfo(torch.float64).tiny) * 1e-12
    eigenvalues, vectors = eigenvalues[significant], vectors[:, significant]
    k = coverage_rank(eigenvalues, trace, rho)
    # For F's eigenvalue s with Gram eigenvector u: v = rows^T u / sqrt(s) is a unit eigenvector of F.
    basis = rows64.T @ vectors[:, :k] / eigenvalues[:k].sqrt()
    return Subspace(basis.to(rows.dtype), eigenvalues.float(), trace)


def fisher_subspace(grads: torch.Tensor, rho: float) -> Subspace:
    """Subspace of the empirical Fisher F = G^T G / N (G: N x p per-example gradients) covering rho
    of tr(F) = ||G||_F^2 / N, from the N x N Gram matrix (no p x p matrix)."""
    n = grads.shape[0]
    trace = float(grads.double().pow(2).sum() / n)
    return _eigen_basis(grads / n**0.5, trace, rho)


def layer_subspaces(grads: dict[str, torch.Tensor], device: torch.device | str, rho: float) -> dict[str, Subspace]:
    """:func:`fisher_subspace` of every layer's G (N x p, host memory), one layer on ``device`` at a
    time: each G is popped from ``grads`` as it moves, and released once its subspace is known, so the
    device holds one layer's G and its N x N Gram matrix; across layers only the kept bases (p x k)
    accumulate (tests/test_ssi_memory.py)."""
    return {layer: fisher_subspace(grads.pop(layer).to(device), rho) for layer in list(grads)}


def merge_subspaces(old: Subspace, new: Subspace, rho: float) -> Subspace:
    """Eigenvalue-weighted merge (ours): the subspace of (F_old + F_new) / 2 as represented by both
    (low-rank) bases; rho is measured against the averaged full traces, so repeated merges do not
    shrink coverage. ``batch_trace`` is the new estimate's (the latest Fisher, as the reference code)."""
    scaled = torch.cat([old.basis * (old.eigenvalues[: old.rank] / 2).sqrt().to(old.basis.dtype),
                        new.basis * (new.eigenvalues[: new.rank] / 2).sqrt().to(new.basis.dtype)], dim=1)
    trace = (old.trace + new.trace) / 2
    if scaled.shape[1] == 0:
        return Subspace(scaled, torch.zeros(0), trace, new.batch_trace)
    return replace(_eigen_basis(scaled.T, trace, rho), batch_trace=new.batch_trace)


def merge_bases(old: Subspace, new: Subspace, rho: float) -> Subspace:
    """The SafeAnchor paper's and reference code's incremental update: the left singular vectors of
    [V_old | V_new] (unweighted orthonormal columns) whose squared singular values cover rho of their
    sum. A direction both bases hold has S^2 = 2, one only one holds S^2 = 1; ``eigenvalues`` keeps
    these S^2 (the code keeps S), and tr(F) is the new estimate's, as in the code."""
    stacked = torch.cat([old.basis, new.basis.to(old.basis.dtype)], dim=1)
    if stacked.shape[1] == 0:
        return Subspace(stacked, torch.zeros(0), new.trace, new.batch_trace)
    merged = _eigen_basis(stacked.T, float(stacked.double().pow(2).sum()), rho)
    return Subspace(merged.basis, merged.eigenvalues, new.trace, new.batch_trace)


def batch_mean_fisher(grads: torch.Tensor, batch_size: int, shuffle_seed: int | None = None) -> torch.Tensor:
    """Diagonal of F = 1/N sum_b gbar_b gbar_b^T, gbar_b the mean of a batch of ``batch_size`` rows of
    the per-example gradients G (N x p): the Fisher of the SafeAnchor reference code (SSI and its EWC
    baseline), which squares each batch's mean-loss gradient and divides by the number of examples.
    That is smaller than the per-example mean of squares by a factor between the batch size and its
    square. With a ``shuffle_seed`` the rows are shuffled into batches (the reference's loaders
    shuffle; one seed gives every layer the same batches), else taken in order. Returns float64 (p,)."""
    n = grads.shape[0]
    order = torch.arange(n) if shuffle_seed is None else torch.randperm(n, generator=torch.Generator().manual_seed(shuffle_seed))
    total = torch.zeros(grads.shape[1], dtype=torch.float64, device=grads.device)
    for start in range(0, n, batch_size):
        total += grads[order[start : start + batch_size]].double().mean(0).pow(2)
    return total / max(1, n)


# ---- KL against the adapter-disabled model -------------------------------------------------------------
def response_kl(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions (rows) of KL(p_ref || p) between next-token distributions."""
    log_p = torch.log_softmax(logits, dim=-1)
    log_ref = torch.log_softmax(reference_logits, dim=-1)
    per_token = (log_ref.exp() * (log_ref - log_p)).sum(-1)
    return per_token.sum() / max(1, per_token.numel())


@torch.no_grad()
def disabled_adapter_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits at the labelled positions of the same model with its adapter disabled (no copy)."""
    with model.disable_adapter():
        reference, _, _ = labelled_logits(model, batch)
    return reference


def kl_to_disabled_adapter(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """KL(p_ref || p_theta) over the response tokens of ``batch``, where p_ref is the same model
    with its adapter disabled (no second copy of the model). Differentiable w.r.t. the adapter.
    Both distributions are computed at the labelled positions only (as in the task loss)."""
    reference = disabled_adapter_logits(model, batch)
    logits, _, _ = labelled_logits(model, batch)
    return response_kl(logits, reference)


@contextmanager
def parameters_set_to(params: Mapping[str, torch.nn.Parameter], values: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """The named parameters temporarily hold ``values`` (e.g. an adapter's snapshot), restored on
    exit. For no-grad reference passes only: nothing may backpropagate through them meanwhile."""
    saved = {name: params[name].detach().clone() for name in values}
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)


def kl_to_snapshot(model: torch.nn.Module, params: Mapping[str, torch.nn.Parameter], snapshot: Mapping[str, torch.Tensor],
                   batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """KL(p_snapshot || p_theta) over the response tokens of ``batch``: the reference is the same
    model with its trainable parameters at ``snapshot`` (an adapter copy, not a model copy)."""
    with torch.no_grad(), parameters_set_to(params, snapshot):
        reference, _, _ = labelled_logits(model, batch)
    logits, _, _ = labelled_logits(model, batch)
    return response_kl(logits, reference)


# ---- safety replay ---------------------------------------------------------------------------------------
def _take(pool: Sequence[Example], k: int, rng: random.Random) -> list[Example]:
    """k examples without repeats while the pool lasts (reshuffled passes after that)."""
    taken: list[Example] = []
    while len(taken) < k and pool:
        taken += rng.sample(list(pool), min(k - len(taken), len(pool)))
    return taken


def safety_replay(calibration: CalibrationSet, n: int, harmful_share: float, seed: int) -> list[Example]:
    """n calibration examples: harmful -> refusal and benign -> helpful in the given share. Benign pairs
    are what keeps replay from teaching "refuse everything" (micro-world pilot)."""
    rng = random.Random(seed)
    n_harmful = round(n * harmful_share)
    return _take(calibration.harmful, n_harmful, rng) + _take(calibration.benign, n - n_harmful, rng)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks (the first ModuleList named ``layers``, through any PEFT wrapping)."""
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList):
            return list(module)
    raise ValueError("no decoder layer list (a ModuleList named 'layers') in this model")
