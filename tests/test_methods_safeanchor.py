"""SafeAnchor: OSCA's projection and alphas, the SSI schedule at a fresh adapter, the update projection
after AdamW, the anchor KL, CSM's repair block and the Fisher spectrum report."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import TINY_SUITE, sgd_step, tiny_context
from torch.optim.optimizer import register_optimizer_step_pre_hook

from harness.core.losses import labelled_logits, lm_loss
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from harness.training import run_block, train_domain
from methods.lora_utils import Subspace, collect_grads, eval_mode, fixed_batches, flatten_pair, kl_to_disabled_adapter, lora_pairs
from methods.safeanchor import CSM_EVENT, REPAIR, SafeAnchor, SafeAnchorConfig, osca_alphas, project_pairs

SMALL = dict(calibration_size=6, fisher_batch_size=6, probe_size=3, repair_steps=2, repair_safety_examples=4)


def a_block(space: Subspace, n_b: int) -> torch.Tensor:
    """The lora_A rows of a layer's basis (vec([B; A]) puts B first)."""
    return space.basis[n_b:]


def test_alphas_are_the_papers_on_raw_traces_and_ours_relative_to_the_mean():
    assert osca_alphas({"a": 0.5, "b": 3.0}, 0.5) == {"a": 0.75, "b": 0.0}  # max(0, 1 - lambda tr(F_i))
    assert (SafeAnchorConfig().alpha_traces, SafeAnchorConfig().lam, SafeAnchorConfig().memory_merge) == ("raw", 0.5, "bases")
    assert osca_alphas({"a": 1.0, "b": 3.0}, 0.5, relative=True) == {"a": 0.75, "b": 0.25}
    assert osca_alphas({"a": 1000.0, "b": 3000.0}, 0.5, relative=True) == {"a": 0.75, "b": 0.25}  # loss scale drops out
    assert osca_alphas({"a": 0.0}, 0.5, relative=True) == {"a": 1.0}


def test_alpha_trace_is_the_reference_codes_batch_mean_fisher(tiny_world):
    """With one batch of all N examples the reference code's tr(F) is ||grad of the batch's mean
    loss||^2 / N (by autograd here), and alpha_i = max(0, 1 - lambda tr(F_i)) on it."""
    ctx = tiny_context(tiny_world)
    sgd_step(ctx)
    spaces = SafeAnchor(SafeAnchorConfig(**SMALL)).ssi(ctx)
    params = ctx.trainable()
    examples = SafeAnchor(SafeAnchorConfig(**SMALL)).safety_set(ctx)
    batch = next(fixed_batches(ctx.tokenizer, examples, len(examples), ctx.settings.max_seq_len))
    with eval_mode(ctx.model):
        mean_loss = lm_loss(ctx.model, batch, per_example=True).mean()
        grads = dict(zip(params, torch.autograd.grad(mean_loss, list(params.values())), strict=True))
    traces = {layer: float(flatten_pair(pair, grads).double().pow(2).sum()) / len(examples)
              for layer, pair in lora_pairs(params).items()}
    assert all(abs(spaces[layer].batch_trace - trace) <= 1e-4 * trace for layer, trace in traces.items())
    lam = 0.5 / max(traces.values())  # so that the alphas spread over [0.5, 1)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, lam=lam))
    method._set_current(spaces)
    assert all(abs(method.alphas[layer] - (1 - lam * trace)) < 1e-5 for layer, trace in traces.items())


