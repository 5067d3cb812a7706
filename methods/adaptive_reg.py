"""Adaptive regularization: a per-batch safety-risk signal sets how strongly the update is held to a
safe reference policy."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field

from harness.core.batching import IGNORE
from harness.core.data import Example
from harness.core.errors import ConfigError
from harness.core.losses import labelled_logits
from methods.base import Method, MethodConfig
from methods.lora_utils import decoder_layers, eval_mode, fixed_batches, response_kl
from methods.registry import register


class AdaptiveRegConfig(MethodConfig):
    risk_source: Literal["activation", "judge"] = Field(
        "activation", description="activation: the risk predictor on pre-generation activations; "
        "judge: the run's harm judge as safety critic")
    weighting: Literal["released_code", "linear"] = Field(
        "released_code", description="released_code: (1 - w) L_task + w KL, w = clamp((s - 2) / 3, 0.1, 0.9) on the harm score "
        "s = 1 + 4 r (the authors' code); linear: L_task + beta * r * KL above risk_threshold (ours)")
    beta: float = Field(1.0, ge=0, description="linear weighting: lambda(r) = beta * r, the weight of KL(pi_ref || pi_theta) "
                        "at batch risk r")
    risk_threshold: float = Field(0.0, ge=0, le=1, description="linear weighting: batches with risk below this train "
                                  "unconstrained")
    reference: Literal["aligned", "previous"] = Field(
        "aligned", description="the safe reference policy: the starting aligned model, or the model entering the domain")
    probe_layer: int | None = Field(None, ge=0, description="decoder layer whose output the predictor reads "
                                    "(None: the middle one)")
    predictor_examples: int = Field(400, gt=1, description="calibration prompts per class (harmful, benign) for the predictor")
    heldout_share: float = Field(0.2, gt=0, lt=1, description="share of those held out to measure the predictor's accuracy")
    l2: float = Field(1e-2, ge=0, description="L2 weight of the logistic-regression predictor")
    batch_size: int = Field(16, gt=0, description="batch size of the activation passes")


# ---- the rule ------------------------------------------------------------------------------------------
def constraint_weight(risk: float, beta: float, threshold: float) -> float:
    """Ours (``weighting: linear``): lambda(r) = beta * r for r >= threshold, else 0."""
    return beta * risk if risk >= threshold else 0.0


def released_code_weights(risk: float) -> tuple[float, float]:
    """(task weight, KL weight) of the authors' code: the harm score s = 1 + 4 r on its 1-5 scale (its
    probe gives 5 to a prompt it calls harmful, 1 otherwise), w = clamp((s - 2) / 3, 0.1, 0.9), and the
    loss (1 - w) L_task + w KL: a harmful batch 0.1 / 0.9, a benign one 0.9 / 0.1."""
    kl_weight = min(0.9, max(0.1, (1 + 4 * risk - 2) / 3))
    return 1.0 - kl_weight, kl_weight


@contextmanager
def task_gradient_scaled(params: dict[str, torch.nn.Parameter], weight: Callable[[], float]) -> Iterator[None]:
    """Around a forward and backward: the gradient it adds to ``params`` is multiplied by ``weight()``
    (read on exit, once the batch's risk is known); what was accumulated before is kept."""
    before = {name: None if p.grad is None else p.grad.detach().clone() for name, p in params.items()}
    yield
    factor = weight()
    if factor == 1.0:
        return
    with torch.no_grad():
        for name, p in params.items():
            if p.grad is not None:
                p.grad.copy_(factor * p.grad if before[name] is None else before[name] + factor * (p.grad - before[name]))


@dataclass
class RiskPredictor:
    """Logistic regression on standardised features: r = sigmoid(((h - mu) / sd) . w + b)."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def risk(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.float() - self.mean.to(features.device)) / self.std.to(features.device)
        return torch.sigmoid(z @ self.weight.to(features.device) + self.bias.to(features.device))

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return float(((self.risk(features) >= 0.5).float() == labels.to(features.device).float()).float().mean())


def fit_risk_predictor(features: torch.Tensor, labels: torch.Tensor, l2: float) -> RiskPredictor:
    """Maximum-likelihood logistic regression (+ l2/2 ||w||^2) by L-BFGS on the full batch."""
    x, y = features.float(), labels.float().to(features.device)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros((), device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y) + l2 / 2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return RiskPredictor(mean, std, weight.detach(), bias.detach())


# ---- pre-generation activations ---------------------------------------------------------------------------
def prompt_positions(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real tokens before the response: what the model has seen when it starts to answer."""
    return batch["attention_mask"].bool() & (batch["labels"] == IGNORE)


def mean_pool(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean hidden state over the kept positions of each row: (batch, d)."""
    keep = keep.to(hidden.device).float()
    return (hidden.float() * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)


class _LayerOutput:
    def __init__(self) -> None:
        self.hidden: torch.Tensor | None = None

    def __call__(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self.hidden = (output[0] if isinstance(output, tuple) else output).detach()


@contextmanager
def captured_layer(layer: torch.nn.Module) -> Iterator[_LayerOutput]:
    capture = _LayerOutput()
    handle = layer.register_forward_hook(capture)
    try:
        yield capture
    finally:
        handle.remove()


@register
class AdaptiveRegularization(Method):
    """Adaptive regularization (Goel et al. 2026, arXiv 2602.17546): minimise, per training batch b,
    (1 - w_b) L_task(b) + w_b KL(pi_ref || pi_theta)(b) with w_b = clamp((s_b - 2) / 3, 0.1, 0.9) on the
    batch's harm score s_b = 1 + 4 r_b (the authors' released code; the paper text was not readable):
    a batch the predictor calls harmful trains 0.1 / 0.9 on task / KL, a benign one 0.9 / 0.1.
    ``weighting: linear`` (ours) is L_task + beta * r_b * KL above ``risk_threshold``. The risk comes
    from an activation-based predictor, a logistic regression on the mean pre-generation hidden state
    (prompt tokens) of the middle
    decoder layer, trained on harmful vs benign calibration prompts (its held-out accuracy is
    reported after each domain); ``risk_source: judge`` uses the run's harm judge as the safety
    critic instead (r_b = share of the batch's (prompt, response) pairs it calls harmful).

    Sequentially the predictor is retrained at the start of every domain on the model entering it
    (the activations it reads drift with the weights); the reference is the starting aligned model
    (``reference: aligned``, a frozen copy loaded from ``ctx.checkpoints``) or the model entering the
    domain (``previous``, the adapter disabled). The batch's activations are captured during the
    task forward (``forward_context``); the KL term, on the batch's response tokens, goes through
    ``extra_loss`` (a second forward, on every batch under the released rule, whose KL weight is at
    least 0.1); the task gradient is scaled by 1 - w_b inside ``forward_context``.
    """

    name = "adaptive_reg"
    relative_cost = 2.5
    reads_calibration = True
    Config = AdaptiveRegConfig

    def __init__(self, config: AdaptiveRegConfig | None = None) -> None:
        super().__init__(config)
        self.predictor: RiskPredictor | None = None
        self.batch_risk: float | None = None
        self.predictor_report: dict[str, Any] = {}
        self.risks: list[float] = []
        self.weights: list[float] = []
        self._reference: torch.nn.Module | None = None

    # ---- hooks -----------------------------------------------------------------------------------
    def before_domain(self, ctx) -> None:
        self.risks, self.weights, self.batch_risk = [], [], None
        if self.config.risk_source == "judge" and ctx.harm_verdicts is None:
            raise ConfigError("adaptive_reg with risk_source: judge needs a harm classifier judge. Fix: set eval.judge to "
                              "harmbench-cls or llama-guard (with its weights), or use risk_source: activation.")
        if self.config.risk_source == "activation":
            self.predictor, self.predictor_report = self.train_predictor(ctx)

    @contextmanager
    def forward_context(self, ctx, batch: dict[str, torch.Tensor]) -> Iterator[None]:
        """Around the task forward and backward: the batch's risk (the critic's before it, the
        predictor's from the activations it produces), and its task gradient times the task weight."""
        if self.config.risk_source == "judge":
            self.batch_risk = self.judge_risk(ctx, batch)
        with task_gradient_scaled(ctx.trainable(), lambda: self.batch_weights(self.batch_risk)[0]), self._risk_of(ctx, batch):
            yield

    def extra_loss(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        risk = self.batch_risk
        if risk is None:
            raise RuntimeError("adaptive_reg: extra_loss ran without forward_context around the task forward")
        self.batch_risk = None
        weight = self.batch_weights(risk)[1]
        self.risks.append(risk)
        self.weights.append(weight)
        if weight == 0.0:
            return None
        return weight * self.reference_kl(ctx, batch)

    def batch_weights(self, risk: float | None) -> tuple[float, float]:
        """(task weight, KL weight) at batch risk r (no risk known: plain training)."""
        if risk is None:
            return 1.0, 0.0
        if self.config.weighting == "released_code":
            return released_code_weights(risk)
        return 1.0, constraint_weight(risk, self.config.beta, self.config.risk_threshold)

    def domain_report(self, ctx) -> dict[str, Any]:
        n = max(1, len(self.risks))
        return {"adaptive_reg": {**self.predictor_report, "risk_source": self.config.risk_source,
                                 "mean_risk": sum(self.risks) / n, "mean_weight": sum(self.weights) / n,
                                 "constrained_share": sum(w > 0 for w in self.weights) / n}}

    # ---- risk ------------------------------------------------------------------------------------
    def probe_layer(self, model: torch.nn.Module) -> torch.nn.Module:
        layers = decoder_layers(model)
        index = self.config.probe_layer if self.config.probe_layer is not None else len(layers) // 2
        if index >= len(layers):
            raise ConfigError(f"adaptive_reg: probe_layer {index} does not exist (the model has {len(layers)} decoder layers). "
                              f"Fix: set probe_layer below {len(layers)} or leave it out.")
        return layers[index]

    @contextmanager
    def _risk_of(self, ctx, batch: dict[str, torch.Tensor]) -> Iterator[None]:
        """Around the task forward: the batch's risk from the activations it produces: the share of its
        prompts the predictor calls harmful (the code's per-prompt 5-or-1 score), or, under ``linear``,
        the mean predicted probability."""
        if self.predictor is None:
            yield
            return
        with captured_layer(self.probe_layer(ctx.model)) as capture:
            yield
        risks = self.predictor.risk(mean_pool(capture.hidden, prompt_positions(batch)))
        self.batch_risk = float((risks >= 0.5).float().mean() if self.config.weighting == "released_code" else risks.mean())

    def prompt_features(self, ctx, examples: Sequence[Example]) -> torch.Tensor:
        """Mean pre-generation hidden state of the probe layer for each example (n, d)."""
        device = next(ctx.model.parameters()).device
        rows = []
        with torch.no_grad(), eval_mode(ctx.model), captured_layer(self.probe_layer(ctx.model)) as capture:
            for batch in fixed_batches(ctx.tokenizer, examples, self.config.batch_size, ctx.settings.max_seq_len):
                ctx.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                rows.append(mean_pool(capture.hidden, prompt_positions(batch)))
        return torch.cat(rows)

    def train_predictor(self, ctx) -> tuple[RiskPredictor, dict[str, Any]]:
        """Fit on harmful (1) vs benign (0) calibration prompts; accuracy on a held-out share."""
        cfg = self.config
        rng = random.Random(ctx.seed * 1000 + ctx.domain_index)
        features, labels = [], []
        for label, pool in ((1.0, ctx.calibration.harmful), (0.0, ctx.calibration.benign)):
            chosen = rng.sample(list(pool), min(cfg.predictor_examples, len(pool)))
            features.append(self.prompt_features(ctx, chosen))
            labels.append(torch.full((len(chosen),), label))
        x, y = torch.cat(features), torch.cat(labels)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(ctx.seed * 1000 + ctx.domain_index))
        n_heldout = max(1, round(cfg.heldout_share * len(y)))
        held, train = order[:n_heldout], order[n_heldout:]
        predictor = fit_risk_predictor(x[train], y[train], cfg.l2)
        report = {"predictor_heldout_accuracy": predictor.accuracy(x[held], y[held]),
                  "predictor_train_accuracy": predictor.accuracy(x[train], y[train]),
                  "predictor_n_train": len(train), "predictor_n_heldout": n_heldout}
        return predictor, report

    def judge_risk(self, ctx, batch: dict[str, torch.Tensor]) -> float:
        """Safety critic: the share of the batch's (prompt, response) pairs the harm judge calls harmful."""
        pairs = []
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"].bool(), batch["labels"], strict=True):
            prompt = ctx.tokenizer.decode(ids[mask & (labels == IGNORE)], skip_special_tokens=True)
            response = ctx.tokenizer.decode(ids[labels != IGNORE], skip_special_tokens=True)
            pairs.append((prompt, response))
        verdicts = ctx.harm_verdicts(pairs)
        return sum(v == "compliance" for v in verdicts) / max(1, len(verdicts))

    # ---- the constraint --------------------------------------------------------------------------
    def reference_kl(self, ctx, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """KL(pi_ref || pi_theta) over the batch's response tokens."""
        device = next(ctx.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            if self.config.reference == "previous":
                with ctx.model.disable_adapter():
                    reference, _, _ = labelled_logits(ctx.model, batch)
            else:
                reference, _, _ = labelled_logits(self.aligned_reference(ctx), batch)
        logits, _, _ = labelled_logits(ctx.model, batch)
        return response_kl(logits, reference)

    def aligned_reference(self, ctx) -> torch.nn.Module:
        """A frozen copy of the starting aligned model (loaded once; rebuilt the same way on resume)."""
        if self._reference is None:
            from harness.core.models import load_model

            dtype = str(next(ctx.model.parameters()).dtype).removeprefix("torch.")
            self._reference = load_model(str(ctx.checkpoints["aligned"]), dtype).requires_grad_(False)
        return self._reference
