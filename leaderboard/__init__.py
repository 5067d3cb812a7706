"""Leaderboard: tables, plots and a static HTML page from a results folder.

Reads results only through ``harness.core.store`` and needs only the standard library, numpy and
matplotlib, never torch, so a results folder copied off a GPU cluster renders on any laptop.
"""
from leaderboard.render import render, terminal_table

__all__ = ["render", "terminal_table"]
