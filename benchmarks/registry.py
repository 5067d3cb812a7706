"""Benchmark registry: built-ins register with ``@register``; installed packages through the entry
point group ``erosion_bench.benchmarks``; anything importable by ``"package.module:Class"`` in a
suite's ``benchmarks`` (the lookups shared with methods: ``harness/core/plugins.py``).

A registered benchmark is one instance of its class (benchmarks hold no state between runs)."""
from __future__ import annotations

from benchmarks.base import Benchmark
from harness.core.errors import RegistryError, unknown_name_error
from harness.core.plugins import PluginKind, entry_point_classes, load_class_path

ENTRY_POINT_GROUP = "erosion_bench.benchmarks"
PLUGIN = PluginKind("benchmark", Benchmark, ENTRY_POINT_GROUP, "my_benchmarks.quiz:Quiz",
                    "docs/write-your-own-benchmark.md")
BENCHMARKS: dict[str, Benchmark] = {}  # the built-ins (benchmarks/__init__.py registers them)
_INSTANCES: dict[type[Benchmark], Benchmark] = {}


def register(cls: type[Benchmark]) -> type[Benchmark]:
    if not getattr(cls, "name", ""):
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name`")
    BENCHMARKS[cls.name] = instance(cls)
    return cls


def instance(cls: type[Benchmark]) -> Benchmark:
    """The one instance of a benchmark class, however it was found."""
    if cls not in _INSTANCES:
        _INSTANCES[cls] = cls()
    return _INSTANCES[cls]


def all_benchmarks() -> dict[str, Benchmark]:
    """Every benchmark by name: the installed packages' entry points, then the built-ins."""
    return {**{name: instance(cls) for name, cls in entry_point_classes(PLUGIN).items()}, **BENCHMARKS}


def get_benchmark(name: str, where: str = "") -> Benchmark:
    """A registered name, an entry point's name, or a ``package.module:Class`` path."""
    if ":" in name:
        return instance(load_class_path(PLUGIN, name, where))
    known = all_benchmarks()
    if name not in known:
        raise unknown_name_error("benchmark", name, list(known), where, PLUGIN.guide)
    return known[name]


def find_benchmark(name: str) -> Benchmark | None:
    """What :func:`get_benchmark` finds, or None where nothing here answers to ``name`` (saved
    results of a package that is not installed)."""
    try:
        return get_benchmark(name)
    except RegistryError:
        return None


def expand(names: list[str]) -> list[str]:
    """``all`` means every benchmark found by name (built-in or installed)."""
    return list(all_benchmarks()) if names == ["all"] else names
