"""methods/lora_utils.py: pairing, projections, per-example gradients, Fisher subspaces, KL, replay."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import sgd_step, tiny_context

from harness.core.losses import lm_loss
from methods.lora_utils import (
    Subspace,
    coverage_rank,
    fisher_subspace,
    fixed_batches,
    flatten_pair,
    kl_to_disabled_adapter,
    lora_pairs,
    merge_bases,
    merge_subspaces,
    per_example_grads,
    remove_component,
    response_kl,
    safety_replay,
    unflatten_pair,
)


def test_lora_pairs_group_a_and_b_per_layer():
    names = ["m.layers.0.q_proj.lora_A.default.weight", "m.layers.0.q_proj.lora_B.default.weight",
             "m.layers.0.q_proj.base_layer.weight", "m.layers.1.v_proj.lora_A.default.weight"]
    pairs = lora_pairs(names)
    assert list(pairs) == ["m.layers.0.q_proj"]  # v_proj has no B: not a pair
    assert pairs["m.layers.0.q_proj"].a.endswith("lora_A.default.weight")


def test_flatten_is_b_then_a_and_round_trips():
    pair = lora_pairs(["x.lora_A.d.weight", "x.lora_B.d.weight"])["x"]
    tensors = {pair.a: torch.arange(6.0).view(2, 3), pair.b: torch.arange(4.0).view(2, 2) + 10}
    vector = flatten_pair(pair, tensors)
    assert vector.tolist() == [10, 11, 12, 13, 0, 1, 2, 3, 4, 5]
    back = unflatten_pair(pair, vector, tensors)
    assert all(torch.equal(back[n], tensors[n]) for n in tensors)


def test_remove_component_hand_computed():
    basis = torch.tensor([[1.0], [0.0], [0.0]])
    vector = torch.tensor([3.0, 4.0, 5.0])
    assert remove_component(vector, basis).tolist() == [0.0, 4.0, 5.0]
    assert remove_component(vector, basis, 0.5).tolist() == [1.5, 4.0, 5.0]
    assert torch.equal(remove_component(vector, torch.zeros(3, 0)), vector)


def test_remove_component_leaves_nothing_in_a_random_subspace():
    gen = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(50, 4, generator=gen, dtype=torch.float64))
    vector = torch.randn(50, generator=gen, dtype=torch.float64)
    projected = remove_component(vector, basis)
    assert torch.allclose(basis.T @ projected, torch.zeros(4, dtype=torch.float64), atol=1e-12)
    # The removed part is exactly the subspace component.
    assert torch.allclose(vector - projected, basis @ (basis.T @ vector), atol=1e-12)


def test_fisher_subspace_matches_explicit_eigendecomposition():
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(6, 3, generator=gen, dtype=torch.float64) @ torch.randn(3, 20, generator=gen, dtype=torch.float64)
    space = fisher_subspace(grads, rho=0.9)
    fisher = grads.T @ grads / 6  # only affordable because p = 20 here
    evals = torch.linalg.eigvalsh(fisher).flip(0)
    assert space.trace == torch.trace(fisher).item() == (grads.pow(2).sum() / 6).item()
    assert torch.allclose(space.eigenvalues.double(), evals[: space.eigenvalues.numel()], rtol=1e-5)
    assert space.eigenvalues.numel() == 3  # rank 3: the zero eigenvalues are dropped
    assert space.rank == coverage_rank(evals, space.trace, 0.9)
    assert torch.allclose(space.basis.T @ space.basis, torch.eye(space.rank, dtype=torch.float64), atol=1e-10)
    # Each column is an eigenvector: F v = lambda v.
    assert torch.allclose(fisher @ space.basis, space.basis * space.eigenvalues[: space.rank].double(), atol=1e-8)


def test_coverage_rank():
    evals = torch.tensor([5.0, 3.0, 1.0, 1.0])
    assert coverage_rank(evals, 10.0, 0.5) == 1
    assert coverage_rank(evals, 10.0, 0.8) == 2
    assert coverage_rank(evals, 10.0, 0.9) == 3
    assert coverage_rank(evals, 20.0, 0.9) == 4  # unreachable: every positive eigenvalue
    assert coverage_rank(torch.zeros(3), 0.0, 0.9) == 0


def test_merge_averages_the_two_fishers():
    gen = torch.Generator().manual_seed(2)
    g1 = torch.randn(4, 12, generator=gen, dtype=torch.float64)
    g2 = torch.randn(4, 12, generator=gen, dtype=torch.float64)
    merged = merge_subspaces(fisher_subspace(g1, 1.0), fisher_subspace(g2, 1.0), rho=1.0)
    average = (g1.T @ g1 / 4 + g2.T @ g2 / 4) / 2
    expected = torch.linalg.eigvalsh(average).flip(0)[: merged.rank]
    assert torch.allclose(merged.eigenvalues[: merged.rank].double(), expected, rtol=1e-6)
    assert abs(merged.trace - torch.trace(average).item()) < 1e-9
    empty = Subspace(torch.zeros(12, 0, dtype=torch.float64), torch.zeros(0), 0.0)
    assert merge_subspaces(empty, empty, 0.9).rank == 0


def test_merge_bases_is_the_papers_svd_of_the_two_bases_hand_computed():
    """[V_old | V_new] with V_old = (e1) and V_new = (e1, e2): S^2 = (2, 1, 0), so rho = 0.9 keeps
    e1 and e2 (2/3 < 0.9) and rho = 0.6 keeps e1 only; tr(F) is the new estimate's."""
    eye = torch.eye(3, dtype=torch.float64)
    old = Subspace(eye[:, :1], torch.tensor([5.0]), 5.0, 0.5)
    new = Subspace(eye[:, :2], torch.tensor([3.0, 1.0]), 4.0, 0.25)
    merged = merge_bases(old, new, 0.9)
    assert merged.rank == 2 and merged.eigenvalues[:2].tolist() == pytest.approx([2.0, 1.0])
    assert torch.allclose(merged.basis.abs(), eye[:, :2]) and (merged.trace, merged.batch_trace) == (4.0, 0.25)
    assert merge_bases(old, new, 0.6).rank == 1


