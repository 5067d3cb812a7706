"""Turning chat examples into padded training batches (loss on the assistant's tokens only).

Batches are drawn length-bucketed: a shuffled pool of ``bucket`` batches is sorted by length and cut,
so examples of similar length share a batch and little compute goes to padding.
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from harness.core.data import Example

IGNORE = -100


def encode_example(tokenizer, example: Example, max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of the whole chat turn and labels that mask everything but the response."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": example.prompt}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(example.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    # Keep the response whole when possible: cut the prompt from the left, the response from the right.
    keep_response = response_ids[: max(max_len // 2, max_len - len(prompt_ids))]
    keep_prompt = prompt_ids[-(max_len - len(keep_response)) :] if max_len > len(keep_response) else []
    ids = keep_prompt + keep_response
    return ids, [IGNORE] * len(keep_prompt) + keep_response


def collate(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


class BatchStream:
    """An endless, seeded stream of length-bucketed batches over a list of examples."""

    def __init__(self, tokenizer, examples: Sequence[Example], batch_size: int, max_len: int, seed: int,
                 bucket: int = 16) -> None:
        if not examples:
            raise ValueError("no examples to train on")
        self.encoded = [encode_example(tokenizer, e, max_len) for e in examples]
        self.batch_size, self.bucket = batch_size, bucket
        self.pad_id = tokenizer.pad_token_id
        self.rng = random.Random(seed)
        self.real_tokens = 0
        self.padded_tokens = 0
        self._pending: list[list[int]] = []

    def _refill(self) -> None:
        order = list(range(len(self.encoded)))
        self.rng.shuffle(order)
        pool = self.batch_size * self.bucket
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(self.encoded[i][0]))
            batches = [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            self.rng.shuffle(batches)
            self._pending.extend(batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if not self._pending:
            self._refill()
        picked = [self.encoded[i] for i in self._pending.pop(0)]
        lengths = [len(ids) for ids, _ in picked]
        self.real_tokens += sum(lengths)
        self.padded_tokens += max(lengths) * len(lengths) - sum(lengths)
        return collate(picked, self.pad_id)

    @property
    def padding_share(self) -> float:
        total = self.real_tokens + self.padded_tokens
        return self.padded_tokens / total if total else 0.0