def test_projection_removes_exactly_the_subspace_component():
    pair = lora_pairs(["x.lora_A.d.weight", "x.lora_B.d.weight"])["x"]
    grads = {pair.b: torch.tensor([[3.0], [4.0]]), pair.a: torch.tensor([[5.0, 6.0]]), "other": torch.ones(2)}
    basis = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # directions B[0] and A[0, 1]
    space = Subspace(basis, torch.tensor([2.0, 1.0]), 3.0)
    full = project_pairs(grads, {"x": pair}, {"x": space}, {"x": 0.0})
    assert full[pair.b].tolist() == [[0.0], [4.0]] and full[pair.a].tolist() == [[5.0, 0.0]]
    assert torch.equal(full["other"], grads["other"])
    half = project_pairs(grads, {"x": pair}, {"x": space}, {"x": 0.5})
    assert half[pair.b].tolist() == [[1.5], [4.0]] and half[pair.a].tolist() == [[5.0, 3.0]]
    assert project_pairs(grads, {"x": pair}, {"x": space}, {"x": 1.0})[pair.b].tolist() == [[3.0], [4.0]]


def test_recompute_schedule():
    method = SafeAnchor(SafeAnchorConfig(recompute_first=1, recompute_every=50))
    assert [s for s in range(160) if method._recompute_due(s)] == [1, 50, 100, 150]
    assert [s for s in range(160) if SafeAnchor(SafeAnchorConfig(recompute_every=0))._recompute_due(s)] == [1]


def test_ssi_protects_no_lora_a_at_a_fresh_adapter_but_does_after_one_step(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    params = ctx.trainable()
    n_b = {layer: params[p.b].numel() for layer, p in lora_pairs(params).items()}
    fresh = method.ssi(ctx)
    assert all(space.rank > 0 for space in fresh.values())  # B directions exist
    assert all(a_block(space, n_b[layer]).abs().max() == 0 for layer, space in fresh.items())  # B = 0: A is unprotected
    sgd_step(ctx)
    later = method.ssi(ctx)
    assert all(torch.linalg.matrix_rank(a_block(space, n_b[layer])) > 0 for layer, space in later.items())


def test_applied_adamw_update_has_no_component_in_the_protected_subspace(tiny_world):
    def one_step(project: str) -> tuple[SafeAnchor, dict, dict]:
        ctx = tiny_context(tiny_world)
        method = SafeAnchor(SafeAnchorConfig(**SMALL, lam=1e12, project=project))  # alpha_i = 0 everywhere
        method.before_domain(ctx)
        before = {n: p.detach().clone() for n, p in ctx.trainable().items()}
        run_block(ctx, method, ctx.domain_examples, 1, "test")
        update = {n: p.detach() - before[n] for n, p in ctx.trainable().items()}
        return method, update, lora_pairs(update)

    method, update, pairs = one_step("both")
    assert set(method.alphas.values()) == {0.0}
    for layer, pair in pairs.items():
        delta = flatten_pair(pair, update)
        assert (method.current[layer].basis.T @ delta).abs().max() <= 1e-6 * delta.norm()
    # Projecting only the gradient is not enough: Adam's per-coordinate scaling rotates it back in.
    method, update, pairs = one_step("gradient")
    leaked = [(method.current[layer].basis.T @ flatten_pair(pair, update)).norm() / flatten_pair(pair, update).norm()
              for layer, pair in pairs.items()]
    assert max(leaked) > 1e-3


def test_anchor_kl_is_zero_at_a_fresh_adapter_and_positive_after_one_step(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    method.before_domain(ctx)
    assert abs(method.extra_loss(ctx, {}).item()) < 1e-7
    sgd_step(ctx)
    anchor = method.extra_loss(ctx, {})
    assert anchor.item() > 0 and anchor.requires_grad


def test_csm_triggers_one_repair_block_that_the_loop_logs_and_runs(tiny_world):
    ctx = tiny_context(tiny_world, max_steps=1)
    rates = iter([80.0, 60.0])  # s_0, then s_t < 0.95 * s_0
    ctx.refusal_rate = lambda prompts: next(rates)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    method.prepare(ctx)
    stats = train_domain(ctx, method, ctx.domain_examples)
    assert stats[REPAIR]["steps"] == 2
    assert ctx.events == [{"domain": "medical", "step": 0, "type": CSM_EVENT, "block": REPAIR, "s0": 80.0,
                           "s_t": 60.0, "threshold": 76.0, "triggered": True, "repair_steps": 2}]
    report = method.domain_report(ctx)
    assert report["csm"]["triggered"] and report["csm"]["triggers_so_far"] == 1
    layers = report["fisher_spectrum"]["layers"]
    assert set(layers) == set(lora_pairs(ctx.trainable()))
    entry = next(iter(layers.values()))
    assert {"k90_safety", "k90_random", "eigenvalues_safety", "eigenvalues_random"} <= set(entry)
    eigenvalues = entry["eigenvalues_safety"]
    assert 0 < len(eigenvalues) <= 32 and eigenvalues == sorted(eigenvalues, reverse=True)


@pytest.mark.parametrize(("repair_optimizer", "adam_steps_seen"), [("continue", [0, 1, 2, 3]), ("fresh", [0, 1, 0, 1])])
def test_the_repair_steps_on_with_the_domains_adamw(tiny_world, repair_optimizer, adam_steps_seen):
    """The authors' CSM replays with the domain's optimizer: its moment estimates (and step count)
    carry into the repair, where a new AdamW's first step would move every weight by about lr."""
    ctx = tiny_context(tiny_world, max_steps=2)
    rates = iter([80.0, 60.0])  # s_0, then a drop that triggers the 2-step repair
    ctx.refusal_rate = lambda prompts: next(rates)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, repair_optimizer=repair_optimizer))
    method.prepare(ctx)
    seen: list[tuple[int, int]] = []  # (optimizer, AdamW steps it has taken) before each step

    def record(optimizer, args, kwargs):
        first = optimizer.param_groups[0]["params"][0]
        seen.append((id(optimizer), int(optimizer.state[first]["step"]) if first in optimizer.state else 0))

    handle = register_optimizer_step_pre_hook(record)
    try:
        stats = train_domain(ctx, method, ctx.domain_examples)
    finally:
        handle.remove()
    assert (stats["domain"]["steps"], stats[REPAIR]["steps"]) == (2, 2)
    assert [steps for _, steps in seen] == adam_steps_seen  # the domain's two steps, then the repair's two
    assert (seen[2][0] == seen[0][0]) is (repair_optimizer == "continue")


