"""The command line as a user meets it: --help everywhere, one-paragraph errors with exit code 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_in_process import run_cli

from harness.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def erosion_process(*args: str) -> subprocess.CompletedProcess:
    """A real ``python -m harness.cli`` process: the entry point's own exit code and streams."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_module_entry_exits_with_mains_code_and_one_paragraph(tmp_path: Path) -> None:
    assert erosion_process("--help").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndomains: [medical\n")
    result = erosion_process("plan", str(bad))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    result = run_cli(capsys, command, "--help")
    assert result.returncode == 0 and "usage: erosion" in result.stdout


def test_malformed_yaml_is_one_paragraph_without_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndomains: [medical\n")
    result = run_cli(capsys, "run", str(bad), "--results", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr and "line" in result.stderr and "Fix" in result.stderr
    assert not (tmp_path / "r").exists()  # nothing written


def test_unknown_method_lists_known_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: x\ndomains: [medical]\nmethods: [magic_lora]\n")
    result = run_cli(capsys, "run", str(suite))
    assert result.returncode == 2 and "magic_lora" in result.stderr and "standard_lora" in result.stderr


def test_leaderboard_on_missing_results_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "leaderboard", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize("suite", sorted((REPO / "sequences").glob("*.yaml")), ids=lambda p: p.name)
def test_plan_every_shipped_suite(capsys: pytest.CaptureFixture[str], suite: Path) -> None:
    result = run_cli(capsys, "plan", str(suite))
    assert result.returncode == 0, result.stderr
    assert "run(s) =" in result.stdout and "estimate:" in result.stdout and "jobs:" in result.stdout


def test_plan_a_broken_suite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: b\ninclude: micro\norderings: sometimes\n")
    result = run_cli(capsys, "plan", str(broken))
    assert result.returncode == 2 and "'orderings'" in result.stderr and "Traceback" not in result.stderr


def test_build_world_reuses_the_cached_organism_and_prints_its_checks(tiny_world, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "build-world", "--preset", "tiny")
    assert result.returncode == 0
    header, *checks = result.stdout.splitlines()
    assert header == f"micro world (tiny) at {Path(tiny_world.chat).parent}"
    assert len(checks) == len(tiny_world.report["checks"]) and all(c.startswith(("  [met] ", "  [NOT MET] ")) for c in checks)
