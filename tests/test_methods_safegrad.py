"""SafeGrad: the conflict rule on gradients and updates, grouping, and the KL alignment gradient."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import TINY_SUITE, sgd_step, tiny_context

from harness.core.losses import labelled_logits
from harness.core.models import load_model, load_tokenizer
from harness.core.safety_data import calibration_set
from harness.core.store import ResultStore
from harness.orchestration.config import load_suite
from harness.orchestration.runner import Run
from methods.lora_utils import disabled_adapter_logits, fixed_batches, kl_to_disabled_adapter
from methods.safegrad import SafeGrad, SafeGradConfig, surgery


def test_conflicting_gradient_is_projected_onto_the_normal_plane():
    g_u, g_a = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([-1.0, 1.0])}
    out, conflicts = surgery(g_u, g_a, [["w"]])
    # g_u . g_a = -1 < 0: g_u - (-1 / 2) g_a = (0.5, 0.5), now orthogonal to g_a.
    assert conflicts == 1 and out["w"].tolist() == [0.5, 0.5]


def test_non_conflicting_gradient_is_unchanged():
    g_u, g_a = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])}
    out, conflicts = surgery(g_u, g_a, [["w"]])
    assert conflicts == 0 and out["w"].tolist() == [1.0, 0.0]


def test_zero_alignment_gradient_changes_nothing():
    out, conflicts = surgery({"w": torch.tensor([1.0, 2.0])}, {"w": torch.zeros(2)}, [["w"]])
    assert conflicts == 0 and out["w"].tolist() == [1.0, 2.0]


def test_global_and_per_group_tests_differ():
    g_u = {"a": torch.tensor([1.0]), "b": torch.tensor([1.0])}
    g_a = {"a": torch.tensor([-1.0]), "b": torch.tensor([3.0])}
    same, conflicts = surgery(g_u, g_a, [["a", "b"]])  # global dot = 2 > 0: no conflict
    assert conflicts == 0 and same == g_u
    split, conflicts = surgery(g_u, g_a, [["a"], ["b"]])  # group a conflicts and is zeroed
    assert conflicts == 1 and split["a"].tolist() == [0.0] and split["b"].tolist() == [1.0]


def test_fresh_adapter_has_zero_alignment_gradient_and_is_left_alone(tiny_world):
    ctx = tiny_context(tiny_world)
    method = SafeGrad(SafeGradConfig(alignment_examples=8, alignment_batch_size=2))
    method.before_domain(ctx)
    grads = {n: torch.randn_like(p) for n, p in ctx.trainable().items()}
    out = method.transform_gradients(ctx, grads)
    assert all(torch.equal(out[n], grads[n]) for n in grads)
    assert method.counts["gradient_conflicts"] == 0


def test_after_one_step_conflicts_are_removed_from_gradient_and_update(tiny_world):
    ctx = tiny_context(tiny_world)
    sgd_step(ctx)
    method = SafeGrad(SafeGradConfig(alignment_examples=8, alignment_batch_size=2, add_alignment_gradient=False,
                                     projection="per_layer", project="both"))
    method.before_domain(ctx)
    g_a = method.alignment_gradient(ctx)
    assert sum(g.pow(2).sum() for g in g_a.values()) > 0
    # A task gradient exactly opposed to g_a conflicts in every group and is projected to zero.
    out = method.gradient_rule({n: -2 * g for n, g in g_a.items()}, g_a)
    assert all(torch.allclose(out[n], torch.zeros_like(g), atol=1e-7) for n, g in g_a.items())
    # An update that climbs the alignment loss (u . g_a > 0) is projected to zero; one descending it is kept.
    up = method.update_rule({n: 3 * g for n, g in g_a.items()}, g_a)
    assert all(torch.allclose(up[n], torch.zeros_like(g), atol=1e-7) for n, g in g_a.items())
    down = method.update_rule({n: -g for n, g in g_a.items()}, g_a)
    assert all(torch.equal(down[n], -g) for n, g in g_a.items())
    assert method.domain_report(ctx)["safegrad"]["update_conflicts"] == len({n.rsplit(".lora_", 1)[0] for n in g_a})


def test_default_is_the_papers_gradient_surgery():
    method = SafeGrad()
    assert method.config.project == "gradient" and method.config.add_alignment_gradient
    update = {"w": torch.tensor([1.0, 0.0])}
    assert method.update_rule(update, {"w": torch.tensor([-1.0, 1.0])}) == update  # the update is not touched


def test_a_step_along_the_added_alignment_gradient_lowers_the_kl_to_the_aligned_model(tiny_world):
    """g_a is the gradient of KL(p_ref || p_theta), with its sign: the optimizer's step theta - lr * g_a
    (what g_u' + g_a contributes) brings the model closer to the aligned one on the same batch."""
    ctx = tiny_context(tiny_world)
    sgd_step(ctx, lr=0.5)
    method = SafeGrad(SafeGradConfig(alignment_examples=8, alignment_batch_size=4))
    method.before_domain(ctx)
    batch = next(method._stream)
    method.before_domain(ctx)  # the same stream again: g_a is taken on that batch
    step = method.gradient_rule({n: torch.zeros_like(p) for n, p in ctx.trainable().items()}, method.alignment_gradient(ctx))
    with torch.no_grad():
        before = kl_to_disabled_adapter(ctx.model, batch)
        norm = sum(g.pow(2).sum() for g in step.values()).sqrt()
        for name, param in ctx.trainable().items():
            param -= 0.05 * step[name] / norm
        after = kl_to_disabled_adapter(ctx.model, batch)
    assert before > 1e-4 and after < 0.99 * before


def test_alignment_gradient_is_added_when_configured(tiny_world):
    ctx = tiny_context(tiny_world)
    sgd_step(ctx)
    method = SafeGrad(SafeGradConfig(alignment_examples=8, alignment_batch_size=2, project="update"))
    method.before_domain(ctx)
    grads = {n: torch.zeros_like(p) for n, p in ctx.trainable().items()}
    out = method.transform_gradients(ctx, grads)
    assert all(torch.equal(out[n], method._alignment_grad[n]) for n in grads)


@pytest.mark.slow
def test_reference_at_domain_three_is_the_aligned_model(tiny_world, tmp_path, monkeypatch):
    """Through the runner: at the third domain p_ref (the model with the adapter disabled) is the
    aligned model, not the model that left domain 2."""
    suite = load_suite(TINY_SUITE, {"domains": ["medical", "legal", "code"], "methods": ["safegrad"], "benchmarks": ["harmbench"],
                                    "eval": {"caps": {"harmbench": 2}}, "training": {"max_steps": 3},
                                    "method_configs": {"safegrad": {"alignment_examples": 8, "alignment_batch_size": 2}}})
    batch = next(fixed_batches(load_tokenizer(tiny_world.tokenizer), list(calibration_set(0).harmful[:4]), 4, 64))
    seen: dict[str, torch.Tensor] = {}
    before_domain = SafeGrad.before_domain

    def record_reference(self, ctx):
        before_domain(self, ctx)
        if ctx.domain_index == 2:
            seen["reference"] = disabled_adapter_logits(ctx.model, batch)
            seen["entering"] = labelled_logits(ctx.model, batch)[0].detach()

    monkeypatch.setattr(SafeGrad, "before_domain", record_reference)
    info = Run(suite, tiny_world, "safegrad", suite.domains, 0, ResultStore(tmp_path / "results")).execute()
    assert info.status == "done", info.error
    with torch.no_grad():
        aligned = labelled_logits(load_model(tiny_world.chat), batch)[0]
    assert torch.allclose(seen["reference"], aligned, atol=1e-5)
    assert not torch.allclose(seen["entering"], aligned, atol=1e-3)  # two domains of training moved the model
