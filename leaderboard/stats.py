"""Uncertainty at leaderboard time, from the bootstrap draws each evaluation point stored.

No torch and no benchmark code: a run's step has, for every score, ``N`` draws made on Poisson
resamples of its items, seeded by (benchmark, item id) only (benchmarks/base.py), so two runs scored
on the same items were resampled identically and subtracting their draws is a *paired* bootstrap.
Seed pooling, significance, p-values and significance ranks: docs/leaderboard.md, "Uncertainty".
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from harness.core.store import draw_interval

LEVEL = 0.95
SEED_RESAMPLE_SEED = 25


@dataclass(frozen=True)
class Comparison:
    """``this − other`` for one score, with its paired-bootstrap interval and p-value."""

    other: str
    difference: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool | None  # None: no draws to decide with
    paired: bool  # every benchmark was scored on the same items in both (else an unpaired bootstrap)


def interval(draws: np.ndarray | None, level: float = LEVEL) -> tuple[float, float] | None:
    return None if draws is None else draw_interval(draws.tolist(), level)


def seed_mean_draws(run_draws: list[np.ndarray], label: str) -> np.ndarray:
    """Draw b of the mean over seeds: the mean of draw b over a resample of the runs (see module doc).

    One run: its own draws. ``label`` seeds the seed resampling, so a re-render gives the same numbers."""
    runs = np.vstack(run_draws)
    n_runs, n_draws = runs.shape
    if n_runs == 1:
        return runs[0]
    rng = np.random.default_rng([SEED_RESAMPLE_SEED, zlib.crc32(label.encode("utf-8"))])
    picks = rng.integers(0, n_runs, size=(n_draws, n_runs))
    chosen = runs[picks, np.arange(n_draws)[:, None]]
    with warnings.catch_warnings():  # a draw undefined in every chosen run stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(chosen, axis=1)


def compare(this: np.ndarray, other: np.ndarray, point: float, other_name: str, paired: bool,
            level: float = LEVEL) -> Comparison:
    """Bootstrap test of ``this − other`` from draws made on the same resamples (paired) or not."""
    difference = this - other
    finite = difference[np.isfinite(difference)]
    found = draw_interval(finite.tolist(), level)
    if found is None:
        return Comparison(other_name, point, None, None, None, None, paired)
    low, high = found
    p_value = min(1.0, 2.0 * min(float(np.mean(finite <= 0)), float(np.mean(finite >= 0))))
    return Comparison(other_name, point, low, high, p_value, bool(low > 0 or high < 0), paired)


def significance_ranks(beaten_by: list[int]) -> list[str]:
    """Rank of each row = 1 + the number of rows significantly better than it (``beaten_by[i]``).

    A tie is not chained: with A ~ B and B ~ C but A > C, A and B share rank 1 and C ranks 2, where
    "keep the neighbour's rank unless the two differ" would put all three at 1. A shared rank is
    written with a leading "=" ("=2")."""
    ranks = [1 + count for count in beaten_by]
    return [f"={r}" if ranks.count(r) > 1 else str(r) for r in ranks]