def test_repair_data_and_no_repair_when_safety_holds(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    method.s0 = 80.0
    method.before_domain(ctx)
    ctx.refusal_rate = lambda prompts: 76.0  # exactly (1 - tau) s_0: not below it
    assert method.after_domain(ctx) is None
    ctx.refusal_rate = lambda prompts: 10.0
    block = method.after_domain(ctx)
    assert block.name == REPAIR and block.steps == SMALL["repair_steps"]
    replay = block.examples[: SMALL["repair_safety_examples"]]
    assert any(e in ctx.calibration.harmful for e in replay) and any(e in ctx.calibration.benign for e in replay)
    assert block.examples[len(replay):] == ctx.domain_examples


def captured_energy(ctx, method: SafeAnchor, subspaces: dict[str, Subspace]) -> float:
    """Share of the current safety-Fisher energy, tr(V^T F V) / tr(F) summed over layers, in ``subspaces``."""
    pairs = lora_pairs(ctx.trainable())
    grads = collect_grads(ctx.model, ctx.tokenizer, method.safety_set(ctx), pairs, 8, ctx.settings.max_seq_len)
    inside = sum(float((g @ subspaces[layer].basis).pow(2).sum()) for layer, g in grads.items())
    return inside / sum(float(g.pow(2).sum()) for g in grads.values())


@pytest.mark.slow
@pytest.mark.parametrize("merge", ["bases", "fisher"])
def test_memory_carried_into_the_next_domain_still_protects_what_it_protected(tiny_world, tmp_path, monkeypatch, merge):
    """Through the runner, three domains: domain t's own subspace (merged into the memory) still
    captures, at the start of domain t+1, most of the safety-Fisher energy it captured at the end of
    domain t; the memory's rank does not grow by a full domain's rank. The eigenvalue-weighted merge
    (ours) keeps all the old subspace captured; the paper's SVD of [V_old | V_new] keeps rho of the
    squared singular values and loses a little of it (measured: 0.85 and 0.89 of the energy against
    0.92 and 0.91, with a memory of 52 directions against ours' 77)."""
    suite = load_suite(TINY_SUITE, {"domains": ["medical", "legal", "code"], "methods": ["safeanchor"],
                                    "benchmarks": ["harmbench"], "eval": {"caps": {"harmbench": 2}}, "training": {"max_steps": 4},
                                    "method_configs": {"safeanchor": {**SMALL, "calibration_size": 12, "repair_steps": 0,
                                                                      "report_spectrum": False, "memory_merge": merge}}})
    ends: list[tuple[dict[str, Subspace], float]] = []
    carried: list[tuple[float, float, dict[str, int]]] = []
    before_domain, after_domain = SafeAnchor.before_domain, SafeAnchor.after_domain

    def record_end(self, ctx):
        own = self.ssi(ctx)
        ends.append((own, captured_energy(ctx, self, own)))
        return after_domain(self, ctx)

    def record_carried(self, ctx):
        before_domain(self, ctx)
        if ctx.domain_index > 0:
            previous = {layer: space.to(self.memory[layer].basis.device) for layer, space in ends[-1][0].items()}
            carried.append((captured_energy(ctx, self, previous), captured_energy(ctx, self, self.memory),
                            {layer: s.rank for layer, s in self.memory.items()}))

    monkeypatch.setattr(SafeAnchor, "after_domain", record_end)
    monkeypatch.setattr(SafeAnchor, "before_domain", record_carried)
    info = Run(suite, tiny_world, "safeanchor", suite.domains, 0, ResultStore(tmp_path / "results")).execute()
    assert info.status == "done", info.error
    assert len(carried) == 2
    # strict=False: ends has one entry per domain, carried one less (the last domain carries nothing on)
    for (_, energy_at_end), (energy_next, memory_energy, _) in zip(ends, carried, strict=False):
        assert energy_at_end >= 0.85 and energy_next >= 0.9 * energy_at_end
        assert memory_energy >= (energy_next - 1e-6 if merge == "fisher" else 0.85 * energy_next)
    (_, _, first_rank), (_, _, second_rank) = carried
    for layer, rank in second_rank.items():
        assert rank < first_rank[layer] + ends[1][0][layer].rank  # less than the previous memory plus a full domain


def test_memory_survives_a_resume(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, report_spectrum=False))
    method.before_domain(ctx)
    sgd_step(ctx)
    resumed = SafeAnchor(method.config)
    resumed.load_state_dict(method.state_dict())
    ctx.domain_index = 1
    method.before_domain(ctx)
    resumed.before_domain(ctx)
    for layer, space in method.memory.items():
        assert torch.equal(space.basis, resumed.memory[layer].basis) and space.trace == resumed.memory[layer].trace


