"""Methods: one file each, hooks of the harness's one training loop (``methods/base.py``); the
registry (``methods/registry.py``) finds built-ins, entry points and ``module:Class`` paths."""
from __future__ import annotations

from methods.base import Method, MethodConfig, TrainingBlock
from methods.registry import METHODS, all_methods, build_method, register, resolve_method

# Built-in methods register themselves on import.
from methods import ewc, interleave, no_training, olora, safe_lora, safeanchor, safegrad, standard_lora, vaccine  # noqa: E402,F401
from methods import adaptive_reg, asft, ema, guardspace  # noqa: E402,F401

__all__ = ["METHODS", "Method", "MethodConfig", "TrainingBlock", "all_methods", "build_method", "register", "resolve_method"]
