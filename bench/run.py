"""Entry point of the performance benchmarks: ``python -m bench.run [--quick] [--only NAME[,NAME]]``.

Runs the chosen items (all by default), each a module with ``measure(options) -> (section, targets)``,
and writes ``results.json`` and ``results.md`` into ``--out`` (default: bench/). With ``--only`` the
items not rerun are kept from the results already there. An item that fails is recorded with its
traceback and the others still run; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Before anything imports tqdm or the hub clients: no progress bars in timings, never the network.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bench.common import Options, Target, machine_info  # noqa: E402
from bench.report import render  # noqa: E402

ITEMS = {
    "training": "bench.training_cost",  # target 1
    "ssi": "bench.ssi",  # target 2
    "eval": "bench.evaluation",  # target 3
    "e2e": "bench.end_to_end",  # target 4
    "ray": "bench.ray_overhead",  # target 5
    "gpu": "bench.gpu",  # target 6
    "small": "bench.small",  # target 7: the small organism's step and generation cost
}
# SSI pins glibc's mmap threshold for the rest of the process (bench.common.pin_mmap_threshold).
RUNS_LAST = {"ssi"}
OUT = Path(__file__).resolve().parent


def run_item(name: str, options: Options) -> tuple[dict[str, Any], list[Target]]:
    started = time.perf_counter()
    try:
        section, targets = importlib.import_module(ITEMS[name]).measure(options)
    except Exception:
        section, targets = {"error": traceback.format_exc(limit=8)}, []
    section["wall_s"] = time.perf_counter() - started
    return section, targets


def run(names: list[str], options: Options) -> dict[str, Any]:
    torch.set_num_threads(options.threads)
    record = {"started_at": time.time(), "items": names, "load_average_at_start": list(os.getloadavg())}
    results: dict[str, Any] = {"machine": machine_info(options), "options": vars(options) | {"only": names},
                               "runs": [record], "items": {}, "targets": []}
    for name in sorted(names, key=lambda n: n in RUNS_LAST):
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section, targets = run_item(name, options)
        results["items"][name] = section
        results["targets"] += [t.as_dict() | {"item": name} for t in targets]
        print(f"[bench] {name}: {section['wall_s']:.1f} s" + (" (FAILED)" if "error" in section else ""),
              file=sys.stderr, flush=True)
    record |= {"wall_s": time.time() - record["started_at"], "load_average_at_end": list(os.getloadavg())}
    return in_order(results)


def in_order(results: dict[str, Any]) -> dict[str, Any]:
    """Items in the order of ITEMS and targets by id, whatever order they ran in."""
    items = {name: results["items"][name] for name in ITEMS if name in results["items"]}
    return {**results, "items": items, "targets": sorted(results["targets"], key=lambda t: t["id"])}


def merged(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """``current`` plus the items it did not rerun from an earlier results file of the same kind
    (both --quick or neither), so one item can be remeasured without rerunning everything."""
    if not previous or previous.get("options", {}).get("quick") != current["options"]["quick"] or "runs" not in previous:
        return current
    kept = {name: section for name, section in previous["items"].items() if name not in current["items"]}
    targets = [t for t in previous["targets"] if t["item"] in kept] + current["targets"]
    return in_order({**current, "items": {**kept, **current["items"]}, "targets": targets,
                     "runs": previous["runs"] + current["runs"]})


def read_previous(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "results.md").write_text(render(results))


def parse_names(text: str | None) -> list[str]:
    """The chosen items in the order of ITEMS (the order of the targets)."""
    chosen = {n.strip() for n in text.split(",") if n.strip()} if text else set(ITEMS)
    unknown = sorted(chosen - set(ITEMS))
    if unknown:
        raise SystemExit(f"unknown item(s) {unknown}; choose from {', '.join(ITEMS)}")
    return [name for name in ITEMS if name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="seconds-sized configurations (smoke test); numbers are not meaningful")
    parser.add_argument("--only", help=f"comma-separated items among: {', '.join(ITEMS)}")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for results.json and results.md (default: bench/)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as threads_per_run)")
    parser.add_argument("--results", default=Options.results,
                        help="results folder of a `make leaderboard` run, read for the default suite's wall time "
                             "(default: results/)")
    args = parser.parse_args(argv)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    results = run(parse_names(args.only), Options(quick=args.quick, threads=args.threads, results=args.results))
    if args.only:
        results = merged(read_previous(args.out), results)
    write(results, args.out)
    for target in results["targets"]:
        print(target["line"])
    failed = [name for name, section in results["items"].items() if "error" in section]
    for name in failed:
        print(f"[bench] {name} failed:\n{results['items'][name]['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
