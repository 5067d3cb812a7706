"""Dependencies point one way (docs/architecture.md): foundation <- benchmarks, methods <- training
loop <- orchestration <- CLI; ``leaderboard/`` reads only the result store. Every import of every
module counts, including those inside functions and under TYPE_CHECKING."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "benchmarks", "methods", "leaderboard")
LEADERBOARD_MAY_IMPORT = ("harness.core.store", "harness.core.errors", "harness.core.faults")


def layer(module: str) -> tuple[int, str]:
    """(height, group): a module may import modules of lower height, or of its own group."""
    if module.startswith("harness.core") or module == "harness":
        return 0, "core"
    if module.startswith(("benchmarks", "methods", "leaderboard")):
        return 1, module.split(".")[0]
    if module == "harness.training":
        return 2, "training"
    if module.startswith("harness.orchestration"):
        return 3, "orchestration"
    if module == "harness.cli":
        return 4, "cli"
    raise AssertionError(f"{module}: not placed in a layer; add it to tests/test_layers.py and docs/architecture.md")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # a submodule by name, else the module itself
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in edges.items():
        height, group = layer(src)
        for dst in targets:
            dst_height, dst_group = layer(dst)
            if group == "leaderboard" and not (dst_group == "leaderboard" or dst in LEADERBOARD_MAY_IMPORT):
                bad.append(f"{src} -> {dst} (leaderboard/ reads only the result store)")
            elif dst_height > height or (dst_height == height and dst_group != group and dst_group != "core"):
                bad.append(f"{src} -> {dst}")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_a_layer_above_it() -> None:
    assert upward_imports(graph()) == []


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    edges = graph()
    edges["harness.core.data"] = edges["harness.core.data"] | {"benchmarks.harmbench"}
    edges["benchmarks.harmbench"] = edges["benchmarks.harmbench"] | {"methods.base"}
    assert upward_imports(edges) == ["benchmarks.harmbench -> methods.base", "harness.core.data -> benchmarks.harmbench"]
    assert any("harness.core.data" in c for c in cycles(edges))


@pytest.mark.parametrize("package", ["leaderboard", "harness.core.store"])
def test_reading_results_needs_no_torch(package: str) -> None:
    code = f"import sys, {package}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
