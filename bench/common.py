"""What every benchmark module shares: the options, the world it measures on, clocks that take
medians (side by side where a ratio is reported), peak memory, machine facts and target lines."""
from __future__ import annotations

import ctypes
import gc
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    from harness.core.models import ModelHandle

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """How big to measure: ``quick`` shrinks every size to seconds (the smoke test); ``threads`` is
    torch's intra-op thread count (1 matches a run's default ``threads_per_run``); ``results`` is the
    results folder whose default-suite runs give the suite's wall time (target 4d), relative to the
    repository unless absolute."""

    quick: bool = False
    threads: int = 1
    results: str = "results"

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full


# ---- the world ----------------------------------------------------------------------------------
def micro_cached() -> bool:
    from harness.orchestration.micro_world import WORLD_PRESETS, world_paths

    return world_paths(WORLD_PRESETS["micro"]).complete()


@lru_cache(maxsize=2)
def bench_world(quick: bool) -> ModelHandle:
    """The micro world when its cache is complete, else tiny (built in seconds when missing); tiny
    with --quick. The micro world is never built here: that takes many minutes (`make world`)."""
    from harness.orchestration.presets import PRESETS

    return PRESETS["micro" if not quick and micro_cached() else "tiny"].prepare()


def micro_training_settings(preset: str, overrides: dict[str, Any] | None = None):
    """The default suite's training settings (sequences/micro.yaml), on ``preset``."""
    from harness.orchestration.config import deep_merge, load_suite

    return load_suite(REPO / "sequences" / "micro.yaml", deep_merge({"model": preset}, overrides or {})).training


# ---- clocks -------------------------------------------------------------------------------------
def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds taken by ``fn()`` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def clock(fn: Callable[[], Any]) -> float:
    return timed(fn)[0]


def rotating(fns: dict[str, Callable[[], T]], rounds: int) -> dict[str, list[T]]:
    """Each fn's result per round. Every round runs each fn once, starting one later each round, so
    background load that drifts on shared cores hits all of them alike."""
    names = list(fns)
    results: dict[str, list[T]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(fns[name]())
    return results


def side_by_side(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each fn per round, measured in rotating order (see :func:`rotating`)."""
    return rotating({name: partial(clock, fn) for name, fn in fns.items()}, rounds)


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over rounds of the within-round ratio (robust to load that changes between rounds)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators, strict=True))


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


# ---- memory -------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _reset_peak() -> bool:
    """Linux resets the peak-RSS mark (VmHWM) when 5 is written to /proc/self/clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def pin_mmap_threshold(size: int = 1 << 20) -> bool:
    """Serve every allocation above ``size`` from fresh mmap pages, returned to the OS on free.
    By default glibc raises this threshold (up to 32 MiB) after the first large free and then serves
    later allocations from heap pages that are already resident, which a peak-RSS measurement cannot
    see. The setting lasts for the whole process, so the item that needs it runs last."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False


@contextmanager
def peak_memory() -> Iterator[dict[str, Any]]:
    """Peak resident memory of this process inside the block, above the level at entry (MiB).
    Without a resettable peak (not Linux) it falls back to ru_maxrss, the lifetime peak."""
    gc.collect()
    out: dict[str, Any] = {}
    resettable = _reset_peak()
    start_kib = _status_kib("VmRSS") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield out
    peak_kib = _status_kib("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.update(extra_mib=(peak_kib - start_kib) / 1024, peak_rss_mib=peak_kib / 1024,
               how="VmHWM reset via /proc/self/clear_refs" if resettable else "ru_maxrss (lifetime peak: an upper bound)")


# ---- machine ------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor()


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info(options: Options) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(), "usable_cpus": usable, "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch_threads": torch.get_num_threads(), "threads_option": options.threads,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "platform": platform.platform(),
        "versions": {name: _version(name) for name in ("erosion-bench", "torch", "transformers", "peft", "lm_eval", "ray")},
    }


# ---- targets ------------------------------------------------------------------------------------
@dataclass
class Target:
    """One line of the issue's targets: the number, the criterion it is judged by and the verdict
    (``met`` None = not measured, with the reason in ``note``)."""

    id: str
    what: str
    value: float | None
    unit: str
    criterion: str
    met: bool | None
    note: str = ""

    @property
    def status(self) -> str:
        if self.met is None:
            return f"not measured: {self.note}"
        if self.criterion.startswith("reported"):
            return "reported"  # a number the issue asks to see, with no threshold to meet
        return "met" if self.met else "not met"

    def line(self) -> str:
        number = "n/a" if self.value is None else f"{self.value:.4g} {self.unit}".strip()
        extra = f" ({self.note})" if self.note and self.met is not None else ""
        return f"{self.id} {self.what}: {number} [{self.criterion}] -> {self.status}{extra}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status, "line": self.line()}


# ---- suites -------------------------------------------------------------------------------------
def tiny_suite(methods: list[str], max_steps: int, examples_per_domain: int = 64, threads_per_run: int = 1):
    """A plumbing-sized suite on the tiny world (like tests/tiny-suite.yaml): two domains, a few
    steps, HarmBench only; one run per method."""
    from harness.orchestration.config import load_suite

    overrides = {
        "name": "bench-tiny", "model": "tiny", "domains": ["medical", "legal"], "methods": methods,
        "benchmarks": ["harmbench"], "eval": {"max_new_tokens": 8, "caps": {"harmbench": 8}},
        "training": {"max_steps": max_steps, "batch_size": 4, "grad_accum": 1, "max_seq_len": 96,
                     "examples_per_domain": examples_per_domain, "lora": {"r": 4, "alpha": 8}},
        "threads_per_run": threads_per_run,
    }
    return load_suite(REPO / "sequences" / "micro.yaml", overrides)
