"""The result store: atomic writes, corrupt files detected and redone, foreign folders refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.errors import StoreError
from harness.core.store import Record, ResultStore, RunInfo, atomic_write_json


def record(step: int, value: float) -> Record:
    return Record("micro", "micro", "standard_lora", "medical>legal", 0, step, None, "composite", "safety", value)


def test_steps_round_trip_and_count(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r")
    store.write_run(RunInfo("run", "micro", "micro", "standard_lora", ["medical", "legal"], 0, "h"))
    store.write_step("run", 0, [record(0, 50.0)], {"domain": None})
    store.write_step("run", 1, [record(1, 40.0)], {"domain": "medical"})
    assert store.finished_steps("run", 2) == 2
    assert [r["value"] for r in store.records()] == [50.0, 40.0]
    assert store.runs()[0].method == "standard_lora"


def test_truncated_step_file_is_treated_as_missing(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r")
    store.write_step("run", 0, [record(0, 50.0)], {})
    store.write_step("run", 1, [record(1, 40.0)], {})
    path = store.step_path("run", 1)
    path.write_text(path.read_text()[:25])  # what a crash mid-write without rename would leave
    with pytest.warns(UserWarning, match="unreadable"):
        assert store.finished_steps("run", 2) == 1


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_foreign_or_missing_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_text("not ours")
    with pytest.raises(StoreError, match="did not write"):
        ResultStore(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "nope", create=False)


def test_lock_is_exclusive(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r")
    with store.lock("run") as first:
        assert first
        with ResultStore(tmp_path / "r").lock("run") as second:
            assert not second
    with store.lock("run") as again:
        assert again


def test_runs_started_together_share_a_new_results_folder(tmp_path: Path) -> None:
    """`erosion run`s launched at once into one new folder must all open it (one used to fail with
    FileExistsError between the existence check and mkdir, or take another's fresh marker for a
    foreign file). Without the fix this failed about every other time."""
    import threading

    target, errors = tmp_path / "new" / "results", []
    barrier = threading.Barrier(16)

    def open_store() -> None:
        barrier.wait()
        try:
            ResultStore(target)
        except Exception as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=open_store) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (target / "erosion-results.json").exists()
