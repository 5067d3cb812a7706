"""The result store: a plain folder of JSON files, written atomically, readable without torch.

Layout (schema 1)::

    RESULTS/
      erosion-results.json          marker: {"schema": 1, "created": ...}
      models/<model>.json           the starting model's report (e.g. the micro world's organism checks)
      runs/<run_id>/run.json        RunInfo: identity, config hash, versions, status, error, wall time
      runs/<run_id>/step-<k>.json   StepResult: the records of evaluation point k (0 = before training)
      runs/<run_id>/items/step-<k>/<benchmark>.jsonl   per-item outputs (for `erosion rescore`)
      runs/<run_id>/bootstrap/step-<k>.json   bootstrap draws of every score of step k (intervals, paired tests)
      runs/<run_id>/state/          resumable training state (adapters, method state)
      runs/<run_id>/.lock           held while a process works on the run
      starting/<key>.json           one benchmark's evaluation of an untouched starting model, which
                                    every run of that model with the same evaluation settings reuses

A record is one number: (model, method, ordering, seed, step, benchmark, metric) -> value, with the
config hash, library versions and wall time beside it. ``leaderboard/`` reads only this module.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
MARKER = "erosion-results.json"
RUN_STATUSES = ("running", "done", "failed")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the whole new one, never a prefix."""
    from harness.core.faults import reached

    path.parent.mkdir(parents=True, exist_ok=True)
    reached("before_write")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        reached("before_rename")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def atomic_write_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a fresh sibling folder, then put it in place of ``path`` in one rename, so
    readers see no folder or a whole one (a previous version of it is replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        write(staging)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_json(path: Path) -> Any | None:
    """Return the parsed file, or None (with a warning) when it is truncated or corrupt."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as err:
        warnings.warn(f"{path}: unreadable result file ({err}); it will be treated as missing and redone.", stacklevel=2)
        return None
    except OSError as err:
        raise StoreError(f"{path}: cannot be read ({err.strerror}). Fix: give this user read access "
                         f"(chmod -R u+r on the results folder) or copy the folder somewhere readable.") from None


@dataclass
class Record:
    """One measured number. ``step`` 0 is the starting model; step k follows the k-th domain."""

    model: str
    scale: str
    method: str
    ordering: str
    seed: int
    step: int
    domain: str | None
    benchmark: str
    metric: str
    value: float
    n: int | None = None
    config_hash: str = ""
    wall_time_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    ci_low: float | None = None  # 95% bootstrap interval over items (see draw_interval); None: not computed
    ci_high: float | None = None


def draw_interval(draws: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The percentile interval of bootstrap draws: the (1-level)/2 and (1+level)/2 quantiles of the
    finite draws, linearly interpolated (numpy's default); None without a finite draw.

    Part of the results schema: a record's ``ci_low``/``ci_high`` are this interval of its draws."""
    finite = sorted(d for d in draws if d is not None and d == d and abs(d) != float("inf"))
    if not finite:
        return None

    def quantile(q: float) -> float:
        position = q * (len(finite) - 1)
        low = int(position)
        high = min(low + 1, len(finite) - 1)
        return finite[low] + (finite[high] - finite[low]) * (position - low)

    return quantile((1 - level) / 2), quantile((1 + level) / 2)


@dataclass
class RunInfo:
    """Identity and status of one (model, method, ordering, seed) run."""

    run_id: str
    model: str
    scale: str
    method: str
    ordering: list[str]
    seed: int
    config_hash: str
    status: str = "running"
    error: str | None = None
    started_at: float = 0.0
    finished_at: float | None = None
    wall_time_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


# What each run.json field must hold; a field a newer writer adds is ignored (same schema).
RUN_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "model": (str,), "scale": (str,), "method": (str,), "ordering": (list,), "seed": (int,),
    "config_hash": (str,), "status": (str,), "error": (str, type(None)), "started_at": (int, float),
    "finished_at": (int, float, type(None)), "wall_time_s": (int, float), "versions": (dict,), "config": (dict,),
}
REQUIRED_RUN_FIELDS = ("run_id", "model", "scale", "method", "ordering", "seed", "config_hash")


def damaged(path: Path, problem: str) -> StoreError:
    """The one message for a result file that parses but does not hold what erosion-bench writes."""
    return StoreError(
        f"{path}: {problem}; this file was not written by this version of erosion-bench or was damaged. "
        f"Fix: copy it again from the machine that wrote it, or delete its run folder ({path.parent}) "
        f"so that `erosion run` redoes that run."
    )


