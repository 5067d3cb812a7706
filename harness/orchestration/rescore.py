"""Recompute every step's benchmark scores from the saved per-item outputs (``erosion rescore``).

For each run and each evaluation step, every benchmark whose items were saved
(``runs/<run>/items/step-<k>/<benchmark>.jsonl``) is scored again with the benchmark's current
``score`` (no model needed), its records in ``step-<k>.json`` are replaced, and the composite
records are recomputed from the step's full set of scores. Records of benchmarks without saved
items are kept as they were, and so is everything else in the step file (training stats, events,
timings). A run that another process holds (its lock) is skipped with a warning.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from benchmarks import BENCHMARKS
from benchmarks.composite import composites, step_bootstrap, stored_bootstrap
from harness.core.store import Record, ResultStore, ordering_label

RECORD_FIELDS = {f.name for f in fields(Record)}
IDENTITY = ("model", "scale", "method", "ordering", "seed", "step", "domain", "config_hash", "wall_time_s", "versions")


def _saved_benchmarks(store: ResultStore, run_id: str, step: int) -> list[str]:
    folder = store.run_dir(run_id) / "items" / f"step-{step}"
    if not folder.is_dir():
        return []
    names = []
    for path in sorted(folder.glob("*.jsonl")):
        if path.stem in BENCHMARKS:
            names.append(path.stem)
        else:
            warnings.warn(f"{path}: no registered benchmark {path.stem!r}; its records are left as they are.")
    return names


def _identity_from_run(store: ResultStore, run_id: str, step: int, payload: dict[str, Any]) -> dict[str, Any] | None:
    info = store.read_run(run_id)
    if info is None:
        return None
    return {"model": info.model, "scale": info.scale, "method": info.method, "ordering": ordering_label(info.ordering),
            "seed": info.seed, "step": step, "domain": payload.get("domain"), "config_hash": info.config_hash,
            "wall_time_s": float(payload.get("eval_seconds", 0.0)), "versions": info.versions}


def rescore_step(store: ResultStore, run_id: str, step: int, payload: dict[str, Any]) -> bool:
    """Rewrite one step file from its saved items; False when it has none."""
    names = _saved_benchmarks(store, run_id, step)
    if not names:
        return False
    records: list[dict[str, Any]] = payload["records"]
    rescored: dict[str, dict[str, float]] = {}
    n_items: dict[str, int] = {}
    scored = {}
    for name in names:
        try:
            items = store.read_items(run_id, step, name)
        except ValueError as err:
            warnings.warn(f"run {run_id} step {step}: unreadable {name} items ({err}); its records are left as they are.")
            continue
        if items:  # an empty file cannot be scored: that benchmark's records stay as they are
            rescored[name] = BENCHMARKS[name].score(items)
            n_items[name] = len(items)
            scored[name] = (BENCHMARKS[name], items)
    if not rescored:
        return False
    identity = next((r for r in records), None) or _identity_from_run(store, run_id, step, payload)
    if identity is None:
        warnings.warn(f"run {run_id} step {step}: neither records nor run.json to take the run's identity from; skipped.")
        return False

    order: list[str] = []  # benchmarks in the order the step file had them, then any new ones
    for record in records:
        if record["benchmark"] != "composite" and record["benchmark"] not in order:
            order.append(record["benchmark"])
    order += [name for name in rescored if name not in order]

    scores: dict[str, dict[str, float]] = {}
    kept: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record["benchmark"] in ("composite", *rescored):
            continue
        kept.setdefault(record["benchmark"], []).append(record)
        scores.setdefault(record["benchmark"], {})[record["metric"]] = float(record["value"])
    scores.update(rescored)
    # The same draws as the runner's: they depend on the items only. Benchmarks kept as they were keep theirs.
    bootstrap = step_bootstrap(scored, set(scores), stored_bootstrap(store.read_bootstrap(run_id, step)))

    def make(benchmark: str, metric: str, value: float, n: int | None) -> dict[str, Any]:
        fields = {key: identity[key] for key in IDENTITY if key in identity}
        low, high = bootstrap.interval(benchmark, metric)
        return asdict(Record(benchmark=benchmark, metric=metric, value=float(value), n=n, ci_low=low, ci_high=high, **fields))

    new_records: list[dict[str, Any]] = []
    for benchmark in order:
        if benchmark in rescored:
            new_records += [make(benchmark, m, v, n_items[benchmark]) for m, v in rescored[benchmark].items()]
        else:
            new_records += kept.get(benchmark, [])
    new_records += [make("composite", name, value, None) for name, value in composites(scores).items()]
    extras = {k: v for k, v in payload.items() if k not in ("records", "step")}
    store.write_bootstrap(run_id, step, bootstrap.payload())
    store.write_step(run_id, step, [Record(**{k: v for k, v in r.items() if k in RECORD_FIELDS}) for r in new_records], extras)
    return True


def rescore(results_dir: str | Path) -> int:
    """Rescore every step of every run under ``results_dir``; returns the number of step files rewritten."""
    store = ResultStore(results_dir, create=False)
    n_rescored = 0
    for run_id in store.run_ids():
        with store.lock(run_id) as acquired:
            if not acquired:
                warnings.warn(f"run {run_id} is held by another process; not rescored.")
                continue
            step = 0
            while (payload := store.read_step(run_id, step)) is not None:
                n_rescored += rescore_step(store, run_id, step, payload)
                step += 1
    return n_rescored


__all__ = ["rescore", "rescore_step"]
