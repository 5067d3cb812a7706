"""The language-model loss on labelled (response) tokens, shared by the loop, methods and alignment."""
from __future__ import annotations

import torch
from peft import PeftModel

from harness.core.batching import IGNORE


def labelled_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float logits at every position whose next token is labelled (n, vocab), those tokens (n,)
    and the batch row of each (n,).

    The output projection runs only at these positions: prompts are most of the tokens (MedQA,
    LegalBench), and the vocabulary projection of the rest is wasted work (about 1.8x of a micro
    step). This assumes logits = lm_head(decoder(x)), true of the Llama/Mistral family.
    """
    device = next(model.parameters()).device  # batches are built on the CPU
    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    hidden = causal_lm.get_decoder()(input_ids=batch["input_ids"].to(device),
                                     attention_mask=batch["attention_mask"].to(device)).last_hidden_state[:, :-1]
    labels = batch["labels"][:, 1:].to(device)
    scored = labels != IGNORE
    return causal_lm.get_output_embeddings()(hidden[scored]).float(), labels[scored], scored.nonzero()[:, 0]


def lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], per_example: bool = False) -> torch.Tensor:
    """Mean cross-entropy over response tokens (per example when asked)."""
    logits, targets, rows = labelled_logits(model, batch)
    token_loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if per_example:
        n_rows = batch["labels"].size(0)
        totals = torch.zeros(n_rows, device=logits.device, dtype=token_loss.dtype).index_add(0, rows, token_loss)
        return totals / torch.bincount(rows, minlength=n_rows).clamp(min=1)
    return token_loss.sum() / max(1, token_loss.numel())