def test_anchor_reference_is_the_model_entering_the_domain(tiny_world):
    """theta_{t-1}, not the aligned model: one persistent adapter, so the disabled adapter is the
    aligned model and the anchor's reference is the adapter's snapshot from the domain's start."""
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    method.before_domain(ctx)
    sgd_step(ctx)  # domain 1 trains
    ctx.domain_index = 1
    method.before_domain(ctx)  # domain 2 starts on the same adapter
    safety = next(ctx.batches(list(ctx.calibration.harmful[:4])))
    assert abs(method.extra_loss(ctx, safety).item()) < 1e-7
    assert kl_to_disabled_adapter(ctx.model, safety).item() > 1e-6


def test_default_projects_the_task_gradient_only(tiny_world):
    ctx = tiny_context(tiny_world)
    assert SafeAnchor.adapter_policy == "persistent"
    method = SafeAnchor(SafeAnchorConfig(**SMALL, lam=1e12))
    assert method.config.project == "gradient"
    method.before_domain(ctx)
    sgd_step(ctx)
    method._set_current(method._with_memory(method.ssi(ctx)))
    update = {n: torch.randn_like(p) for n, p in ctx.trainable().items()}
    assert method.transform_update(ctx, update) is update  # the anchor's step is not projected
    projected = SafeAnchor(SafeAnchorConfig(**SMALL, lam=1e12, project="both"))
    projected.current, projected.alphas = method.current, method.alphas
    pair = next(iter(lora_pairs(update).values()))
    moved = flatten_pair(pair, projected.transform_update(ctx, update))
    assert (method.current[pair.layer].basis.T @ moved).abs().max() < 1e-5


