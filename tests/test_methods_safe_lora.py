"""Safe LoRA: the projection, the cosine, the threshold and number rules, and the weight edit."""
from __future__ import annotations

import torch
from test_methods_support import sgd_step, tiny_context

from methods.lora_utils import lora_pairs
from methods.safe_lora import (
    SafeLoRA,
    SafeLoRAConfig,
    open_weights,
    projection_cosine,
    safe_lora_project,
    select_layers,
    weight_key,
)


def explicit_cosine(v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    c = v @ v.T / torch.linalg.matrix_norm(v)  # affordable only for small test tensors
    delta = b @ a
    return float(torch.nn.functional.cosine_similarity((c @ delta).flatten(), delta.flatten(), dim=0))


def test_projection_hand_computed():
    v = torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 4.0]])  # ||V||_F = 5
    b = torch.tensor([[1.0], [1.0], [1.0]])
    # V V^T b = (9, 0, 16); divided by 5.
    assert torch.allclose(safe_lora_project(v, b), torch.tensor([[1.8], [0.0], [3.2]]))


def test_cosine_from_small_matrices_matches_the_explicit_one():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(12, 9, generator=gen, dtype=torch.float64)
    a = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    b = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    assert abs(projection_cosine(v, a, b) - explicit_cosine(v, a, b)) < 1e-12
    assert projection_cosine(v, a, torch.zeros(12, 3, dtype=torch.float64)) is None  # untrained: B A = 0
    # Delta W inside span(V): C B A is a positive multiple of B A.
    q, _ = torch.linalg.qr(torch.randn(12, 2, generator=gen, dtype=torch.float64))
    assert abs(projection_cosine(q, a[:2], q) - 1.0) < 1e-12


def test_threshold_rule_projects_cosines_at_or_below_the_threshold():
    cosines = {"l0": 0.9, "l1": 0.5, "l2": 0.1, "l3": 0.6}
    assert select_layers(cosines, "threshold", 0.5, 10) == ["l1", "l2"]
    assert select_layers(cosines, "threshold", 0.0, 10) == []


def test_number_mode_projects_the_lowest_cosines():
    cosines = {"l0": 0.9, "l1": 0.5, "l2": 0.1, "l3": 0.6}
    assert select_layers(cosines, "number", 0.5, 2) == ["l1", "l2"]
    assert select_layers(cosines, "number", 0.5, 10) == ["l0", "l1", "l2", "l3"]


def test_edit_replaces_b_by_c_b_on_the_chosen_layers(tiny_world):
    ctx = tiny_context(tiny_world)
    sgd_step(ctx)
    method = SafeLoRA(SafeLoRAConfig(mode="number", num_layers=2))
    edits = method.edit_weights(ctx)
    params = ctx.trainable()
    pairs = lora_pairs(params)
    chosen = method.last_edit["projected"]
    assert len(chosen) == 2 and set(edits) == {pairs[layer].b for layer in chosen}
    lowest = sorted(method.last_edit["cosine"].values())[:2]
    assert sorted(method.last_edit["cosine"][layer] for layer in chosen) == lowest
    with open_weights(ctx.checkpoints["aligned"]) as aligned, open_weights(ctx.checkpoints["base"]) as base:
        for layer in chosen:
            key = weight_key(layer, aligned)
            v = aligned[key].get_tensor(key) - base[key].get_tensor(key)
            b, a = params[pairs[layer].b].detach(), params[pairs[layer].a].detach()
            assert torch.allclose(edits[pairs[layer].b], v @ v.T @ b / torch.linalg.matrix_norm(v), atol=1e-6)
            assert abs(method.last_edit["cosine"][layer] - explicit_cosine(v.double(), a.double(), b.double())) < 1e-5
    assert SafeLoRA(SafeLoRAConfig(mode="threshold", threshold=-1.0)).edit_weights(ctx) is None  # nothing at or below -1


def test_default_is_ibms_number_mode_with_ten_layers():
    config = SafeLoRAConfig()
    assert (config.mode, config.num_layers) == ("number", 10)
