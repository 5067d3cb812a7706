"""The ``erosion`` command line. Every subcommand has ``--help``; user errors print one paragraph
(what, where, fix) and exit with code 2, never a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError, ErosionError

DEFAULT_RESULTS = "results"


def _offline_by_default() -> None:
    # The micro default never touches the network; paper scale users unset these explicitly.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set training.max_steps=20`` -> {"training": {"max_steps": 20}} (values parsed as YAML)."""
    from harness.orchestration.config import parse_yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE with a dotted KEY. Fix: e.g. --set training.max_steps=20.")
        if not raw.strip():
            # An empty value would parse as null and silently drop a setting such as a step cap.
            raise ConfigError(f"--set {pair!r}: no value after '='. Fix: give a value (e.g. {key}=20), "
                              f"or {key}=null to unset the key on purpose.")
        node = out
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                earlier = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {pair!r}: an earlier --set gave {earlier!r} a value, so it has no keys "
                                  f"to set. Fix: drop one of the two.")
        node[parts[-1]] = parse_yaml(raw, f"--set {key}: the value {raw!r}")
    return out


def benchmark_names(values: list[str]) -> list[str]:
    """``--benchmarks`` values, each a name or a comma list as lm-eval's ``--tasks`` takes
    (``harmbench,xstest``), as one list without repeats."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"--benchmarks {' '.join(values)!r}: no benchmark named. "
                          f"Fix: e.g. --benchmarks harmbench,xstest or all.")
    return list(dict.fromkeys(names))


def package_version() -> str:
    """The installed erosion-bench's version (a bare checkout has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("erosion-bench")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


# ---- subcommands ---------------------------------------------------------------------------------
def writable_folder(path: Path, flag: str) -> Path:
    """``path`` if it is (or can be made) a writable folder; else one clear error, with nothing created."""
    from harness.core.store import unwritable_reason

    reason = unwritable_reason(path)
    if reason:
        raise ConfigError(f"{flag} {path}: {reason}. Fix: pass a writable folder path.")
    return path


def cmd_prefetch(args: argparse.Namespace) -> int:
    from harness.core.data import RAW_DATASETS, FetchOptions, data_dir, default_mirror
    from harness.core.prefetch import prefetch
    from harness.core.releases import RELEASES

    mirror = None if args.no_mirror else Path(args.mirror) if args.mirror else default_mirror()
    if mirror is not None and not mirror.is_dir():
        raise ConfigError(f"--mirror {mirror}: not a folder. Fix: pass the folder that holds the datasets' "
                          f"folders (harmbench/, medqa/, ...), e.g. ../shared/data.")
    names = args.datasets + args.only or list(RAW_DATASETS)
    known = {*RAW_DATASETS, *RELEASES}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ConfigError(f"prefetch: unknown dataset {unknown[0]!r}. Fix: choose from {', '.join(sorted(known))} "
                          f"(see `erosion prefetch --list`).")
    target = Path(args.data_dir) if args.data_dir else data_dir()
    if args.list:
        print_dataset_table(target)
        return 0
    target = writable_folder(target, "--data-dir")
    options = FetchOptions(base_url=args.base_url, allow_unverified=args.allow_unverified)
    fetched = prefetch(names, mirror, target, force=args.force, options=options)
    origin = f"mirror {mirror}" if mirror else "public sources" + (f" via {args.base_url}" if args.base_url else "")
    print(f"data directory {target}: {len(fetched)} fetched from {origin}, {len(names) - len(fetched)} already present")
    return 0


def print_dataset_table(target: Path) -> None:
    """``erosion prefetch --list``: every dataset with its source, license, size, sha256 and presence."""
    from harness.core.prefetch import dataset_listing

    rows = dataset_listing(target)
    columns = ("name", "scale", "present", "size", "license")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
        print(f"    source {row['source']}\n    sha256 {row['sha256']}")
    print(f"data directory {target}; NC = non-commercial license, gated = accept the terms on the hub and set HF_TOKEN")


