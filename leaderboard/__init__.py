"""Leaderboard: tables, plots, a static HTML page and a sample viewer from a results folder.

Reads results only through ``harness.core.store`` and needs only the standard library, pandas,
numpy and matplotlib, never torch, so a results folder copied off a GPU cluster renders on any laptop.
"""
from leaderboard.render import render, terminal_table

__all__ = ["render", "terminal_table"]
