"""Recompute a results folder's scores from the saved per-item outputs, without the model
(``erosion rescore``), in one of two ways:

* **rescore in place** (no judge): every benchmark whose items were saved
  (``runs/<run>/items/step-<k>/<benchmark>.jsonl``) is scored again with the benchmark's current
  ``score``, its records in ``step-<k>.json`` are replaced and the composites recomputed. Records
  of benchmarks without saved items are kept as they were, and so is everything else in the step
  file (training stats, events, timings).
* **re-judge** (``judge=NAME``): every stored generation is judged again by the degenerate
  detector and judge NAME (``Benchmark.rejudge``), and a new, complete results folder is written
  beside the old one (default ``RESULTS/rejudged/<NAME>/``): the same runs, steps and identities,
  re-judged items, new records and composites, each step file and run.json labelled with the judge.
  The original folder is only read. Generation-judged records without saved items are left out
  of the new set (they carry the old judge's verdicts); the other benchmarks' records are copied.

Nothing is ever lost: a benchmark whose saved items are fewer than its record's ``n`` (a file cut
short) or unreadable keeps its records, with a warning; a step file rewritten in place is first
copied to ``runs/<run>/backup/step-<k>.<time>.json``, and both files are written atomically, so a
crash leaves the old file or the new one. A step whose scores do not change is not rewritten. A run
that another process holds (its lock) is skipped with a warning.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from benchmarks import find_benchmark, get_benchmark
from benchmarks.composite import StepBootstrap, composites, step_bootstrap, stored_bootstrap
from benchmarks.judges import Judge
from harness.core.errors import StoreError
from harness.core.store import Record, ResultStore, atomic_write_json, ordering_label

RECORD_FIELDS = {f.name for f in fields(Record)}
IDENTITY = ("model", "scale", "method", "ordering", "seed", "step", "domain", "config_hash", "wall_time_s", "versions")
REJUDGED = "rejudged"


def same_records(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal, a NaN equal to a NaN (a rate of nothing, e.g. on_topic_rate where nothing complied, is NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _saved_benchmarks(store: ResultStore, run_id: str, step: int) -> list[str]:
    folder = store.run_dir(run_id) / "items" / f"step-{step}"
    if not folder.is_dir():
        return []
    names = []
    for path in sorted(folder.glob("*.jsonl")):
        if find_benchmark(path.stem) is not None:
            names.append(path.stem)
        else:
            warnings.warn(f"{path}: no registered benchmark {path.stem!r}; its records are left as they are.", stacklevel=2)
    return names


def recorded_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    """The largest ``n`` each benchmark's records say were scored."""
    counts: dict[str, int] = {}
    for record in records:
        if record.get("n") is not None:
            counts[record["benchmark"]] = max(counts.get(record["benchmark"], 0), int(record["n"]))
    return counts