def test_response_kl_hand_value():
    ref = torch.zeros(2, 2)  # uniform reference at two response positions
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0))], [0.0, 0.0]])  # p = (1/4, 3/4), then uniform
    # KL(u || (1/4, 3/4)) and KL(u || u) = 0, averaged over the two positions.
    expected = (0.5 * torch.log(torch.tensor(2.0)) + 0.5 * torch.log(torch.tensor(2 / 3))) / 2
    assert torch.allclose(response_kl(logits, ref), expected)


def test_anchor_kl_equals_the_full_logits_kl_at_response_tokens(tiny_world):
    """The labelled-positions KL is the all-positions KL restricted to the response (checked by hand
    from the model's full logits)."""
    ctx = tiny_context(tiny_world)
    model = ctx.model
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # a non-trivial adapter, so the KL is not zero
    batch = next(ctx.batches(list(ctx.calibration.harmful[:4]) + list(ctx.calibration.benign[:4])))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        full = model(**inputs).logits[:, :-1]
        with model.disable_adapter():
            reference = model(**inputs).logits[:, :-1]
        response = batch["labels"][:, 1:] != -100
        log_p, log_ref = torch.log_softmax(full[response], -1), torch.log_softmax(reference[response], -1)
        expected = (log_ref.exp() * (log_ref - log_p)).sum(-1).mean()
        assert expected > 1e-4
        assert torch.allclose(kl_to_disabled_adapter(model, batch), expected, rtol=1e-4)


def test_safety_replay_mixes_benign_and_harmful(tiny_world):
    ctx = tiny_context(tiny_world)
    replay = safety_replay(ctx.calibration, 10, 0.3, seed=0)
    assert sum(e in ctx.calibration.harmful for e in replay) == 3
    assert sum(e in ctx.calibration.benign for e in replay) == 7
    assert replay == safety_replay(ctx.calibration, 10, 0.3, seed=0)


def test_per_example_grads_match_single_example_backward(tiny_world):
    ctx = tiny_context(tiny_world)
    sgd_step(ctx)  # B != 0, so lora_A gradients are non-zero too
    params = ctx.trainable()
    pairs = lora_pairs(params)
    examples = [ctx.domain_examples[0], ctx.calibration.harmful[0], ctx.calibration.benign[0]]
    batch = next(fixed_batches(ctx.tokenizer, examples, 3, 96))
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1  # padding involved
    grads = per_example_grads(ctx.model, batch, pairs)
    for i in range(3):
        length = int(batch["attention_mask"][i].sum())
        single = {k: v[i : i + 1, :length] for k, v in batch.items()}
        reference = dict(zip(params, torch.autograd.grad(lm_loss(ctx.model, single), list(params.values())), strict=True))
        for layer, pair in pairs.items():
            assert torch.allclose(grads[layer][i], flatten_pair(pair, reference), atol=1e-6)
    assert all(p.grad is None for p in params.values())
