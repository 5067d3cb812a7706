"""Methods: one file each, hooks of the harness's one training loop (``methods/base.py``); the
registry (``methods/registry.py``) finds built-ins, entry points and ``module:Class`` paths."""
from __future__ import annotations

# Built-in methods register themselves on import.
from methods import (  # noqa: E402,F401  # noqa: E402,F401
    adaptive_reg,
    asft,
    ema,
    ewc,
    guardspace,
    interleave,
    no_training,
    olora,
    safe_lora,
    safeanchor,
    safegrad,
    standard_lora,
    vaccine,
)
from methods.base import Method, MethodConfig, TrainingBlock
from methods.registry import METHODS, all_methods, build_method, register, resolve_method

__all__ = ["METHODS", "Method", "MethodConfig", "TrainingBlock", "all_methods", "build_method", "register", "resolve_method"]
