"""Deliberately broken models, to check that the harness says so (``erosion evaluate --perturb``).

A collapsed model must be flagged degenerate, and its composite not read as a safety result
(issue 25): these perturbations make one from any starting model, reproducibly.

* ``zero``: every weight set to 0. Every logit is then 0, greedy decoding emits token 0 over and
  over, and every log-likelihood choice is a tie.
* ``noise:STD``: every weight *replaced* by Gaussian noise of standard deviation STD (seeded,
  seed 0), e.g. ``noise:0.5``, the destroyed model of issues 22 and 25.
"""
from __future__ import annotations

import torch

from harness.core.errors import ConfigError

NOISE_SEED = 0


def parse_perturbation(spec: str) -> tuple[str, float]:
    """``zero`` -> ("zero", 0.0); ``noise:0.5`` -> ("noise", 0.5); anything else a ConfigError."""
    kind, _, value = spec.partition(":")
    if kind == "zero" and not value:
        return "zero", 0.0
    if kind == "noise":
        try:
            std = float(value)
        except ValueError:
            std = float("nan")
        if std > 0 and std != float("inf"):
            return "noise", std
    raise ConfigError(f"--perturb {spec!r}: expected 'zero' or 'noise:STD' with a positive finite STD, "
                      f"e.g. --perturb noise:0.5.")


@torch.no_grad()
def perturb(model: torch.nn.Module, spec: str) -> torch.nn.Module:
    """Apply ``spec`` to every parameter of ``model`` in place; returns the model."""
    kind, std = parse_perturbation(spec)
    generator = torch.Generator().manual_seed(NOISE_SEED)
    for parameter in model.parameters():
        if kind == "zero":
            parameter.zero_()
        else:
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std
            parameter.copy_(noise.to(parameter.device, parameter.dtype))
    return model
