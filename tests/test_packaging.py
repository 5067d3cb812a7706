"""Installable anywhere: every third-party import is declared in pyproject.toml and every declared
dependency is imported (extras only lazily, so a core install imports cleanly), and a non-editable
wheel, installed beside this environment's packages, plans and runs suites from any folder."""
from __future__ import annotations

import ast
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE_CODE = ("harness", "benchmarks", "methods", "leaderboard", "bench")
# Ours: the packages, the tests' helper modules, and the out-of-tree example packages the tests install.
FIRST_PARTY = ({*PACKAGE_CODE, "tests"} | {p.stem for p in (REPO / "tests").glob("*.py")}
               | {p.parent.name for p in (REPO / "examples").glob("*/*/__init__.py")})
# Declared but never imported by our code: a library that our code reaches only through another one.
USED_INDIRECTLY = {"gguf": "transformers reads the small preset's GGUF file through it (harness/orchestration/small_model.py)",
                   "pytest-xdist": "pytest loads it as a plugin: the Makefile's test targets run two workers (-n 2)"}
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    """Distribution names of PEP 508 strings, leaving out this project's own extras (``erosion-bench[...]``)."""
    names = {canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group()) for req in requirements}
    return names - {canonical(PROJECT["name"])}


CORE = requirement_names(PROJECT["dependencies"])
EXTRAS = {extra: requirement_names(reqs) for extra, reqs in PROJECT["optional-dependencies"].items()}


def third_party_imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(top-level module, imported at module level) for every import of ``path`` outside stdlib and our code
    (a script run by path, such as the sandbox's, imports the modules beside it by their bare names)."""
    tree = ast.parse(path.read_text(), str(path))
    beside = {p.stem for p in path.parent.glob("*.py")}
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for top in {m.split(".")[0] for m in modules} - FIRST_PARTY - beside - set(sys.stdlib_module_names) - {"__future__"}:
            yield top, id(node) not in lazy


def imported_distributions(folders: tuple[str, ...]) -> dict[str, list[tuple[str, bool]]]:
    """Distribution -> [(file, imported at module level)] over every .py file of ``folders``."""
    owners = packages_distributions()
    found: dict[str, list[tuple[str, bool]]] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for module, eager in third_party_imports(path):
                assert module in owners, f"{path}: imports {module!r}, which no installed distribution provides"
                for dist in owners[module]:
                    found.setdefault(canonical(dist), []).append((str(path.relative_to(REPO)), eager))
    return found


def test_package_code_imports_only_declared_dependencies_and_extras_only_lazily() -> None:
    optional = EXTRAS["small"] | EXTRAS["lm-eval"]
    for dist, places in imported_distributions(PACKAGE_CODE).items():
        assert dist in CORE | optional, f"{places[0][0]} imports {dist}, which pyproject.toml does not declare"
        eager = [file for file, at_module_level in places if at_module_level]
        assert dist in CORE or not eager, f"{eager[0]} imports {dist} (an extra) at module level: import it where it is used"


def test_tests_import_only_declared_dependencies() -> None:
    declared = CORE.union(*EXTRAS.values())
    for dist, places in imported_distributions(("tests",)).items():
        assert dist in declared, f"{places[0][0]} imports {dist}, which pyproject.toml does not declare (the [test] extra)"


def test_every_declared_dependency_is_imported() -> None:
    used = set(imported_distributions(PACKAGE_CODE)) | set(imported_distributions(("tests",)))
    for dist in sorted(CORE.union(*EXTRAS.values())):
        assert dist in used or dist in USED_INDIRECTLY, f"pyproject.toml declares {dist}, which nothing imports: remove it"


def test_constraints_pin_every_declared_dependency_at_the_installed_version() -> None:
    """constraints.txt is the tested environment: what the Makefile installs is what this suite ran on."""
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line)
    pins = {canonical(name): pinned for name, pinned in pins.items()}
    for dist in sorted(CORE.union(*EXTRAS.values())):
        assert dist in pins, f"constraints.txt pins no version of {dist}: run `make lock` in a fresh venv"
        assert pins[dist] == version(dist).split("+")[0], f"constraints.txt pins {dist}=={pins[dist]}, installed {version(dist)}"


# ---- the wheel ----------------------------------------------------------------------------------
PACKAGES = ("harness", "methods", "benchmarks", "leaderboard")
SOURCES = ("pyproject.toml", "README.md", *PACKAGES, "sequences")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.egg-info")  # caches and git's files


def repository_files() -> set[str]:
    """The files git tracks or would track: not what tests and runs write into ignored folders
    (e.g. the lm-eval bridge's exported task data under benchmarks/tasks/data/)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    return set(listed.splitlines())


def shipped_files(source: Path) -> set[str]:
    """Every file of the packages (package data included, through harness/suites' link), as the wheel names it."""
    files = {str(p.relative_to(source)) for package in PACKAGES for p in (source / package).rglob("*") if p.is_file()}
    files &= repository_files()
    suites = (source / "harness" / "suites").resolve()
    return files | {f"harness/suites/{p.relative_to(suites)}" for p in suites.rglob("*.yaml")}


def build_wheel(tmp: Path) -> Path:
    """A wheel built from a copy of the sources (the checkout itself is left untouched)."""
    source = tmp / "src"
    source.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, symlinks=True, ignore=SKIPPED)
        else:
            shutil.copy2(origin, source / name)
    pip(sys.executable, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(source))
    wheel = next((tmp / "dist").glob("erosion_bench-*.whl"))
    missing = shipped_files(source) - set(zipfile.ZipFile(wheel).namelist())
    assert sorted(missing) == [], "add them to [tool.setuptools.package-data] in pyproject.toml"
    return wheel


def venv_beside_this_one(root: Path) -> Path:
    """A fresh venv whose own site-packages come first and this environment's after them (one .pth
    line per folder: their .pth files, this checkout's editable install among them, are not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    Path(own, "outer.pth").write_text("".join(f"{folder}\n" for folder in site.getsitepackages()))
    return python


def pip(python: str | Path, *args: str) -> str:
    result = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def erosion(python: Path, *args: str, cwd: Path) -> str:
    result = subprocess.run([str(python.with_name("erosion")), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_plans_and_runs_suites_from_any_folder(tmp_path: Path, tiny_world) -> None:
    """``tiny_world``: the data directory and the tiny world's cache, which the installed copy reuses."""
    pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools in this environment")
    wheel = build_wheel(tmp_path)
    python = venv_beside_this_one(tmp_path / "venv")
    # The declared ranges admit this environment: pip would install nothing but the wheel (no other torch).
    assert "Would install erosion-bench-" in pip(python, "install", "--dry-run", "--no-index", f"{wheel}[test]")
    pip(python, "install", "--no-deps", "--no-index", str(wheel))
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([python, "-c", "import harness; print(harness.__file__)"], cwd=work, capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout + where.stderr
    assert erosion(python, "plan", "micro", cwd=work).startswith("suite micro-paper-order: model micro")
    assert erosion(python, "plan", "sequences/paper.yaml", cwd=work).startswith("suite paper-llama2: model")
    shutil.copy(REPO / "tests" / "tiny-suite.yaml", work / "tiny.yaml")  # its include: scale-micro is package data
    printed = erosion(python, "run", "tiny.yaml", "--executor", "local", "--results", "results", cwd=work)
    assert "suite tiny-test: 1 run(s) done, 0 failed" in printed
    assert (work / "results" / "leaderboard" / "leaderboard.md").is_file()
