"""Benchmark registry: one registered object per benchmark (see benchmarks/base.py)."""
from __future__ import annotations

from benchmarks.base import Benchmark, BenchmarkResult, Metric
from benchmarks.bbq import BBQ
from benchmarks.domain_nll import DomainNLL
from benchmarks.harmbench import HarmBench
from benchmarks.humaneval import HumanEval
from benchmarks.legalbench import LegalBench
from benchmarks.medqa import MedQA
from benchmarks.mmlu import MMLU
from benchmarks.truthfulqa import TruthfulQA
from benchmarks.wildguard import WildGuard
from benchmarks.xstest import XSTest
from harness.core.errors import unknown_name_error

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (HarmBench(), TruthfulQA(), BBQ(), XSTest(), WildGuard(), MedQA(), LegalBench(), HumanEval(), MMLU(), DomainNLL())
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise unknown_name_error("benchmark", name, list(BENCHMARKS))
    return BENCHMARKS[name]


def expand(names: list[str]) -> list[str]:
    """``all`` means every registered benchmark."""
    return list(BENCHMARKS) if names == ["all"] else names


__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkResult", "Metric", "expand", "get_benchmark"]
