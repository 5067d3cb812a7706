"""The model presets whose chat model is the small organism, and where each takes small-base from.

A module of its own because importing it costs no torch: the CLI lists these presets while it builds
its parser, and presets.py builds them (harness/orchestration/small_model.py).
"""
from __future__ import annotations

from typing import Literal

SMALL_SOURCES: dict[str, Literal["gguf", "hub"]] = {"small": "gguf", "small-hub": "hub"}
