"""The bad-input catalogue of docs/reliability.md for results folders: foreign, damaged, of another
schema, read-only, or with an output path that is a file. A damaged run.json or marker is exit code 2
with one paragraph naming the file, the key and the fix; a damaged step file is a warning and that
step reads as missing (as `erosion run` would redo it); nothing is a traceback, nothing is written
when the answer is an error."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import leaderboard_fixture as fx
import pytest
from cli_in_process import run_cli

from harness.core.store import MARKER, ResultStore

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny-suite.yaml"
DOMAINS = ("medical", "legal")


def erosion(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    result = run_cli(capsys, *args)
    return result.returncode, result.stdout, result.stderr


def assert_one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix" in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, str]:
    """One finished run (steps 0..2) and a model report, written through ResultStore."""
    root = tmp_path / "results"
    store = ResultStore(root)
    fx.write_model_report(store)
    return root, fx.add_run(store, "standard_lora", DOMAINS, 0)


def run_json(root: Path, run_id: str) -> Path:
    return root / "runs" / run_id / "run.json"


def edit_json(path: Path, change) -> None:
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(change(payload)))


RUN_JSON_DAMAGE = {
    "run-json-a-string": (lambda p: "done", ["holds a str, not the mapping of a run"]),
    "run-json-missing-key": (lambda p: {k: v for k, v in p.items() if k != "seed"}, ["key 'seed' is missing"]),
    "run-json-wrong-type": (lambda p: {**p, "seed": "0"}, ["key 'seed' = '0' should be int"]),
    "run-json-unknown-status": (lambda p: {**p, "status": "queued"},
                                ["key 'status' = 'queued' is not one of running, done, failed"]),
    "run-json-infinite-time": (lambda p: {**p, "wall_time_s": float("inf")}, ["key 'wall_time_s' = inf is not a finite number"]),
    "run-json-empty-ordering": (lambda p: {**p, "ordering": []}, ["key 'ordering' should be a non-empty list"]),
    "run-json-version-not-text": (lambda p: {**p, "versions": {"torch": 2.13}}, ["key 'versions' should map library names"]),
}


@pytest.mark.parametrize("name", list(RUN_JSON_DAMAGE))
def test_damaged_run_json(name: str, results: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, run_id = results
    change, needles = RUN_JSON_DAMAGE[name]
    edit_json(run_json(root, run_id), change)
    before = snapshot(root)
    code, _, err = erosion(capsys, "leaderboard", str(root))
    assert_one_paragraph(code, err, str(run_json(root, run_id)), "delete its run folder", *needles)
    code, _, err = erosion(capsys, "run", str(TINY), "--results", str(root))
    assert_one_paragraph(code, err, str(run_json(root, run_id)), "delete its run folder", *needles)
    assert snapshot(root) == before


def test_run_json_with_a_newer_versions_extra_field_is_read(results: tuple[Path, str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, run_id = results
    edit_json(run_json(root, run_id), lambda p: {**p, "gpu_hours": 1.5, "queue": {"name": "a"}})
    code, out, err = erosion(capsys, "leaderboard", str(root), "--out", str(root.parent / "lb"))
    assert code == 0, err
    board = json.loads((root.parent / "lb" / "leaderboard.json").read_text())
    assert [r["run_id"] for r in board["runs"]] == [run_id]


STEP_DAMAGE = {
    "step-file-a-list": (lambda p: [p], "holds a list, not the mapping of a step"),
    "step-records-not-a-list": (lambda p: {**p, "records": {"a": 1}}, "key 'records' is missing or not a list"),
    "record-without-benchmark": (lambda p: {**p, "records": [{k: v for k, v in r.items() if k != "benchmark"}
                                                             for r in p["records"]]},
                                 "records[0] has no key 'benchmark'"),
    "record-value-a-string": (lambda p: {**p, "records": [{**r, "value": "high"} for r in p["records"]]},
                              "records[0].value = 'high' should be int or float or NoneType"),
}


@pytest.mark.parametrize("name", list(STEP_DAMAGE))
def test_damaged_step_file_reads_as_missing(name: str, results: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """The last step of the run is damaged: the warning names file and key, the leaderboard shows
    steps 0 and 1 and no final, exactly as for a step that was never written."""
    root, run_id = results
    change, needle = STEP_DAMAGE[name]
    step_file = root / "runs" / run_id / "step-2.json"
    edit_json(step_file, change)
    code, _, err = erosion(capsys, "leaderboard", str(root), "--out", str(root.parent / "lb"))
    assert code == 0 and "Traceback" not in err, err
    assert f"warning: {step_file}: {needle}; the step is treated as missing" in err
    run = json.loads((root.parent / "lb" / "leaderboard.json").read_text())["runs"][0]
    assert run["steps_done"] == 2 and run["final"] is None


def test_spectrum_events_and_reports_of_the_wrong_shape_are_left_out(results: tuple[Path, str],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root, run_id = results
    edit_json(root / "runs" / run_id / "step-1.json", lambda p: {
        **p, "events": 7, "wall_time_s": "slow",
        "fisher_spectrum": {"layers": {"q": "flat", "v": {"k90_safety": "many", "eigenvalues_safety": ["a", 2.0]}}}})
    (root / "models" / "other.json").write_text("[1, 2]")
    edit_json(root / "models" / f"{fx.MODEL}.json", lambda p: {**p, "checks": [*p["checks"], "bad"], "nan": float("nan")})
    code, _, err = erosion(capsys, "leaderboard", str(root), "--out", str(root.parent / "lb"))
    assert code == 0, err
    assert "other.json: holds a list, not a model report; left out" in err
    board = json.loads((root.parent / "lb" / "leaderboard.json").read_text())  # strict JSON: no NaN
    assert set(board["models"]) == {fx.MODEL} and board["models"][fx.MODEL]["nan"] is None
    assert len(board["models"][fx.MODEL]["checks"]) == 2


@pytest.mark.parametrize("marker, needles", [
    ({"schema": 99, "created": 1.0}, ["key 'schema' = 99", "reads schema 1 only", "upgrade erosion-bench"]),
    ({"schema": 0}, ["key 'schema' = 0", "older erosion-bench"]),
    ({"schema": "1"}, ["key 'schema' is missing or not an integer"]),
    (["schema", 1], ["key 'schema' is missing or not an integer"]),
], ids=["schema-newer", "schema-older", "schema-not-an-integer", "marker-not-a-mapping"])
def test_marker_of_another_schema(marker: object, needles: list[str], results: tuple[Path, str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = results
    (root / MARKER).write_text(json.dumps(marker))
    before = snapshot(root)
    code, _, err = erosion(capsys, "leaderboard", str(root))
    assert_one_paragraph(code, err, str(root / MARKER), *needles)
    code, _, err = erosion(capsys, "run", str(TINY), "--results", str(root))
    assert_one_paragraph(code, err, str(root / MARKER), *needles)
    assert snapshot(root) == before


def test_runs_folder_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "results"
    ResultStore(root)
    (root / "runs").write_text("x")
    assert_one_paragraph(*erosion(capsys, "leaderboard", str(root))[::2], f"{root / 'runs'} is a file")


def test_out_that_is_a_file(results: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = results
    afile = root.parent / "afile"
    afile.write_text("x")
    before = snapshot(root)
    for out in (afile, afile / "sub"):
        code, _, err = erosion(capsys, "leaderboard", str(root), "--out", str(out))
        assert_one_paragraph(code, err, f"Leaderboard output folder {out}", f"{afile} is a file", "another folder with --out")
    assert snapshot(root) == before and afile.read_text() == "x"


def test_runs_from_another_build_of_the_model_are_neither_resumed_nor_joined(tiny_world, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A run's identity names the model, not its build: a folder of runs on another micro world (or small
    organism) must not count as done for this one, nor be ranked beside it."""
    root = tmp_path / "results"
    store = ResultStore(root)
    store.write_model_report("tiny", {"model": "tiny", "scale": "micro", "key": "v0-another-build", "checks": []})
    before = snapshot(root)
    code, _, err = erosion(capsys, "run", str(TINY), "--results", str(root))
    assert_one_paragraph(code, err, f"{root}: its runs of model 'tiny' start from the build v0-another-build",
                         "pass another --results folder")
    assert snapshot(root) == before


