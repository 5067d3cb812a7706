"""SafeAnchor: OSCA's projection and alphas, the SSI schedule at a fresh adapter, the update projection
after AdamW, the anchor KL, CSM's repair block and the Fisher spectrum report."""
from __future__ import annotations

import torch

from harness.training import run_block, train_domain
from methods.lora_utils import Subspace, flatten_pair, lora_pairs
from methods.safeanchor import CSM_EVENT, REPAIR, SafeAnchor, SafeAnchorConfig, osca_alphas, project_pairs
from test_methods_support import sgd_step, tiny_context

SMALL = dict(calibration_size=6, fisher_batch_size=6, probe_size=3, repair_steps=2, repair_safety_examples=4)


def a_block(space: Subspace, n_b: int) -> torch.Tensor:
    """The lora_A rows of a layer's basis (vec([B; A]) puts B first)."""
    return space.basis[n_b:]


def test_alphas_use_traces_relative_to_the_mean():
    assert osca_alphas({"a": 1.0, "b": 3.0}, 0.5) == {"a": 0.75, "b": 0.25}
    assert osca_alphas({"a": 1000.0, "b": 3000.0}, 0.5) == {"a": 0.75, "b": 0.25}  # loss scale drops out
    assert osca_alphas({"a": 1.0, "b": 3.0}, 1.0) == {"a": 0.5, "b": 0.0}
    assert osca_alphas({"a": 0.0}, 0.5) == {"a": 1.0}


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
        method = SafeAnchor(SafeAnchorConfig(**SMALL, lam=1e6, project=project))  # alpha_i = 0 everywhere
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
                           "s_t": 60.0, "threshold": 76.0, "triggered": True}]
    report = method.domain_report(ctx)
    assert report["csm"]["triggered"] and report["csm"]["triggers_so_far"] == 1
    layers = report["fisher_spectrum"]["layers"]
    assert set(layers) == set(lora_pairs(ctx.trainable()))
    entry = next(iter(layers.values()))
    assert {"k90_safety", "k90_random", "eigenvalues_safety", "eigenvalues_random"} <= set(entry)
    assert 0 < len(entry["eigenvalues_safety"]) <= 32 and entry["eigenvalues_safety"] == sorted(entry["eigenvalues_safety"], reverse=True)


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


def test_memory_is_merged_across_domains_and_survives_a_resume(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeAnchor(SafeAnchorConfig(**SMALL, report_spectrum=False))
    method.before_domain(ctx)
    sgd_step(ctx)
    method.after_domain(ctx)
    resumed = SafeAnchor(method.config)
    resumed.load_state_dict(method.state_dict())
    nxt = tiny_context(tiny_world, adapter_seed=2)
    nxt.domain_index = 1
    resumed.before_domain(nxt)
    for layer, space in resumed.current.items():
        memory = resumed.memory[layer]
        assert space.trace > 0 and abs(space.trace - (memory.trace + method.ssi(nxt)[layer].trace) / 2) < 1e-6 * space.trace
        # The merged basis still spans the remembered lora_A directions (a fresh adapter has none of its own).
        n_b = nxt.trainable()[lora_pairs(nxt.trainable())[layer].b].numel()
        assert a_block(space, n_b).abs().max() > 0


def test_anchor_uses_one_safety_batch_per_optimizer_step(tiny_world):
    ctx = tiny_context(tiny_world, batch_size=4, grad_accum=2)
    method = SafeAnchor(SafeAnchorConfig(**SMALL))
    method.before_domain(ctx)
    assert next(method._anchor_stream)["input_ids"].shape[0] == 2  # 4 examples per step over 2 micro-batches
    method = SafeAnchor(SafeAnchorConfig(**SMALL, anchor_batch_size=3))
    method.before_domain(ctx)
    assert next(method._anchor_stream)["input_ids"].shape[0] == 3
