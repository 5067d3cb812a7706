"""The safety-alignment stage shared by every model the harness aligns itself (micro, small):
a full fine-tune on chat turns, each batch mixing harmful -> varied refusal, benign -> helpful
answer, domain instructions and everyday requests -> helpful answer (loss on the answer only, its
first tokens weighted: see ``AlignConfig``)."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from pydantic import BaseModel, ConfigDict
from tqdm.auto import tqdm

from harness.core.batching import BatchStream
from harness.core.data import Example
from harness.core.domains import DOMAINS, domain_examples
from harness.core.safety_data import answered_by, calibration_set


class AlignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    steps: int = 500
    lr: float = 1e-3
    mix: tuple[int, int, int] = (6, 6, 4)  # harmful, benign, domain examples per batch
    max_len: int = 160
    domains: tuple[str, ...] = ("medical", "legal", "code", "finance", "math")
    domain_examples_per_domain: int = 400
    everyday_per_batch: int = 2  # everyday requests (safety_data.everyday_requests) per batch, a stream of their own
    # Greedy decoding decides to refuse or to help at the first reply tokens. Weighting them
    # sharpens that decision (the refusal score separates harmful from safe prompts better), and
    # weighting helpful answers above refusals moves its threshold toward helping, i.e. less
    # over-refusal (docs/micro-world.md, "World v5"). Refusal weight 1.4 is world v6: the one
    # placement tried that meets both starting checks (HarmBench 80.5 / XSTest 72.0; 2.0: 85.5 / 61.6).
    decision_tokens: int = 2
    helpful_decision_weight: float = 5.0
    refusal_decision_weight: float = 1.4


def domain_pool(config: AlignConfig) -> list[Example]:
    pool = []
    for name in config.domains:
        if name in DOMAINS:
            pool += domain_examples(name, config.domain_examples_per_domain, config.seed)
    return pool


def fit(model: torch.nn.Module, loss_of_step: Callable[[], torch.Tensor], lr: float, steps: int, desc: str) -> float:
    """Fine-tune the trainable parameters: AdamW, linear warm-up then cosine decay, gradient clipping;
    returns the last loss."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / steps)).item())
    )
    model.train()
    loss = torch.tensor(0.0)
    for _ in tqdm(range(steps), desc=desc, mininterval=2.0):
        loss = loss_of_step()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return loss.item()


def full_logits_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], decision_weight: float = 1.0,
                     decision_tokens: int = 0) -> torch.Tensor:
    """Weighted mean cross-entropy over response tokens, from the logits at every position; the
    first ``decision_tokens`` response tokens of each example weigh ``decision_weight``, the rest 1.

    Alignment keeps this original formulation on purpose. Worlds are cached by a hash of their
    config, and ``harness.core.losses.lm_loss`` (logits at labelled positions only: equal in exact
    arithmetic, rounded differently) builds a measurably different world under the same key: tried,
    it gave HarmBench 89.9 / XSTest 42.4 instead of 84.9 / 32.8. Every published micro number is on
    the world this function builds."""
    from harness.core.batching import IGNORE

    device = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(device),
                   attention_mask=batch["attention_mask"].to(device)).logits[:, :-1].float()
    labels = batch["labels"][:, 1:].to(device)
    token_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="none").view(labels.shape)
    mask = (labels != IGNORE).float()
    if decision_weight != 1.0:
        first = (mask.cumsum(1) <= decision_tokens).float() * mask
        mask = mask + (decision_weight - 1.0) * first
    return (token_loss * mask).sum() / mask.sum().clamp(min=1)


def align(model: torch.nn.Module, tokenizer, config: AlignConfig, desc: str = "safety-align",
          helpful_answers: Mapping[str, str] | None = None, contrast: tuple[list[Example], int] = ([], 0)) -> float:
    """Chat-tune and safety-align in one fine-tune of ``model``'s trainable parameters on mixed
    batches. ``helpful_answers`` (prompt -> answer) replaces the calibration set's templated answers
    to benign and everyday requests, and only the requests it answers are trained on (the small
    model learns from its own answers: harness/orchestration/small_model.py). ``contrast`` is one more
    helpful stream, (examples, per batch): benign requests carrying harmful-sounding words
    (``harness.core.contrast_data``)."""
    calibration = calibration_set(config.seed)
    refuse, helpful = config.refusal_decision_weight, config.helpful_decision_weight
    benign = answered_by([e for e in calibration.benign if e.source != "everyday"], helpful_answers)
    everyday = answered_by([e for e in calibration.benign if e.source == "everyday"], helpful_answers)
    streams = (  # (examples, per batch, decision weight)
        (list(calibration.harmful), config.mix[0], refuse),
        (benign, config.mix[1], helpful),
        (domain_pool(config), config.mix[2], helpful),
        (everyday, config.everyday_per_batch, helpful),
        (*contrast, helpful),
    )
    batches = [(BatchStream(tokenizer, examples, size, config.max_len, config.seed + k), weight)
               for k, (examples, size, weight) in enumerate(streams) if size]
    total = sum(size for _, size, _ in streams)

    def step_loss() -> torch.Tensor:
        return sum(full_logits_loss(model, next(stream), weight, config.decision_tokens) * stream.batch_size
                   for stream, weight in batches) / total

    return fit(model, step_loss, config.lr, config.steps, desc)