def test_repair_length_scales_with_the_domain_and_is_recorded(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**{**SMALL, "repair_steps": 200}, repair_fraction=0.213, report_spectrum=False))
    method.s0 = 80.0
    method.before_domain(ctx)
    ctx.total_steps = 75  # the domain block's steps, as the loop leaves them
    ctx.refusal_rate = lambda prompts: 10.0
    block = method.after_domain(ctx)
    assert block.steps == 16 and block.note["repair_steps"] == 16  # round(0.213 * 75)
    assert method.domain_report(ctx)["csm"]["repair_steps_so_far"] == 16


def test_safety_set_mixes_harmful_and_benign_and_the_probe_stays_out_of_it(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig())
    safety = method.safety_set(ctx)
    kinds = [e.source for e in safety]
    assert len(safety) == 500 and kinds.count("harmful") == 250
    probe = method.probe_prompts(ctx)
    assert len(probe) == 200  # 60 HarmBench val behaviors + 140 held-out calibration prompts
    pool = {e.prompt for e in method.calibration(ctx).harmful}
    assert not pool & set(probe) and len(pool) == len(ctx.calibration.harmful) - 140


def test_anchor_uses_one_safety_batch_per_optimizer_step(tiny_world):
    ctx = tiny_context(tiny_world, batch_size=4, grad_accum=2)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    method.before_domain(ctx)
    assert next(method._anchor_stream)["input_ids"].shape[0] == 2  # 4 examples per step over 2 micro-batches
    method = SafeAnchor(SafeAnchorConfig(**SMALL, anchor_batch_size=3))
    method.before_domain(ctx)
    assert next(method._anchor_stream)["input_ids"].shape[0] == 3


# ---- defining rules: each test fails when its rule is deleted or its sign flipped ----------------------
def protected_share(method: SafeAnchor, tensors: dict[str, torch.Tensor]) -> float:
    """Largest share, over layers, of a gradient's norm inside the subspace OSCA projects on."""
    shares = [float((method.current[layer].basis.T @ flatten_pair(pair, tensors)).norm() / flatten_pair(pair, tensors).norm())
              for layer, pair in lora_pairs(tensors).items()]
    return max(shares)


def test_default_rule_projects_the_task_gradient(tiny_world):
    """g_i <- g_i - (1 - alpha_i) V_i V_i^T g_i on the task gradient, by hand against the alphas;
    with alpha = 0 nothing of it is left in V_i."""
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, lam=1e12))  # alpha_i = 0 everywhere
    method.before_domain(ctx)
    sgd_step(ctx)
    method._set_current(method._with_memory(method.ssi(ctx)))
    assert set(method.alphas.values()) == {0.0}
    grads = {n: torch.randn_like(p) for n, p in ctx.trainable().items()}
    assert protected_share(method, grads) > 0.05
    out = method.transform_gradients(ctx, grads)
    assert protected_share(method, out) < 1e-5
    for layer, pair in lora_pairs(grads).items():  # the orthogonal part is untouched
        basis, before, after = method.current[layer].basis, flatten_pair(pair, grads), flatten_pair(pair, out)
        assert torch.allclose(after, before - basis @ (basis.T @ before), atol=1e-5)


