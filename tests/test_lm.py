"""ChatLM: batched, left-padded scoring and generation equal one-at-a-time computation."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.core.lm import ChatLM

REQUESTS = [("Q: What is the capital of France?\nA:", " Paris"), ("Hi", " there, friend"),
            ("A much longer context about medicine, law and code, with many words in it.", " ok"),
            ("Short", " a b c d e f g")]


def direct_loglik(lm: ChatLM, context: str, continuation: str) -> float:
    """No batching, no padding, full logits: the definition."""
    ctx, cont = lm.encode(context), lm.encode(continuation)
    ids = torch.tensor([ctx + cont])
    logprobs = F.log_softmax(lm.model(input_ids=ids).logits.float(), dim=-1)[0]
    return float(sum(logprobs[len(ctx) + i - 1, t] for i, t in enumerate(cont)))


@torch.no_grad()
def test_batched_loglikelihood_equals_definition(tiny_lm: ChatLM) -> None:
    tiny_lm.batch_size = 4
    batched = [ll for ll, _ in tiny_lm.loglikelihood(REQUESTS)]
    for (context, continuation), got in zip(REQUESTS, batched, strict=True):
        assert abs(got - direct_loglik(tiny_lm, context, continuation)) < 1e-3


def test_batched_generation_equals_one_at_a_time(tiny_lm: ChatLM) -> None:
    prompts = [tiny_lm.chat_prompt(c) for c, _ in REQUESTS]
    tiny_lm.batch_size = 4
    together = tiny_lm.generate(prompts, 6)
    tiny_lm.batch_size = 1
    alone = tiny_lm.generate(prompts, 6)
    assert together == alone
    assert 0.0 <= tiny_lm.padding_share < 1.0


@torch.no_grad()
def test_shared_prefix_is_cached_and_exact(tiny_lm: ChatLM) -> None:
    """A long common few-shot prompt takes the cached path and gives the same numbers."""
    from benchmarks.truthfulqa import doc_to_text
    from harness.core.lm import MIN_CACHED_PREFIX, shared_prefix

    requests = [(doc_to_text(q), c) for q in ("Is the sky blue?", "What do cats eat?") for c in (" Yes.", " No, never.", " Fish")]
    encoded = [(tiny_lm.encode(c) + tiny_lm.encode(x), len(tiny_lm.encode(x))) for c, x in requests]
    assert len(shared_prefix(encoded)) >= MIN_CACHED_PREFIX
    tiny_lm.batch_size = 4
    for (context, continuation), (got, _) in zip(requests, tiny_lm.loglikelihood(requests), strict=True):
        assert abs(got - direct_loglik(tiny_lm, context, continuation)) < 1e-3


@torch.no_grad()
def test_options_sharing_a_context_equal_the_definition(tiny_lm: ChatLM) -> None:
    """Grouped scoring (context once, options on its cache): one-token and longer options, contexts
    of different lengths in one batch, a repeated request, and the greedy flag."""
    questions = ["Q: Which is larger?\nA:", "A much longer question about the law of contracts and torts?\nA:"]
    options = [" A", " B", " the first one", " neither of them, really"]
    requests = [(q, o) for q in questions for o in options] + [(questions[0], " A")]
    tiny_lm.batch_size = 5
    got = tiny_lm.loglikelihood(requests)
    assert got[-1] == got[0]
    for (context, continuation), (ll, greedy) in zip(requests, got, strict=True):
        assert abs(ll - direct_loglik(tiny_lm, context, continuation)) < 1e-3
        ctx, cont = tiny_lm.encode(context), tiny_lm.encode(continuation)
        logits = tiny_lm.model(input_ids=torch.tensor([ctx + cont])).logits[0, len(ctx) - 1 : -1]
        assert greedy == bool((logits.argmax(-1) == torch.tensor(cont)).all())
