"""What a benchmark's result depends on besides the model: its code and its data files, as hashes.

The shared starting-model evaluation (``harness.orchestration.runner``) is keyed on them, so a change of a
scorer, a prompt format, a judge's rules or the degenerate detector, or of a data file, makes the
next run evaluate the starting model again instead of reusing stale items.

Code = the source of the benchmark's module and of every project module (``benchmarks.*``,
``harness.*``) reachable from it through module-level names (what it imports), so that
``harness.core.domains``' prompt builders and ``benchmarks.judges``' rules count as the benchmark's
code, with the scripts such a module runs by path (``RUNS_BY_PATH``: the sandbox's tester and
supervisor). Data = every file of the datasets the benchmark declares (``Benchmark.datasets``), by
relative path and content.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

PROJECT_PACKAGES = ("benchmarks", "harness")


def _project_module(value: object) -> ModuleType | None:
    name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
    if not isinstance(name, str) or name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    return sys.modules.get(name)


def code_modules(root: ModuleType) -> list[ModuleType]:
    """``root`` and the project modules its module-level names lead to, transitively, by name."""
    seen: dict[str, ModuleType] = {}
    todo = [root]
    while todo:
        module = todo.pop()
        if module.__name__ in seen:
            continue
        seen[module.__name__] = module
        todo += [m for value in vars(module).values() if (m := _project_module(value)) is not None]
    return [seen[name] for name in sorted(seen)]


@cache
def code_hash(module_name: str) -> str:
    digest = hashlib.sha256()
    for module in code_modules(sys.modules[module_name]):
        digest.update(module.__name__.encode() + b"\0" + inspect.getsource(module).encode() + b"\0")
        for script in getattr(module, "RUNS_BY_PATH", ()):  # programs it runs, never imports (the sandbox's)
            digest.update(script.name.encode() + b"\0" + script.read_bytes() + b"\0")
    return digest.hexdigest()


def _files_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def _cached_files_hash(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    return _files_hash(folder)


def data_hash(folder: Path) -> str:
    """Content hash of a dataset folder (re-read only when a file's size or mtime changes)."""
    if not folder.is_dir():
        return "missing"
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file())
    return _cached_files_hash(folder, stamp)


def benchmark_fingerprint(name: str) -> dict[str, str]:
    """Hashes of the code and data a registered benchmark's result depends on."""
    from benchmarks import get_benchmark
    from harness.core.data import data_dir

    benchmark = get_benchmark(name)
    return {"code": code_hash(type(benchmark).__module__),
            **{f"data:{dataset}": data_hash(data_dir() / dataset) for dataset in benchmark.datasets}}
