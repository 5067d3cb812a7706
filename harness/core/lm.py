"""One language-model interface for every benchmark: batched log-likelihood and batched greedy
generation with a KV cache, over any causal LM + tokenizer (a PEFT model included).

Requests are sorted by length and cut into batches so that padding stays small; results come back
in request order. ``padding_share`` reports the fraction of padded tokens processed so far.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

MIN_CACHED_PREFIX = 64  # tokens; below this, recomputing the prefix is cheaper than copying its cache


def shared_prefix(encoded: list[tuple[list[int], int]]) -> list[int]:
    """The longest token prefix common to every request that ends before any scored position."""
    if len(encoded) < 2:
        return []
    first = encoded[0][0]
    limit = min(len(ids) - n - 1 for ids, n in encoded)
    length = 0
    while length < limit and all(ids[length] == first[length] for ids, _ in encoded):
        length += 1
    return first[:length]


def _score(logprobs: torch.Tensor, targets: torch.Tensor) -> tuple[float, bool]:
    """Sum of the targets' log-probabilities, and whether each target was the argmax."""
    chosen = logprobs.gather(-1, targets[:, None]).squeeze(-1)
    return float(chosen.sum()), bool((logprobs.argmax(-1) == targets).all())


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


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
    def chat_prompt(self, user_text: str, reply_prefix: str = "") -> str:
        """The model's chat template around one user turn, ending where the assistant speaks, or,
        with ``reply_prefix``, after the assistant's reply opened by it (the template's own
        ``continue_final_message``, which is what lm-evaluation-harness does for a ``gen_prefix``)."""
        messages = [{"role": "user", "content": user_text}]
        if reply_prefix:
            messages.append({"role": "assistant", "content": reply_prefix})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not reply_prefix, continue_final_message=bool(reply_prefix)
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def padding_share(self) -> float:
        total = self._tokens_real + self._tokens_padded
        return self._tokens_padded / total if total else 0.0

    def _batches(self, lengths: Sequence[int], desc: str, size: int | None = None) -> Iterator[list[int]]:
        size = size or self.batch_size
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        yield from tqdm(chunks, desc=desc, disable=not self.show_progress, leave=False)

    def _count(self, lengths: list[int]) -> None:
        self._tokens_real += sum(lengths)
        self._tokens_padded += max(lengths) * len(lengths) - sum(lengths)

    # ---- log-likelihood --------------------------------------------------------------------------
    @torch.no_grad()
    def loglikelihood(self, requests: Sequence[tuple[str, str]], desc: str = "loglik") -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context) and whether the continuation is the greedy one.

        Context is left-truncated to fit ``max_length`` (the continuation is always kept whole).
        Identical requests (TruthfulQA's MC1 choices reappear in MC2) are computed once."""
        unique: dict[tuple[tuple[int, ...], int], int] = {}
        slots = []
        for context, continuation in requests:
            ctx_ids, cont_ids = self.encode(context), self.encode(continuation)
            whole = (ctx_ids + cont_ids)[-self.max_length :]
            slots.append(unique.setdefault((tuple(whole), min(len(cont_ids), len(whole) - 1)), len(unique)))
        encoded = [(list(ids), n) for ids, n in unique]
        self.model.eval()
        prefix = shared_prefix(encoded)
        if len(prefix) >= MIN_CACHED_PREFIX:
            results = self._loglikelihood_after_prefix(prefix, encoded, desc)
        else:
            results = self._score_by_context(encoded, desc)
        return [results[k] for k in slots]

    def _score_by_context(self, encoded: list[tuple[list[int], int]], desc: str) -> list[tuple[float, bool]]:
        """Requests that share a context (the options of one question) run that context once.

        A batch of distinct contexts runs left-padded, keeping its KV cache; its last position scores
        every continuation's first token (a one-token answer letter needs nothing more). Longer
        continuations then run on a copy of their context's cache, right-padded, positions after
        the context. Contexts are batched so that their continuations fit one ``batch_size``."""
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (ids, n) in enumerate(encoded):
            by_context.setdefault(tuple(ids[:-n]), []).append(i)
        contexts = list(by_context)
        per_batch = max(1, self.batch_size // max(len(members) for members in by_context.values()))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
        for batch in self._batches([len(c) for c in contexts], desc, per_batch):
            seqs = [list(contexts[k]) for k in batch]
            self._count([len(s) for s in seqs])
            input_ids, mask = self._left_padded(seqs)
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions(mask),
                             use_cache=True, logits_to_keep=1)
            first = F.log_softmax(out.logits[:, -1].float(), dim=-1)
            members = [(row, i) for row, k in enumerate(batch) for i in by_context[contexts[k]]]
            longer = [(row, i) for row, i in members if encoded[i][1] > 1]
            tails = self._continuation_logprobs(out.past_key_values, mask, [row for row, _ in longer],
                                                [encoded[i][0][-encoded[i][1]:-1] for _, i in longer]) if longer else []
            tail_of = {i: tail for (_, i), tail in zip(longer, tails, strict=True)}
            for row, i in members:
                ids, n = encoded[i]
                targets = torch.tensor(ids[-n:], device=first.device)
                logprobs = first[row : row + 1] if n == 1 else torch.cat([first[row : row + 1], tail_of[i][: n - 1]])
                results[i] = _score(logprobs, targets)
        return results

    def _continuation_logprobs(self, cache, context_mask: torch.Tensor, rows: list[int],
                               inputs: list[list[int]]) -> list[torch.Tensor]:
        """Log-probabilities after each of ``inputs`` fed on row ``rows[j]`` of a context cache."""
        cache.reorder_cache(torch.tensor(rows, device=context_mask.device))
        width = max(len(s) for s in inputs)
        self._count([len(s) for s in inputs])
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in inputs], device=context_mask.device)
        lengths = torch.tensor([len(s) for s in inputs], device=context_mask.device)
        own_mask = (torch.arange(width, device=context_mask.device)[None, :] < lengths[:, None]).long()
        context_mask = context_mask[rows]
        start = context_mask.sum(-1, keepdim=True)
        logits = self.model(input_ids=input_ids, attention_mask=torch.cat([context_mask, own_mask], dim=1),
                            past_key_values=cache, use_cache=True,
                            position_ids=start + torch.arange(width, device=context_mask.device)[None, :]).logits.float()
        logprobs = F.log_softmax(logits, dim=-1)
        return [logprobs[j, : len(s)] for j, s in enumerate(inputs)]

    def _loglikelihood_after_prefix(self, prefix: list[int], encoded: list[tuple[list[int], int]],
                                    desc: str) -> list[tuple[float, bool]]:
        """Requests that share a long prefix (a few-shot prompt): run the prefix once, keep its KV
        cache, and feed each batch only its own suffix (right-padded, positions after the prefix)."""
        length = len(prefix)
        cache = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True).past_key_values
        results: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
        for batch in self._batches([len(ids) for ids, _ in encoded], desc):
            suffixes = [encoded[i][0][length:] for i in batch]
            self._count([len(s) for s in suffixes])
            width = max(len(s) for s in suffixes)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in suffixes], device=self.device)
            lengths = torch.tensor([len(s) for s in suffixes], device=self.device)
            suffix_mask = torch.arange(width, device=self.device)[None, :] < lengths[:, None]
            mask = torch.cat([torch.ones(len(batch), length, dtype=torch.long, device=self.device), suffix_mask.long()], dim=1)
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(batch))
            positions = (length + torch.arange(width, device=self.device)).expand(len(batch), -1)
            logits = self.model(input_ids=input_ids, attention_mask=mask, past_key_values=batch_cache, use_cache=True,
                                position_ids=positions).logits.float()
            logprobs = F.log_softmax(logits, dim=-1)
            for row, index in enumerate(batch):
                n, end = encoded[index][1], len(suffixes[row])
                results[index] = _score(logprobs[row, end - n - 1 : end - 1], input_ids[row, end - n : end])
        return results

    def _left_padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        return input_ids, mask

    # ---- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int, desc: str = "generate") -> list[str]:
        """Greedy continuations of already-formatted prompts (left padding, KV cache)."""
        if max_new_tokens >= self.max_length:
            from harness.core.errors import ConfigError

            raise ConfigError(f"eval.max_new_tokens={max_new_tokens} leaves no room for the prompt: the model's context is "
                              f"{self.max_length} tokens. Fix: set eval.max_new_tokens below {self.max_length} in the suite.")
        room = self.max_length - max_new_tokens  # (a room of 0 would have kept the whole prompt: [-0:])
        encoded = [self.encode(p)[-room:] for p in prompts]
        outputs = [""] * len(prompts)
        self.model.eval()
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        for batch in self._batches([len(e) for e in encoded], desc):
            seqs = [encoded[i] for i in batch]
            width = max(len(s) for s in seqs)
            self._count([len(s) for s in seqs])
            input_ids, mask = self._left_padded(seqs)
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
