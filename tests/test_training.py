"""The training losses: logits only at labelled positions give exactly the full-logits loss; the
alignment loss weighs the first reply tokens as configured."""
from __future__ import annotations

import torch

from harness.core.batching import IGNORE
from harness.core.losses import lm_loss
from tests.test_methods_support import tiny_context


def reply_token_losses(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The textbook definition: every position's logits, shifted labels; each example's cross-entropy
    at each of its reply (labelled) tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    losses = []
    for row_logits, row_labels in zip(logits, labels, strict=True):
        keep = row_labels != IGNORE
        losses.append(torch.nn.functional.cross_entropy(row_logits[keep], row_labels[keep], reduction="none"))
    return losses


def full_logits_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-example mean of the textbook token losses."""
    return torch.stack([losses.mean() for losses in reply_token_losses(model, batch)])


def test_response_only_loss_equals_full_logits_loss(tiny_world):
    ctx = tiny_context(tiny_world)
    batch = next(ctx.batches(ctx.domain_examples))
    counts = (batch["labels"][:, 1:] != IGNORE).sum(1)
    assert counts.min() > 0 and (batch["labels"] == IGNORE).any()  # prompts are masked
    with torch.no_grad():
        reference = full_logits_loss(ctx.model, batch)
        per_example = lm_loss(ctx.model, batch, per_example=True)
        mean = lm_loss(ctx.model, batch)
    torch.testing.assert_close(per_example, reference, rtol=1e-5, atol=1e-5)
    # The batch loss is the token-weighted mean, not the mean of per-example means.
    torch.testing.assert_close(mean, (reference * counts).sum() / counts.sum(), rtol=1e-5, atol=1e-5)


def test_alignment_loss_weighs_each_replys_first_tokens(tiny_world):
    """Alignment's decision weight, by hand: each example's first k reply tokens count w times."""
    from harness.orchestration.alignment import full_logits_loss as alignment_loss

    ctx = tiny_context(tiny_world)
    batch = next(ctx.batches(ctx.domain_examples))
    with torch.no_grad():
        token_losses = reply_token_losses(ctx.model, batch)
        weights = [torch.tensor([5.0, 5.0] + [1.0] * (len(losses) - 2)) for losses in token_losses]
        losses, weights = torch.cat(token_losses), torch.cat(weights)
        weighted = alignment_loss(ctx.model, batch, decision_weight=5.0, decision_tokens=2)
        plain = alignment_loss(ctx.model, batch)
    torch.testing.assert_close(weighted, (losses * weights).sum() / weights.sum(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, losses.mean(), rtol=1e-5, atol=1e-5)
    assert abs(weighted.item() - plain.item()) > 1e-3
