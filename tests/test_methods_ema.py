"""EMA: the moving-average rule on hand-computed numbers, and the average written into the adapter."""
from __future__ import annotations

import pytest
import torch
from test_methods_support import tiny_context

from harness.orchestration.config import load_suite
from harness.training import run_block
from methods.ema import EMA, EMAConfig, ema_step
from methods.standard_lora import StandardLoRA


def test_ema_step_hand_computed():
    shadow, current = {"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([3.0, 10.0])}
    # 0.9 * (1, 0) + 0.1 * (3, 10) = (1.2, 1.0)
    assert torch.allclose(ema_step(shadow, current, 0.9)["w"], torch.tensor([1.2, 1.0]))
    assert torch.equal(ema_step(shadow, current, 0.0)["w"], current["w"])  # eta = 0: plain training


def test_updates_track_the_parameters_and_the_average_follows_the_rule():
    method = EMA(EMAConfig(decay=0.5))
    method.live = {"w": torch.tensor([0.0])}
    method.shadow = {"w": torch.tensor([0.0])}
    for delta in (4.0, 4.0):  # parameters 0 -> 4 -> 8
        assert torch.equal(method.transform_update(None, {"w": torch.tensor([delta])})["w"], torch.tensor([delta]))
    # shadow: 0.5 * 0 + 0.5 * 4 = 2, then 0.5 * 2 + 0.5 * 8 = 5
    assert torch.equal(method.live["w"], torch.tensor([8.0])) and torch.equal(method.shadow["w"], torch.tensor([5.0]))
    assert method.steps == 2


def test_domain_result_is_the_average_not_the_last_iterate(tiny_world):
    decay, steps = 0.8, 3
    ctx = tiny_context(tiny_world)
    start = {n: p.detach().clone() for n, p in ctx.trainable().items()}
    method = EMA(EMAConfig(decay=decay))
    method.before_domain(ctx)
    trajectory = []
    original = method.transform_update

    def recording(ctx_, update):
        out = original(ctx_, update)
        trajectory.append({n: v.clone() for n, v in method.live.items()})
        return out

    method.transform_update = recording
    run_block(ctx, method, ctx.domain_examples, steps, "ema")
    last = {n: p.detach().clone() for n, p in ctx.trainable().items()}
    assert all(torch.equal(trajectory[-1][n], last[n]) for n in last)  # the tracked copy is exact
    # theta_ema = eta^3 theta_0 + (1 - eta) (eta^2 theta_1 + eta theta_2 + theta_3), by hand.
    expected = {n: decay**3 * start[n] + (1 - decay) * (decay**2 * trajectory[0][n] + decay * trajectory[1][n] + trajectory[2][n])
                for n in start}
    edits = method.edit_weights(ctx)
    assert set(edits) == set(start)
    assert all(torch.allclose(edits[n], expected[n], atol=1e-7) for n in start)
    moved = [n for n in start if "lora_B" in n]
    assert all(not torch.allclose(edits[n], last[n]) for n in moved)  # the average, not theta_T
    assert method.domain_report(ctx)["ema"] == {"decay": decay, "steps": steps, "start_weight": decay**steps}


def test_training_itself_is_plain_lora(tiny_world):
    """The average never feeds back into the optimizer: the iterates equal Standard LoRA's."""
    runs = []
    for method in (EMA(EMAConfig(decay=0.9)), StandardLoRA()):
        ctx = tiny_context(tiny_world)
        method.before_domain(ctx)
        run_block(ctx, method, ctx.domain_examples, 2, "t")
        runs.append({n: p.detach().clone() for n, p in ctx.trainable().items()})
    assert all(torch.allclose(runs[0][n], runs[1][n]) for n in runs[0])


def retained_share(decay: float, steps: int) -> float:
    """Where the average ends on a steadily trained path theta_t = (t / T) D, as a share of D."""
    method = EMA(EMAConfig(decay=decay))
    method.live, method.shadow = {"w": torch.zeros((), dtype=torch.float64)}, {"w": torch.zeros((), dtype=torch.float64)}
    for _ in range(steps):
        method.transform_update(None, {"w": torch.tensor(1.0 / steps, dtype=torch.float64)})
    return float(method.shadow["w"])


@pytest.mark.parametrize("suite", ["micro", "small"])
def test_eta_keeps_the_paper_scale_share_of_the_trained_displacement(suite):
    """eta 0.99 over the paper's 938 steps ends at 89.4 % of D; over 32 steps at 14.9 %; each CPU
    preset's eta ends at the paper's share after its own steps per domain (micro 32, small 48)."""
    found = load_suite(suite, {"methods": ["ema"]})
    assert EMAConfig().decay == 0.99
    paper = retained_share(0.99, 938)
    assert abs(paper - 0.894) < 1e-3 and abs(retained_share(0.99, 32) - 0.149) < 1e-3
    assert abs(retained_share(found.method_configs["ema"]["decay"], found.training.max_steps) - paper) < 1e-3