def run_info_from_json(payload: Any, path: Path) -> RunInfo:
    """A run.json's RunInfo, checked field by field (a wrong type is an error naming the key)."""
    if not isinstance(payload, dict):
        raise damaged(path, f"holds a {type(payload).__name__}, not the mapping of a run")
    missing = [key for key in REQUIRED_RUN_FIELDS if key not in payload]
    if missing:
        raise damaged(path, f"key {missing[0]!r} is missing")
    for key, types in RUN_FIELD_TYPES.items():
        value = payload.get(key)
        if key not in payload:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise damaged(path, f"key {key!r} = {repr(value)[:60]} should be {' or '.join(t.__name__ for t in types)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise damaged(path, f"key {key!r} = {value} is not a finite number")
    if payload.get("status", "running") not in RUN_STATUSES:
        raise damaged(path, f"key 'status' = {payload['status']!r} is not one of {', '.join(RUN_STATUSES)}")
    if not payload["ordering"] or not all(isinstance(d, str) for d in payload["ordering"]):
        raise damaged(path, "key 'ordering' should be a non-empty list of domain names")
    if not all(isinstance(v, str) for v in payload.get("versions", {}).values()):
        raise damaged(path, "key 'versions' should map library names to version strings")
    return RunInfo(**{key: value for key, value in payload.items() if key in RUN_FIELD_TYPES})


RECORD_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "benchmark": (str,), "metric": (str,), "value": (int, float, type(None)),
}


def step_problem(payload: Any) -> str | None:
    """What makes a parsed step file unusable (not a mapping, no records list, a malformed record), or None."""
    if not isinstance(payload, dict):
        return f"holds a {type(payload).__name__}, not the mapping of a step"
    records = payload.get("records")
    if not isinstance(records, list):
        return "key 'records' is missing or not a list"
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            return f"records[{index}] is a {type(record).__name__}, not a record"
        for key, types in RECORD_FIELD_TYPES.items():
            value = record.get(key)
            if key not in record:
                return f"records[{index}] has no key {key!r}"
            if isinstance(value, bool) or not isinstance(value, types):
                return f"records[{index}].{key} = {repr(value)[:60]} should be {' or '.join(t.__name__ for t in types)}"
    return None


def ordering_label(domains: list[str]) -> str:
    return ">".join(domains)


def make_run_id(model: str, method: str, domains: list[str], seed: int, config_hash: str) -> str:
    """Readable and unique: a changed config never overwrites another config's results."""
    return f"{model}__{method}__{'-'.join(domains)}__s{seed}__{config_hash[:8]}"