def complete_items(store: ResultStore, run_id: str, step: int, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Saved items per benchmark, only where they are readable and at least as many as the records
    counted: a file cut short must never replace a score with one over fewer items."""
    had = recorded_counts(records)
    found: dict[str, list[dict[str, Any]]] = {}
    for name in _saved_benchmarks(store, run_id, step):
        where = f"run {run_id} step {step}: {store.items_path(run_id, step, name)}"
        try:
            items = store.read_items(run_id, step, name)
        except ValueError as err:
            warnings.warn(f"{where} is unreadable ({err}); its records are left as they are.", stacklevel=2)
            continue
        if not items:  # an empty file cannot be scored
            continue
        if len(items) < had.get(name, 0):
            warnings.warn(f"{where} holds {len(items)} items where its records counted {had[name]} (cut short?); "
                          f"its records are left as they are. Fix: rerun that step, or restore the file.", stacklevel=2)
            continue
        found[name] = items
    return found


def _identity_from_run(store: ResultStore, run_id: str, step: int, payload: dict[str, Any]) -> dict[str, Any] | None:
    info = store.read_run(run_id)
    if info is None:
        return None
    return {"model": info.model, "scale": info.scale, "method": info.method, "ordering": ordering_label(info.ordering),
            "seed": info.seed, "step": step, "domain": payload.get("domain"), "config_hash": info.config_hash,
            "wall_time_s": float(payload.get("eval_seconds", 0.0)), "versions": info.versions}


def step_records(identity: dict[str, Any], old: list[dict[str, Any]], scored: dict[str, dict[str, float]],
                 n_items: dict[str, int], bootstrap: StepBootstrap, dropped: set[str] = frozenset()) -> list[dict[str, Any]]:
    """The step's records: the ``scored`` benchmarks' new ones, every other benchmark's old ones
    (except ``dropped``), in the step file's order, then the composites of the full set of scores;
    new records carry their bootstrap interval."""
    order: list[str] = []  # benchmarks in the order the step file had them, then any new ones
    for record in old:
        if record["benchmark"] != "composite" and record["benchmark"] not in order:
            order.append(record["benchmark"])
    order += [name for name in scored if name not in order]

    kept: dict[str, list[dict[str, Any]]] = {}
    scores: dict[str, dict[str, float]] = {}
    for record in old:
        if record["benchmark"] in ("composite", *scored, *dropped):
            continue
        kept.setdefault(record["benchmark"], []).append(record)
        scores.setdefault(record["benchmark"], {})[record["metric"]] = float(record["value"])
    scores.update(scored)

    def make(benchmark: str, metric: str, value: float, n: int | None) -> dict[str, Any]:
        named = {key: identity[key] for key in IDENTITY if key in identity}
        low, high = bootstrap.interval(benchmark, metric)
        return asdict(Record(benchmark=benchmark, metric=metric, value=float(value), n=n, ci_low=low, ci_high=high, **named))

    new: list[dict[str, Any]] = []
    for benchmark in order:
        if benchmark in scored:
            new += [make(benchmark, m, v, n_items[benchmark]) for m, v in scored[benchmark].items()]
        else:
            new += kept.get(benchmark, [])
    return new + [make("composite", name, value, None) for name, value in composites(scores).items()]


def as_records(rows: list[dict[str, Any]]) -> list[Record]:
    return [Record(**{k: v for k, v in r.items() if k in RECORD_FIELDS}) for r in rows]


def extras_of(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("records", "step")}


def identity_of(store: ResultStore, run_id: str, step: int, payload: dict[str, Any]) -> dict[str, Any] | None:
    identity = next(iter(payload["records"]), None) or _identity_from_run(store, run_id, step, payload)
    if identity is None:
        warnings.warn(f"run {run_id} step {step}: neither records nor run.json to take the run's identity from; skipped.",
                      stacklevel=2)
    return identity


def backup_step(store: ResultStore, run_id: str, step: int) -> Path:
    """A copy of the step file as it is now, under ``runs/<run>/backup/`` (never overwritten)."""
    source = store.step_path(run_id, step)
    target = store.run_dir(run_id) / "backup" / f"step-{step}.{time.time_ns()}.json"
    atomic_write_json(target, json.loads(source.read_text(encoding="utf-8")))
    return target


def draws_for(store: ResultStore, run_id: str, step: int, records: list[dict[str, Any]],
              items: dict[str, list[dict[str, Any]]], dropped: set[str] = frozenset()) -> StepBootstrap:
    """The same draws as the runner's (they depend on the items only); benchmarks kept as they
    were keep their stored draws."""
    measured = {r["benchmark"] for r in records if r["benchmark"] != "composite"} - dropped | set(items)
    return step_bootstrap({name: (get_benchmark(name), rows) for name, rows in items.items()}, measured,
                          stored_bootstrap(store.read_bootstrap(run_id, step)))


def rescore_step(store: ResultStore, run_id: str, step: int, payload: dict[str, Any]) -> bool:
    """Rewrite one step file from its saved items (after a backup); False when nothing changes."""
    records: list[dict[str, Any]] = payload["records"]
    items = complete_items(store, run_id, step, records)
    if not items:
        return False
    identity = identity_of(store, run_id, step, payload)
    if identity is None:
        return False
    scored = {name: get_benchmark(name).score(rows) for name, rows in items.items()}
    bootstrap = draws_for(store, run_id, step, records, items)
    new = step_records(identity, records, scored, {name: len(rows) for name, rows in items.items()}, bootstrap)
    if same_records(new, records):
        return False
    backup_step(store, run_id, step)
    store.write_bootstrap(run_id, step, bootstrap.payload())
    store.write_step(run_id, step, as_records(new), extras_of(payload))
    return True


def rejudge_step(source: ResultStore, target: ResultStore, run_id: str, step: int, payload: dict[str, Any], judge: Judge) -> bool:
    """Write step ``step`` of ``run_id`` into ``target``, every saved generation judged by ``judge``."""
    records: list[dict[str, Any]] = payload["records"]
    identity = identity_of(source, run_id, step, payload)
    if identity is None:
        return False
    items = complete_items(source, run_id, step, records)
    rejudged = {name: get_benchmark(name).rejudge(rows, judge) for name, rows in items.items()}
    scored = {name: get_benchmark(name).score(rows) for name, rows in rejudged.items()}
    stale = {r["benchmark"] for r in records if getattr(find_benchmark(r["benchmark"]), "generates", False)}
    dropped = stale - set(scored)
    bootstrap = draws_for(source, run_id, step, records, rejudged, dropped)
    new = step_records(identity, records, scored, {name: len(rows) for name, rows in rejudged.items()}, bootstrap, dropped)
    for name, rows in rejudged.items():
        target.write_items(run_id, step, name, rows)
    target.write_bootstrap(run_id, step, bootstrap.payload())
    target.write_step(run_id, step, as_records(new), {**extras_of(payload), "judge": judge.name,
                                                       "rejudged_from": str(source.step_path(run_id, step))})
    return True


def rejudged_folder(results_dir: Path, judge: str) -> Path:
    return results_dir / REJUDGED / judge


def _steps(store: ResultStore, run_id: str):
    step = 0
    while (payload := store.read_step(run_id, step)) is not None:
        yield step, payload
        step += 1


def rescore(results_dir: str | Path, judge: Judge | None = None, out: str | Path | None = None) -> int:
    """Rescore (or, with ``judge``, re-judge into ``out``) every step of every run under
    ``results_dir``; returns the number of step files written."""
    results_dir = Path(results_dir)
    store = ResultStore(results_dir, create=False)
    target = None
    if judge is not None:
        out = Path(out) if out else rejudged_folder(results_dir, judge.name)
        if out.resolve() == results_dir.resolve():
            raise StoreError(f"--out {out} is the results folder itself: re-judged records are written beside the "
                             f"old ones, never over them. Fix: choose another folder "
                             f"(default {rejudged_folder(results_dir, judge.name)}).")
        target = ResultStore(out)
        for model, report in store.model_reports().items():
            target.write_model_report(model, report)
    written = 0
    for run_id in store.run_ids():
        with store.lock(run_id) as acquired:
            if not acquired:
                warnings.warn(f"run {run_id} is held by another process; not rescored.", stacklevel=2)
                continue
            if target is None:
                written += sum(rescore_step(store, run_id, step, payload) for step, payload in _steps(store, run_id))
                continue
            info = store.read_run(run_id)
            if info is not None:
                labelled = {"judge": judge.name, "judge_model": getattr(judge, "model_id", None)}
                target.write_run(replace(info, config={**info.config, "eval": {**info.config.get("eval", {}), **labelled}}))
            written += sum(rejudge_step(store, target, run_id, step, payload, judge) for step, payload in _steps(store, run_id))
    return written


__all__ = ["rejudged_folder", "rescore", "rescore_step", "rejudge_step"]
