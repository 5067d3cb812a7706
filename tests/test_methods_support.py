"""Shared helpers of the method tests (imported by the other test_methods_* files; holds no tests)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.core.adapters import attach_adapter
from harness.core.context import TrainContext
from harness.core.domains import domain_examples
from harness.core.losses import lm_loss
from harness.core.models import ModelHandle, load_model, load_tokenizer
from harness.core.safety_data import calibration_set
from harness.orchestration.config import load_suite

TINY_SUITE = Path(__file__).resolve().parent / "tiny-suite.yaml"


def tiny_context(handle: ModelHandle, adapter_seed: int = 1, **training) -> TrainContext:
    """A TrainContext over the tiny chat model with a fresh LoRA adapter (B = 0), domain 'medical'."""
    torch.manual_seed(0)
    settings = load_suite(TINY_SUITE, {"training": training} if training else None).training
    model = attach_adapter(load_model(handle.chat), settings, adapter_seed)
    return TrainContext(model=model, tokenizer=load_tokenizer(handle.tokenizer), settings=settings,
                        calibration=calibration_set(0), seed=0, checkpoints={"base": handle.base, "aligned": handle.chat},
                        domains=["medical"], domain="medical", domain_index=0, domain_examples=domain_examples("medical", 24, 0))


def sgd_step(ctx: TrainContext, lr: float = 0.05) -> None:
    """One plain gradient step on a domain batch, so the adapter leaves B = 0."""
    params = ctx.trainable()
    loss = lm_loss(ctx.model, next(ctx.batches(ctx.domain_examples)))
    grads = torch.autograd.grad(loss, list(params.values()))
    with torch.no_grad():
        for p, g in zip(params.values(), grads, strict=True):
            p -= lr * g / (g.norm() + 1e-12)


def install_example(example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """pip-install an out-of-tree example package into a temporary target (never into the running
    environment) and put it first on sys.path, so its entry points are found."""
    source = shutil.copytree(example, tmp_path / "src")  # build there: no build/ or egg-info in the checkout
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True)
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, module, raising=False)
