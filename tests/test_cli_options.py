"""`erosion --version`, and `--benchmarks` taking lm-eval's comma lists (`harmbench,xstest`) as well
as space-separated names."""
from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from harness.cli import benchmark_names, main


def test_version_prints_the_installed_distributions_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"erosion {version('erosion-bench')}"


@pytest.mark.parametrize(("values", "names"), [
    (["harmbench,truthfulqa,bbq,xstest"], ["harmbench", "truthfulqa", "bbq", "xstest"]),  # lm-eval's --tasks form
    (["harmbench", "xstest"], ["harmbench", "xstest"]),  # argparse's nargs="+" form
    (["harmbench, bbq", "xstest,"], ["harmbench", "bbq", "xstest"]),  # spaces after commas, a trailing comma
    (["bbq,bbq", "bbq"], ["bbq"]),  # a repeat is evaluated once
    (["all"], ["all"]),
])
def test_benchmark_lists_split_on_commas(values: list[str], names: list[str]) -> None:
    assert benchmark_names(values) == names


def test_an_empty_benchmark_list_is_refused_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--benchmarks", ",", "--out", "unused"]) == 2
    assert "--benchmarks ',': no benchmark named. Fix: e.g. --benchmarks harmbench,xstest" in capsys.readouterr().err


def test_an_unknown_name_in_a_comma_list_is_named_alone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["evaluate", "--benchmarks", "harmbench,nosuch", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "'nosuch'" in err and "harmbench,nosuch" not in err
    assert not (tmp_path / "e").exists()  # refused before any model work


def test_evaluate_scores_every_benchmark_of_a_comma_list(tiny_world, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", "tiny-chat", "--benchmarks", "harmbench,bbq", "--cap", "4", "--max-new-tokens", "8",
            "--out", str(out)]
    assert main(argv) == 0
    assert sorted(json.loads((out / "scores.json").read_text())["scores"]) == ["bbq", "harmbench"]
