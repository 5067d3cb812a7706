"""One language-model interface for every benchmark: batched log-likelihood and batched greedy
generation with a KV cache, over any causal LM + tokenizer (a PEFT model included).

Requests are sorted by length and cut into batches so that padding stays small; results come back
in request order. ``padding_share`` reports the fraction of padded tokens processed so far.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


@dataclass
class ChatLM:
    model: torch.nn.Module
    tokenizer: object
    max_length: int = 512
    batch_size: int = 16
    device: str = "cpu"
    show_progress: bool = False
    _tokens_real: int = field(default=0, repr=False)
    _tokens_padded: int = field(default=0, repr=False)

    # ---- formatting ------------------------------------------------------------------------------
    def chat_prompt(self, user_text: str) -> str:
        """The model's chat template around one user turn, ending where the assistant speaks."""
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def padding_share(self) -> float:
        total = self._tokens_real + self._tokens_padded
        return self._tokens_padded / total if total else 0.0

    def _batches(self, lengths: Sequence[int], desc: str) -> Iterator[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        yield from tqdm(chunks, desc=desc, disable=not self.show_progress, leave=False)

    def _count(self, lengths: list[int]) -> None:
        self._tokens_real += sum(lengths)
        self._tokens_padded += max(lengths) * len(lengths) - sum(lengths)

    # ---- log-likelihood --------------------------------------------------------------------------
    @torch.no_grad()
    def loglikelihood(self, requests: Sequence[tuple[str, str]], desc: str = "loglik") -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context) and whether the continuation is the greedy one.

        Context is left-truncated to fit ``max_length`` (the continuation is always kept whole)."""
        encoded = []
        for context, continuation in requests:
            ctx_ids, cont_ids = self.encode(context), self.encode(continuation)
            whole = (ctx_ids + cont_ids)[-self.max_length :]
            encoded.append((whole, min(len(cont_ids), len(whole) - 1)))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
        self.model.eval()
        for batch in self._batches([len(ids) for ids, _ in encoded], desc):
            seqs = [encoded[i][0] for i in batch]
            lengths = [len(s) for s in seqs]
            self._count(lengths)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([s + [pad] * (max(lengths) - len(s)) for s in seqs], device=self.device)
            mask = (torch.arange(max(lengths), device=self.device)[None, :] < torch.tensor(lengths, device=self.device)[:, None]).long()
            logprobs = F.log_softmax(self.model(input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
            for row, index in enumerate(batch):
                n_cont, length = encoded[index][1], lengths[row]
                targets = input_ids[row, length - n_cont : length]
                scores = logprobs[row, length - n_cont - 1 : length - 1]
                chosen = scores.gather(-1, targets[:, None]).squeeze(-1)
                results[index] = (float(chosen.sum()), bool((scores.argmax(-1) == targets).all()))
        return results

    # ---- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int, desc: str = "generate") -> list[str]:
        """Greedy continuations of already-formatted prompts (left padding, KV cache)."""
        room = self.max_length - max_new_tokens
        encoded = [self.encode(p)[-room:] for p in prompts]
        outputs = [""] * len(prompts)
        self.model.eval()
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        for batch in self._batches([len(e) for e in encoded], desc):
            seqs = [encoded[i] for i in batch]
            width = max(len(s) for s in seqs)
            self._count([len(s) for s in seqs])
            input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
            generated = self.model.generate(
                input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=pad, eos_token_id=eos, use_cache=True,
            )
            for row, index in enumerate(batch):
                outputs[index] = self.tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
        return outputs

    @torch.no_grad()
    def response_nll(self, prompts: Sequence[str], response: str) -> list[float]:
        """Mean per-token NLL of a fixed assistant response after each (formatted) prompt."""
        n_tokens = max(len(self.encode(response)), 1)
        return [-ll / n_tokens for ll, _ in self.loglikelihood([(p, response) for p in prompts], desc="response nll")]