def grads_the_optimizer_sees(ctx, method: SafeAnchor, block: str) -> dict[str, torch.Tensor]:
    """The gradients the loop hands AdamW in one step of ``block`` (a global step pre-hook reads them)."""
    names = {id(p): n for n, p in ctx.trainable().items()}
    seen: dict[str, torch.Tensor] = {}

    def record(optimizer, args, kwargs) -> None:
        seen.update({names[id(p)]: p.grad.detach().clone()
                     for group in optimizer.param_groups for p in group["params"] if p.grad is not None})

    handle = register_optimizer_step_pre_hook(record)
    try:
        ctx.block = block
        run_block(ctx, method, ctx.domain_examples, 1, "test")
    finally:
        handle.remove()
    return seen


def protected_share_after_one_step(tiny_world, block: str, **config) -> float:
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**{**SMALL, "lam": 1e12, **config}))  # alpha_i = 0: the task gradient leaves V_i
    method.before_domain(ctx)
    sgd_step(ctx)  # away from the snapshot: the anchor KL has a gradient
    method._set_current(method._with_memory(method.ssi(ctx)))
    return protected_share(method, grads_the_optimizer_sees(ctx, method, block))


def test_anchor_and_repair_safety_gradients_bypass_osca(tiny_world):
    """What reaches the optimizer inside V_i (alpha = 0) is the anchor's and the repair's safety
    gradient only: they are added after the projection, never projected themselves."""
    assert protected_share_after_one_step(tiny_world, "domain", gamma=0.0, beta=0.0) < 1e-5  # task only: projected
    assert protected_share_after_one_step(tiny_world, "domain", gamma=1.0) > 1e-3  # the anchor KL's gradient
    assert protected_share_after_one_step(tiny_world, REPAIR, gamma=0.0, beta=1.0) > 1e-3  # beta * L_safe


def test_repair_adds_beta_times_the_safety_loss(tiny_world):
    """In the repair block extra_loss = gamma * KL + beta * L_safe; at the snapshot the KL is 0, so it
    is beta times the NLL of the safety batch (and nothing outside the repair)."""
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, beta=2.5))
    method.before_domain(ctx)
    safety = next(method._anchor_stream)
    method.before_domain(ctx)  # the same stream again, from its first batch
    assert abs(method.extra_loss(ctx, {}).item()) < 1e-7  # a domain block: the anchor only
    method.before_domain(ctx)
    ctx.block = REPAIR
    with torch.no_grad():
        expected = 2.5 * lm_loss(ctx.model, safety)
    assert expected > 0 and torch.allclose(method.extra_loss(ctx, {}), expected, rtol=1e-5)


def test_anchor_is_the_forward_kl_from_the_snapshot(tiny_world):
    """gamma KL(p_{theta_{t-1}} || p_theta), not the reverse: checked by hand from the logits before
    and after a step (the two directions differ by more than the tolerance)."""
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, gamma=1.0))
    method.before_domain(ctx)
    safety = next(method._anchor_stream)
    method.before_domain(ctx)
    with torch.no_grad():
        log_ref = torch.log_softmax(labelled_logits(ctx.model, safety)[0], -1)
    sgd_step(ctx, lr=5.0)  # a large step: KL is symmetric to second order, so a small one cannot tell them apart
    with torch.no_grad():
        log_p = torch.log_softmax(labelled_logits(ctx.model, safety)[0], -1)
    forward = (log_ref.exp() * (log_ref - log_p)).sum(-1).mean()
    reverse = (log_p.exp() * (log_p - log_ref)).sum(-1).mean()
    assert abs(forward - reverse) > 1e-2 * forward
    assert torch.allclose(method.extra_loss(ctx, {}).detach(), forward, rtol=1e-4)
