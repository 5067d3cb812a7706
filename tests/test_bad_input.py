"""The bad-input catalogue of docs/reliability.md, row by row, as a user meets it on the command
line: one clear message naming file/key/value and the fix, exit code 2, nothing written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_in_process import CliResult, run_cli

from harness.core.store import ResultStore

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny-suite.yaml"


def assert_clean_failure(result: CliResult, *needles: str) -> None:
    assert result.returncode == 2, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def suite_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, needles", [
    ("name: x\ndomains: [medical\n", ["line", "malformed YAML"]),
    ("name: x\ndomains: [medical]\nlearning_rate: 3\n", ["'learning_rate'", "unknown key"]),
    ("name: x\ndomains: [medical]\ntraining: {max_steps: -5}\n", ["'training.max_steps'", "-5"]),
    ("name: x\ndomains: [medical]\ntraining: {lora: {target_modules: [qq_proj]}}\n", ["target_modules", "qq_proj"]),
    ("name: x\ndomains: [medical]\nmethods: [safeanchor]\nmethod_configs: {safeanchor: {rho: 1.5}}\n", ["rho", "1.5"]),
    ("name: x\ndomains: [medical]\nmethods: [nope]\n", ["'nope'", "standard_lora"]),
    ("name: x\ndomains: [medical]\nbenchmarks: [harmbench, nope]\n", ["'nope'", "truthfulqa"]),
    ("name: x\ndomains: [medical]\nmodel: llama-9\n", ["'llama-9'", "micro"]),
    ("name: x\ndomains: [astrology]\n", ["'astrology'", "medical"]),
    ("name: x\ndomains: [medical]\neval: {judge: gpt4}\n", ["eval.judge", "'gpt4'", "harmbench-cls"]),
    ("name: x\ndomains: [medical]\neval: {judge: harmbench-cls, judge_model: /nowhere/cls}\n",
     ["harmbench-cls", "/nowhere/cls", "huggingface-cli download"]),
], ids=["malformed", "unknown-key", "negative-steps", "unknown-target", "rho-out-of-range", "unknown-method",
        "unknown-benchmark", "unknown-preset", "unknown-domain", "unknown-judge", "judge-weights-missing"])
def test_config_mistakes(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, needles: list[str]) -> None:
    path = suite_file(tmp_path, text)
    result = run_cli(capsys, "run", str(path), "--results", str(tmp_path / "r"))
    assert_clean_failure(result, str(path), "Fix", *needles)
    assert not (tmp_path / "r").exists()


def copy_data(data_dir: Path, target: Path) -> Path:
    shutil.copytree(data_dir, target, symlinks=True)
    return target


def test_missing_data_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run_cli(capsys, "run", str(TINY), "--results", str(tmp_path / "r"), env={"EROSION_DATA": str(tmp_path / "empty")})
    assert_clean_failure(result, "missing", "erosion prefetch")
    assert not (tmp_path / "r").exists()


def test_missing_data_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    data = copy_data(data_dir, tmp_path / "data")
    (data / "truthfulqa" / "validation.json").unlink()
    result = run_cli(capsys, "run", str(TINY), "--results", str(tmp_path / "r"), env={"EROSION_DATA": str(data)})
    assert_clean_failure(result, "truthfulqa", "validation.json", "erosion prefetch")


def test_corrupted_json_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    data = copy_data(data_dir, tmp_path / "data")
    path = data / "medqa" / "test.jsonl"
    lines = path.read_text().splitlines()
    lines[10] = lines[10][:40]
    path.write_text("\n".join(lines) + "\n")
    result = run_cli(capsys, "run", str(TINY), "--results", str(tmp_path / "r"), env={"EROSION_DATA": str(data)})
    assert_clean_failure(result, str(path), "line 11")


def test_missing_column(capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    data = copy_data(data_dir, tmp_path / "data")
    path = data / "finance" / "sent_train.csv"
    path.write_text(path.read_text().replace("text,label", "tweet,label", 1))
    suite = suite_file(tmp_path, f"name: f\ninclude: {TINY}\ndomains: [finance]\n")
    result = run_cli(capsys, "run", str(suite), "--results", str(tmp_path / "r"), env={"EROSION_DATA": str(data)})
    assert_clean_failure(result, str(path), "text")


def test_empty_domain_after_filtering(capsys: pytest.CaptureFixture[str], tmp_path: Path, data_dir: Path) -> None:
    data = copy_data(data_dir, tmp_path / "data")
    path = data / "gsm8k" / "train.jsonl"
    path.write_text("")
    suite = suite_file(tmp_path, f"name: m\ninclude: {TINY}\ndomains: [math]\n")
    result = run_cli(capsys, "run", str(suite), "--results", str(tmp_path / "r"), env={"EROSION_DATA": str(data)})
    assert_clean_failure(result, "'math'", "no training examples")


def test_results_folder_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_clean_failure(run_cli(capsys, "leaderboard", str(tmp_path / "absent")), "does not exist")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    assert_clean_failure(run_cli(capsys, "run", str(TINY), "--results", str(foreign)), "did not write", "cat.jpg")
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]


@pytest.mark.slow  # a whole two-method suite (~13 s)
def test_user_method_whose_hook_raises(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_world) -> None:
    """The run is marked failed with the method's traceback; the other runs finish."""
    suite = suite_file(tmp_path, f"name: b\ninclude: {TINY}\nmethods: [standard_lora, 'tests.failing_method:Boom']\n")
    result = run_cli(capsys, "run", str(suite), "--results", str(tmp_path / "r"), "--executor", "local", "--no-leaderboard")
    assert result.returncode == 1 and "FAILED" in result.stdout and "boom in before_domain" in result.stdout
    runs = {info.method: info for info in ResultStore(tmp_path / "r", create=False).runs()}
    assert runs["standard_lora"].status == "done"
    assert runs["tests.failing_method:Boom"].status == "failed"
    assert "before_domain" in runs["tests.failing_method:Boom"].error
    assert json.loads((tmp_path / "r" / "erosion-results.json").read_text())["schema"] == 1