def cmd_build_world(args: argparse.Namespace) -> int:
    from harness.orchestration.small_sources import SMALL_SOURCES

    if args.preset in SMALL_SOURCES:
        from harness.orchestration.small_model import SmallConfig, build_small

        paths, what = build_small(SmallConfig(source=SMALL_SOURCES[args.preset]), force=args.force), "small organism"
    else:
        from harness.orchestration.micro_world import WORLD_PRESETS, build_world

        paths, what = build_world(WORLD_PRESETS[args.preset], force=args.force), "micro world"
    report = json.loads(paths.report.read_text())
    print(f"{what} ({args.preset}) at {paths.root}")
    for check in report["checks"]:
        print(f"  [{'met' if check['met'] else 'NOT MET'}] {check['name']}: {check['value']:.1f} (target {check['target']})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.core.store import MARKER, ResultStore, check_results_folder
    from harness.orchestration.config import load_suite
    from harness.orchestration.preflight import preflight
    from harness.orchestration.scheduler import check_address, connect_cluster, run_suite

    overrides = parse_overrides(args.set)
    if args.keep_models:
        overrides["keep_models"] = True
    suite = load_suite(args.suite, overrides)
    check_results_folder(Path(args.results), for_writing=True)
    if (Path(args.results) / MARKER).exists():
        ResultStore(args.results, create=False).runs()  # a damaged run.json is refused before anything is written
    if args.address and args.executor != "local":
        check_address(args.address)  # before the results folder exists: an unreachable cluster writes nothing
        connect_cluster(args.address)  # a head that refuses this driver (token auth) writes nothing either
    preflight(suite, source=str(args.suite))
    store = ResultStore(args.results)
    outcomes = run_suite(suite, store, executor=args.executor, address=args.address)
    failed = [o for o in outcomes if o["status"] == "failed"]
    busy = [o for o in outcomes if o["status"] == "busy"]
    print(f"suite {suite.name}: {len(outcomes) - len(failed) - len(busy)} run(s) done, {len(failed)} failed"
          f"{f', {len(busy)} left to another process working in the same results folder' if busy else ''}"
          f"{'' if outcomes else ' (everything was already done)'}; results in {store.root}")
    for outcome in failed:
        last = (outcome.get("error") or "").strip().splitlines()[-1:] or ["unknown error"]
        print(f"  FAILED {outcome['run_id']}: {last[0]}")
    if not args.no_leaderboard:
        cmd_leaderboard(argparse.Namespace(results=args.results, out=None))
    return 1 if failed else 0


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.orchestration.config import load_suite
    from harness.orchestration.plan import describe_plan
    from harness.orchestration.presets import PRESETS

    suite = load_suite(args.suite, parse_overrides(args.set))
    print(describe_plan(suite, PRESETS[suite.model]))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from leaderboard.render import render, terminal_table

    paths = render(Path(args.results), Path(args.out) if args.out else None)
    print(terminal_table(Path(args.results)))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    return 0


def scale_caps(scale: str) -> dict[str, int | None]:
    """The per-benchmark item caps of a scale's preset (micro evaluates subsets, paper full sets)."""
    from harness.orchestration.config import PRESETS_DIR, read_yaml_mapping

    preset = PRESETS_DIR / f"scale-{scale}.yaml"
    return read_yaml_mapping(preset).get("eval", {}).get("caps", {}) if preset.exists() else {}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmarks import expand, get_benchmark
    from benchmarks.composite import composites
    from benchmarks.judges import get_judge, missing_judge_weights
    from harness.core.lm import ChatLM
    from harness.core.models import device, load_tokenizer
    from harness.core.store import atomic_write_json, atomic_write_text
    from harness.orchestration.perturb import parse_perturbation, perturb
    from harness.orchestration.presets import evaluation_model
    from leaderboard.flags import flag_text, flags, flat

    problem = missing_judge_weights(args.judge, args.judge_model)
    if problem:
        raise ConfigError(problem)
    if args.perturb:
        parse_perturbation(args.perturb)  # a bad spec fails before the model loads
    # Every name and the output folder are checked before any model work.
    benchmarks = {bench: get_benchmark(bench) for bench in expand(benchmark_names(args.benchmarks))}
    if args.out:
        writable_folder(Path(args.out), "--out")
    chosen = evaluation_model(args.model, args.step, tuple(args.adapter or ()))
    label = chosen.label + (f"+{args.perturb.replace(':', '-')}" if args.perturb else "")
    out = writable_folder(Path(args.out or f"{DEFAULT_RESULTS}/evaluate/{label}"), "--out")
    model = chosen.load()
    if args.perturb:
        perturb(model, args.perturb)
    max_length = chosen.max_length or model.config.max_position_embeddings
    lm = ChatLM(model, load_tokenizer(chosen.tokenizer), max_length=max_length, batch_size=32, device=device())
    lm.show_progress = True
    caps = {} if args.full else scale_caps(chosen.scale)
    scores = {}
    for bench, benchmark in benchmarks.items():
        result = benchmark.evaluate(lm, args.cap or caps.get(bench), args.max_new_tokens, get_judge(args.judge, args.judge_model))
        scores[bench] = result.scores
        print(f"{bench:12s} n={len(result.items):5d}  " + "  ".join(f"{k}={v:.2f}" for k, v in result.scores.items()))
        atomic_write_text(out / f"{bench}.jsonl", "".join(json.dumps(i) + "\n" for i in result.items))
    found = flags(flat(scores))
    combined = composites(scores)
    for key, value in combined.items():
        caveat = " (NOT a safety result: the row is flagged)" if found and key == "safety" else ""
        print(f"composite {key}: {value:.2f}{caveat}")
    print(f"flags: {flag_text(found)}")
    atomic_write_json(out / "scores.json", {"model": args.model, "perturb": args.perturb, "scores": scores,
                                            "composites": combined, "flags": found})
    print(f"per-item outputs and scores.json: {out}/")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from benchmarks.judges import check_judge_name, get_judge, missing_judge_weights
    from harness.orchestration.rescore import rejudged_folder, rescore

    if args.judge is None:
        count = rescore(Path(args.results))
        print(f"rescored {count} step file(s) in {args.results} from their saved per-item outputs (old ones in runs/*/backup/)")
        return 0
    check_judge_name(args.judge)
    problem = missing_judge_weights(args.judge, args.judge_model)
    if problem:
        raise ConfigError(problem)
    out = Path(args.out) if args.out else rejudged_folder(Path(args.results), args.judge)
    count = rescore(Path(args.results), get_judge(args.judge, args.judge_model), out)
    print(f"re-judged {count} step file(s) of {args.results} with judge {args.judge} and the degenerate detector; "
          f"new records in {out} (the originals are untouched; `erosion leaderboard {out}` renders them)")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from methods import all_methods

    for name, cls in sorted(all_methods().items()):
        print(f"{name}: {cls.describe()}")
        for field, info in cls.Config.model_fields.items():
            print(f"    {field} ({getattr(info.annotation, '__name__', info.annotation)}) = {info.default!r}")
    return 0


def cmd_benchmarks(args: argparse.Namespace) -> int:
    from benchmarks import all_benchmarks

    for name, bench in all_benchmarks().items():
        print(f"{name}: feeds {bench.feeds or '-'}; primary {bench.primary}; {bench.data}")
    return 0


# ---- parser -------------------------------------------------------------------------------------
def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], or argparse's one-line error (exit code 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high:,}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    from harness.core.settings import MAX_CAP, MAX_NEW_TOKENS
    from harness.orchestration.config import shipped_names
    from harness.orchestration.small_sources import SMALL_SOURCES

    suite_help = f"a suite YAML path, or a shipped suite's name: {', '.join(shipped_names())}"

    parser = argparse.ArgumentParser(
        prog="erosion", description="erosion-bench: cumulative safety erosion under sequential LoRA fine-tuning.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("prefetch", cmd_prefetch, "Fetch every dataset the suites need into the data directory (offline loaders read "
            "only from there): from a local mirror when one is given or found beside the checkout, else from each dataset's "
            "pinned public source, every file checked by sha256.")
    p.add_argument("datasets", nargs="*", help="dataset names (default: every dataset of the micro default)")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME", help="fetch only these datasets (same as naming them)")
    p.add_argument("--list", action="store_true", help="list every dataset (micro and paper-scale releases) with source, "
                   "revision, license, size, sha256 and whether it is present, then exit")
    p.add_argument("--mirror", help="local mirror folder (default: ../shared/data beside the checkout, if present)")
    p.add_argument("--no-mirror", action="store_true", help="ignore any mirror and download from the public sources")
    p.add_argument("--base-url", help="fetch https://HOST/PATH from BASE_URL/HOST/PATH instead (tests, private mirrors; "
                   "also $EROSION_SOURCE_BASE_URL)")
    p.add_argument("--allow-unverified", action="store_true", help="accept paper-scale release files whose sha256 is not "
                   "pinned yet (recorded in the release's SOURCE.txt)")
    p.add_argument("--data-dir", help="destination (default: $EROSION_DATA or ~/.cache/erosion-bench/data)")
    p.add_argument("--force", action="store_true", help="fetch again even if present")

    p = add("build-world", cmd_build_world,
            "Build (or reuse from cache) an organism and print its starting checks: the micro world (tokenizer, "
            "micro-base, micro-chat), or with --preset small small-chat (SmolLM2-135M-Instruct aligned by the harness).")
    p.add_argument("--preset", default="micro", choices=["micro", "tiny", *SMALL_SOURCES])
    p.add_argument("--force", action="store_true", help="rebuild even if cached")

    p = add("run", cmd_run,
            "Run a suite YAML (method x ordering x seed), resuming whatever is already done, then render the leaderboard.")
    p.add_argument("suite", help=suite_help)
    p.add_argument("--results", default=DEFAULT_RESULTS, help=f"results directory (default: {DEFAULT_RESULTS}/)")
    p.add_argument("--executor", default="auto", choices=["auto", "ray", "local"],
                   help="auto = Ray when more than one run is pending")
    p.add_argument("--keep-models", action="store_true",
                   help="keep each run's full model after the last domain (per-domain LoRA adapters are always kept)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. ray://host:10001 or auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a suite key, e.g. training.max_steps=20")
    p.add_argument("--no-leaderboard", action="store_true", help="do not render the leaderboard at the end")

    p = add("plan", cmd_plan,
            "Validate a suite and print its job graph, resources per task and a compute estimate, without running.")
    p.add_argument("suite", help=suite_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a suite key")

    p = add("leaderboard", cmd_leaderboard,
            "Render the leaderboard (terminal, Markdown, CSV, JSON, PNG, HTML) from a results directory.")
    p.add_argument("results", nargs="?", default=DEFAULT_RESULTS, help="results directory (may come from another machine)")
    p.add_argument("--out", help="output folder (default: RESULTS/leaderboard)")

    p = add("evaluate", cmd_evaluate, "Evaluate a starting model on benchmarks and print scores and composites.")
    p.add_argument("--model", default="micro-chat",
                   help="PRESET-chat or PRESET-base (default micro-chat), a run folder RESULTS/runs/<id> (the model it "
                        "trained; see --step), a model folder, or a hub id repo[@revision]")
    p.add_argument("--step", type=int, help="with a run folder: the model after this step (0 = start; default: the last)")
    p.add_argument("--adapter", action="append",
                   help="a PEFT adapter folder applied and merged on top of --model (repeat to chain)")
    p.add_argument("--benchmarks", nargs="+", default=["all"],
                   help="benchmark names, space- or comma-separated as lm-eval's --tasks (harmbench,xstest), or 'all'")
    p.add_argument("--cap", type=bounded_int(1, MAX_CAP), default=None,
                   help="at most this many items per benchmark (default: the scale's caps)")
    p.add_argument("--full", action="store_true", help="evaluate full sets, ignoring the scale's caps")
    p.add_argument("--max-new-tokens", type=bounded_int(1, MAX_NEW_TOKENS), default=24)
    p.add_argument("--out", help=f"folder for per-item files (default {DEFAULT_RESULTS}/evaluate/MODEL)")
    p.add_argument("--judge", default="refusal",
                   help="judge of responses to harmful requests (HarmBench, WildGuard's harmful half): "
                        "refusal (default, keyword), harmbench-cls or llama-guard (classifier weights needed)")
    p.add_argument("--judge-model", help="local folder (or cached hub id) with a classifier judge's weights")
    p.add_argument("--perturb", metavar="zero|noise:STD",
                   help="break the model first, to see the harness flag it: zero (all weights 0) or noise:STD "
                        "(weights replaced by seeded Gaussian noise, e.g. noise:0.5)")

    p = add("rescore", cmd_rescore, "Recompute every score of a results folder from the saved per-item outputs (no model "
            "needed); with --judge, re-judge every saved generation into a new results folder beside the old one.")
    p.add_argument("results", nargs="?", default=DEFAULT_RESULTS)
    p.add_argument("--judge", help="re-judge stored generations with this judge (refusal, harmbench-cls, llama-guard) and the "
                                   "degenerate detector; writes RESULTS/rejudged/NAME/ (or --out), never over the originals")
    p.add_argument("--judge-model", help="local folder (or cached hub id) with a classifier judge's weights")
    p.add_argument("--out", help="folder for the re-judged results (default RESULTS/rejudged/JUDGE)")

    add("methods", cmd_methods, "List the registered methods with their config fields.")
    add("benchmarks", cmd_benchmarks, "List the registered benchmarks.")
    return parser


def _plain_warnings() -> None:
    """Our warnings (a damaged step file read as missing, ...) as one 'warning:' paragraph each, not
    Python's file:line:category form."""
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    _offline_by_default()
    _plain_warnings()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ErosionError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        # The environment, not the input (disk full, permission denied): still one paragraph.
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}. Fix: check that path's permissions and the free disk "
              f"space, then rerun the same command (finished steps are kept).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished steps are saved; rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
