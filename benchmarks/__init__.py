"""Benchmarks: one file each, behind one registry (``benchmarks/registry.py``): built-ins, installed
packages' ``erosion_bench.benchmarks`` entry points and ``module:Class`` paths."""
from __future__ import annotations

from benchmarks.base import Benchmark, BenchmarkResult, Metric
from benchmarks.bbq import BBQ
from benchmarks.domain_nll import DomainNLL
from benchmarks.harmbench import HarmBench
from benchmarks.humaneval import HumanEval
from benchmarks.legalbench import LegalBench
from benchmarks.medqa import MedQA
from benchmarks.mmlu import MMLU
from benchmarks.registry import BENCHMARKS, all_benchmarks, expand, find_benchmark, get_benchmark, register
from benchmarks.truthfulqa import TruthfulQA
from benchmarks.wildguard import WildGuard
from benchmarks.xstest import XSTest

# The built-ins register here, in the order `all` runs them: decorators would register them in
# import order, which the import sorter decides.
for _builtin in (HarmBench, TruthfulQA, BBQ, XSTest, WildGuard, MedQA, LegalBench, HumanEval, MMLU, DomainNLL):
    register(_builtin)

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkResult", "Metric", "all_benchmarks", "expand", "find_benchmark", "get_benchmark",
           "register"]
