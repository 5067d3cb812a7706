"""Held-out response NLL per domain: the learning measure that moves at every scale.

A micro model's task metrics (MedQA accuracy on four options, LegalBench balanced accuracy) sit
near chance whatever it is trained on, so they cannot show that a domain was learned. The
log-likelihood of the domain's own answers on examples it never trained on can: for each domain
with a held-out set (``harness.core.domains.held_out_examples``: MedQA's evaluation carve, LegalBench's
test rows, a CodeAlpaca carve, the finance validation file, GSM8K test), in the chat format the
domain trains on::

    <chat template>(user: prompt) + assistant:   response          (scored token by token)

    nll(domain) = - sum over items of log p(response tokens | prompt) / number of response tokens

in nats per response token (the training loss's own definition: cross-entropy pooled over the
response tokens; the end-of-turn token that training also predicts is not scored). Lower is
better. Forward passes only. Every domain is scored at every step, trained yet or not, so the
step-t values form row t of the continual-learning matrix R[t][i] (leaderboard/continual.py).

The cap is per domain: the first ``cap`` held-out examples of each domain in a fixed shuffled
order, the same items at every step, in every run. ``mean`` is the unweighted mean over domains.
"""
from __future__ import annotations

from typing import Any

from benchmarks.base import Benchmark, Metric
from harness.core.domains import DOMAINS, held_out_examples
from harness.core.lm import ChatLM


class DomainNLL(Benchmark):
    name = "domain_nll"
    metrics = tuple(Metric(d, f"held-out {d} response NLL (nats/token)", higher_is_better=False) for d in DOMAINS) + (
        Metric("mean", "mean over domains of the held-out response NLL (nats/token)", higher_is_better=False),
    )
    primary = "mean"
    datasets = ("medqa", "legalbench", "codealpaca", "finance", "gsm8k")
    data = ("held-out examples of every domain in its training format (MedQA carve, LegalBench test rows, "
            "5% CodeAlpaca carve, finance validation, GSM8K test); cap = examples per domain")

    def run(self, lm: ChatLM, cap: int | None, max_new_tokens: int) -> list[dict[str, Any]]:
        examples = [(domain, e) for domain in DOMAINS for e in held_out_examples(domain, cap)]
        requests = [(lm.chat_prompt(e.prompt), e.response) for _, e in examples]
        lls = [ll for ll, _ in lm.loglikelihood(requests, desc="domain nll")]
        return [
            {"id": f"{domain}:{k}", "domain": domain, "nll": -ll, "tokens": scored_tokens(lm, e.response)}
            for k, ((domain, e), ll) in enumerate(zip(examples, lls, strict=True))
        ]

    def score(self, items: list[dict[str, Any]]) -> dict[str, float]:
        per_domain = {}
        for domain in DOMAINS:
            mine = [i for i in items if i["domain"] == domain]
            tokens = sum(i["tokens"] for i in mine)
            if tokens:
                per_domain[domain] = sum(i["nll"] for i in mine) / tokens
        return {**per_domain, "mean": sum(per_domain.values()) / len(per_domain)} if per_domain else {}


def scored_tokens(lm: ChatLM, response: str) -> int:
    """Response tokens ChatLM.loglikelihood scores: all of them, up to one short of the context."""
    return max(1, min(len(lm.encode(response)), lm.max_length - 1))