def unwritable_reason(path: Path) -> str | None:
    """Why no folder ``path`` could be made or written (its nearest existing ancestor is a file or
    read-only), or None. Tested with an unnamed temporary file, so nothing appears anywhere."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{existing} cannot be written ({err.strerror or err})"
    return None


def cannot_write(folder: Path, reason: str) -> StoreError:
    return StoreError(
        f"Results directory {folder}: {reason}. Fix: pass a writable folder with --results (or make this one "
        f"writable: chmod u+w); a results folder copied from another machine can be read with "
        f"`erosion leaderboard FOLDER --out WRITABLE_FOLDER`."
    )


def check_results_location(root: Path) -> None:
    """Refuse, before anything is created, a results folder that cannot be made or written."""
    reason = unwritable_reason(root)
    if reason:
        raise cannot_write(root, reason)


def check_schema(marker: Path) -> None:
    """A results folder of another schema is refused rather than misread."""
    payload = read_json(marker)
    schema = payload.get("schema") if isinstance(payload, dict) else None
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise StoreError(f"{marker}: key 'schema' is missing or not an integer ({repr(payload)[:60]}). Fix: if "
                         f"erosion-bench wrote this folder, restore the marker as {{\"schema\": {SCHEMA_VERSION}}}; "
                         f"otherwise use another folder.")
    if schema != SCHEMA_VERSION:
        newer = schema > SCHEMA_VERSION
        raise StoreError(
            f"{marker}: key 'schema' = {schema}, but this erosion-bench reads schema {SCHEMA_VERSION} only. Fix: "
            + ("upgrade erosion-bench to the version that wrote it." if newer else
               "read it with the older erosion-bench that wrote it, or rerun its suite into a new folder.")
        )


def check_results_folder(root: Path, for_writing: bool) -> None:
    """Everything that makes ``root`` unusable as a results folder, found without writing anything."""
    if not root.exists():
        if not for_writing:
            raise StoreError(
                f"Results directory {root} does not exist. Fix: pass the folder that "
                f"`erosion run` wrote (default: results/), or run a suite first."
            )
        check_results_location(root)
        return
    if not root.is_dir():
        raise StoreError(f"{root} is a file, not a results directory. Fix: pass a folder.")
    marker = root / MARKER
    if marker.exists():
        check_schema(marker)
    else:
        # The marker may appear meanwhile: a run started together with this one made the folder.
        foreign = [p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != MARKER]
        if foreign:
            raise StoreError(
                f"{root} holds files that erosion-bench did not write ({', '.join(sorted(foreign)[:5])}) "
                f"and no {MARKER} marker. Fix: choose an empty or new folder with --results."
            )
        if not for_writing:
            raise StoreError(f"{root} is empty: no results yet. Fix: run a suite into it first.")
    if (root / "runs").exists() and not (root / "runs").is_dir():
        raise StoreError(f"{root / 'runs'} is a file, not the folder of runs. Fix: move it away; "
                         f"erosion-bench keeps one folder per run there.")
    if for_writing:
        check_results_location(root)


class ResultStore:
    """A results folder. Creating one on a folder holding foreign files is refused."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True) -> None:
        self.root = Path(root)
        check_results_folder(self.root, for_writing=create)
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)  # another run may create it between check and mkdir
            except OSError as err:
                raise cannot_write(self.root, err.strerror or str(err)) from None
            if not (self.root / MARKER).exists():
                atomic_write_json(self.root / MARKER, {"schema": SCHEMA_VERSION, "created": time.time()})

    # --- paths -------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def state_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "state"

    def trained_dir(self, run_id: str) -> Path:
        """What a run trained: per-domain PEFT adapters, kept models and their manifest."""
        return self.run_dir(run_id) / "trained"

    def items_path(self, run_id: str, step: int, benchmark: str) -> Path:
        return self.run_dir(run_id) / "items" / f"step-{step}" / f"{benchmark}.jsonl"

    # --- runs ----------------------------------------------------------------------------------
    def write_run(self, info: RunInfo) -> None:
        atomic_write_json(self.run_dir(info.run_id) / "run.json", asdict(info))

    def read_run(self, run_id: str) -> RunInfo | None:
        path = self.run_dir(run_id) / "run.json"
        payload = read_json(path)
        return None if payload is None else run_info_from_json(payload, path)

    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.exists() else []

    @contextlib.contextmanager
    def lock(self, run_id: str, blocking: bool = False) -> Iterator[bool]:
        """Hold the run's lock; yields False (without waiting) when another process holds it.

        flock locks die with their process, so a SIGKILLed run never leaves a stale lock."""
        path = self.run_dir(run_id) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- steps ---------------------------------------------------------------------------------
    def step_path(self, run_id: str, step: int) -> Path:
        return self.run_dir(run_id) / f"step-{step}.json"

    def write_step(self, run_id: str, step: int, records: list[Record], extra: dict[str, Any]) -> None:
        payload = {"step": step, "records": [asdict(r) for r in records], **extra}
        atomic_write_json(self.step_path(run_id, step), payload)

    def read_step(self, run_id: str, step: int) -> dict[str, Any] | None:
        path = self.step_path(run_id, step)
        payload = read_json(path)
        problem = None if payload is None else step_problem(payload)
        if problem:
            warnings.warn(f"{path}: {problem}; the step is treated as missing (the leaderboard shows it so, and "
                          f"`erosion run` redoes it). Fix: copy the file again from the machine that wrote it, "
                          f"or rerun the suite.", stacklevel=2)
            return None
        return payload

    def finished_steps(self, run_id: str, n_steps: int) -> int:
        """Number of leading evaluation points (0..n_steps) already complete."""
        done = 0
        while done <= n_steps and self.read_step(run_id, done) is not None:
            done += 1
        return done

    def write_items(self, run_id: str, step: int, benchmark: str, items: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(item, sort_keys=True) + "\n" for item in items)
        atomic_write_text(self.items_path(run_id, step, benchmark), text)

    def read_items(self, run_id: str, step: int, benchmark: str) -> list[dict[str, Any]]:
        path = self.items_path(run_id, step, benchmark)
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    # --- bootstrap draws ----------------------------------------------------------------------------
    def bootstrap_path(self, run_id: str, step: int) -> Path:
        return self.run_dir(run_id) / "bootstrap" / f"step-{step}.json"

    def write_bootstrap(self, run_id: str, step: int, payload: dict[str, Any]) -> None:
        """Written before the step file, so a step file always has its draws beside it."""
        text = json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n"  # compact: 1000 draws per score
        atomic_write_text(self.bootstrap_path(run_id, step), text)

    def read_bootstrap(self, run_id: str, step: int) -> dict[str, Any] | None:
        """The step's draws, or None for a step scored before intervals existed (or unreadable)."""
        payload = read_json(self.bootstrap_path(run_id, step))
        if payload is not None and not isinstance(payload.get("draws"), dict):
            warnings.warn(f"{self.bootstrap_path(run_id, step)}: no draws mapping; intervals for that step are left out.",
                          stacklevel=2)
            return None
        return payload

    # --- starting-model evaluations, shared by runs --------------------------------------------
    def starting_path(self, key: str) -> Path:
        return self.root / "starting" / f"{key}.json"

    def read_starting(self, key: str) -> dict[str, Any] | None:
        return read_json(self.starting_path(key))

    def write_starting(self, key: str, payload: dict[str, Any]) -> None:
        atomic_write_json(self.starting_path(key), payload)

    # --- model reports ------------------------------------------------------------------------
    def write_model_report(self, model: str, report: dict[str, Any]) -> None:
        atomic_write_json(self.root / "models" / f"{model}.json", report)

    def model_reports(self) -> dict[str, dict[str, Any]]:
        folder = self.root / "models"
        if not folder.exists():
            return {}
        reports = {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))}
        return {name: rep for name, rep in reports.items() if rep is not None}

    # --- reading everything (the leaderboard's entry point) -----------------------------------
    def runs(self) -> list[RunInfo]:
        infos = (self.read_run(run_id) for run_id in self.run_ids())
        return [info for info in infos if info is not None]

    def records(self) -> list[dict[str, Any]]:
        """Every record of every run, in run then step order."""
        return [rec for run_id in self.run_ids() for payload in self.step_payloads(run_id) for rec in payload["records"]]

    def step_payloads(self, run_id: str) -> list[dict[str, Any]]:
        """The run's step files 0, 1, ... up to the first absent or damaged one."""
        out: list[dict[str, Any]] = []
        while (payload := self.read_step(run_id, len(out))) is not None:
            out.append(payload)
        return out

    def records_frame(self, payloads: dict[str, list[dict[str, Any]]] | None = None) -> pd.DataFrame:
        """Every record as one tidy table: a row per run x step x benchmark x metric with the record's
        fields (model, scale, method, ordering, seed, n, interval ci_low/ci_high, ...), its ``run_id``
        and ``key`` ("benchmark/metric"). ``payloads`` (run_id -> step_payloads) spares a second read."""
        import pandas as pd  # imported here: only the leaderboard asks for tables, training never pays for pandas

        found = payloads if payloads is not None else {run_id: self.step_payloads(run_id) for run_id in self.run_ids()}
        rows = [{"run_id": run_id, **rec} for run_id, steps in found.items() for step in steps for rec in step["records"]]
        frame = pd.DataFrame(rows, columns=["run_id", *(f.name for f in fields(Record))])
        frame["key"] = frame["benchmark"] + "/" + frame["metric"]
        return frame

    def items_frame(self) -> pd.DataFrame:
        """Every stored per-item output (generations, verdicts, ...) as one table: a row per run x step x
        benchmark x item, with ``run_id``, ``step`` and ``benchmark`` beside the item's own fields."""
        import pandas as pd

        found = [(run_id, int(path.parent.name.removeprefix("step-")), path.stem)
                 for run_id in self.run_ids() for path in sorted(self.run_dir(run_id).glob("items/step-*/*.jsonl"))]
        rows = [{"run_id": run_id, "step": step, "benchmark": name, **item}
                for run_id, step, name in found for item in self.read_items(run_id, step, name)]
        return pd.DataFrame(rows, columns=None if rows else ["run_id", "step", "benchmark"])

    def step_extras(self, run_id: str) -> list[dict[str, Any]]:
        """The non-record parts of each step file (training stats, events such as CSM triggers)."""
        out = []
        step = 0
        while (payload := self.read_step(run_id, step)) is not None:
            out.append({k: v for k, v in payload.items() if k != "records"})
            step += 1
        return out
