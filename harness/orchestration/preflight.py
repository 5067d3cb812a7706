"""Checks that run before any training, so that missing or unusable data fails in seconds with
one clear message (exit code 2) and nothing is written, instead of hours into a suite."""
from __future__ import annotations

from benchmarks import get_benchmark
from harness.core.data import RAW_DATASETS, DataError, dataset_file
from harness.core.domains import DOMAINS
from harness.core.errors import ConfigError
from harness.orchestration.config import SuiteConfig


def check_domains(suite: SuiteConfig) -> None:
    for name in suite.domains:
        if not DOMAINS[name].build():
            raise DataError(
                f"Domain {name!r} has no training examples after filtering (held-out evaluation items and "
                f"rows without a label are removed). Fix: check its dataset in the data directory "
                f"(`erosion prefetch --force`) or drop the domain from 'domains'."
            )


def check_benchmarks(suite: SuiteConfig) -> None:
    for name in suite.benchmarks:
        for dataset in get_benchmark(name).datasets:
            for relative in RAW_DATASETS[dataset].files:
                dataset_file(dataset, relative)


def check_judge(suite: SuiteConfig, source: str) -> None:
    """A classifier judge's weights must be reachable before hours of training, not after."""
    from benchmarks.judges import missing_judge_weights

    problem = missing_judge_weights(suite.eval.judge, suite.eval.judge_model)
    if problem:
        raise ConfigError(f"{source}: key 'eval.judge' = {suite.eval.judge!r}: {problem}")


def preflight(suite: SuiteConfig, source: str = "the suite") -> None:
    check_domains(suite)
    check_benchmarks(suite)
    check_judge(suite, source)