def test_results_path_through_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, _, err = erosion(capsys, "run", str(TINY), "--results", str(afile / "sub"))
    assert_one_paragraph(code, err, f"Results directory {afile / 'sub'}", f"{afile} is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_method_name_with_mathtext_renders(results: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = results
    edit_json(run_json(root, fx.add_run(ResultStore(root), "ewc", DOMAINS, 0)), lambda p: {**p, "method": "$\\frac{$"})
    code, _, err = erosion(capsys, "leaderboard", str(root), "--out", str(root.parent / "lb"))
    assert code == 0, err
    assert "$\\frac{$" in (root.parent / "lb" / "leaderboard.md").read_text()
    assert list((root.parent / "lb" / "plots").glob("*.png"))


# ---- read-only folders: need a process without the power to write there ---------------------------
def unprivileged(command: list[str]) -> list[str]:
    """``command`` run so that file modes bind it: as is for a normal user; for root, without the
    capabilities that override file modes (setpriv), or the test is skipped saying why."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv is missing: a read-only folder cannot be made read-only for root")
    probe = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", *command]


def erosion_unprivileged(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(unprivileged([sys.executable, "-m", "harness.cli", *args]), cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", "/tmp")})


@pytest.fixture
def read_only_results(results: tuple[Path, str]):
    root, run_id = results
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    yield root, run_id
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
def test_read_only_results_folder_is_refused(read_only_results: tuple[Path, str]) -> None:
    """`erosion run` into it is refused before anything; `erosion leaderboard` without --out is told to pass --out."""
    root, _ = read_only_results
    before = snapshot(root)
    ran = erosion_unprivileged("run", str(TINY), "--results", str(root))
    assert_one_paragraph(ran.returncode, ran.stderr, f"Results directory {root}", "cannot be written (Permission denied)",
                         "--out WRITABLE_FOLDER")
    board = erosion_unprivileged("leaderboard", str(root))
    assert_one_paragraph(board.returncode, board.stderr, f"Leaderboard output folder {root / 'leaderboard'}",
                         "cannot be written", "pass a writable folder with --out")
    assert snapshot(root) == before


@pytest.mark.slow
def test_read_only_results_folder_renders_with_out(read_only_results: tuple[Path, str], tmp_path: Path) -> None:
    root, run_id = read_only_results
    rendered = erosion_unprivileged("leaderboard", str(root), "--out", str(tmp_path / "lb"))
    assert rendered.returncode == 0, rendered.stderr
    assert run_id in (tmp_path / "lb" / "leaderboard.json").read_text()
