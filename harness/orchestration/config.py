"""Suite configuration: YAML files, validated on load.

The shipped suites and presets are package data in ``harness/suites/`` (in a checkout a link to
``sequences/``), so a wheel install finds them too: a suite is given by path or by name (``micro``,
``micro.yaml`` or the docs' ``sequences/micro.yaml`` all mean the shipped ``micro.yaml``).

A suite names a model preset, an ordered list of domains, the methods, seeds and benchmarks, and
the training/evaluation settings. ``include:`` pulls in other YAML files (a preset name such as
``scale-micro`` means ``presets/scale-micro.yaml``); later keys override earlier ones, dictionaries merge
key by key. ``orderings: all`` expands the domain list into every permutation (3! = 6 for three
domains) so no user copies six files.

Every error names the file, the key and the fix, and is raised as :class:`ConfigError`.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from harness.core.errors import ConfigError
from harness.core.hashing import stable_hash
from harness.core.settings import EvalSettings, Int, Real, Seed, Strict, TrainSettings

# Package data (pyproject.toml), so that a non-editable install finds them; a checkout links it to sequences/.
SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"
PRESETS_DIR = SUITES_DIR / "presets"  # fragments to include (scale settings), not suites
CHECKOUT_SUITES_FOLDER = "sequences"  # the docs' spelling: sequences/NAME.yaml
# Sane upper bounds of a suite (docs/reliability.md; those of the settings: harness/core/settings.py).
MAX_THREADS = 256
MAX_GPUS = 64
MAX_RETRIES = 10
MAX_JOBS = 10_000  # methods x orderings x seeds
MAX_SUITE_BYTES = 1_000_000
MAX_YAML_NODES = 100_000  # after expanding aliases: an alias bomb is refused, not expanded


class SuiteConfig(Strict):
    name: str = Field(min_length=1)
    model: str = "micro"
    domains: list[str]
    orderings: Literal["given", "all"] = "given"
    methods: list[str] = Field(default_factory=lambda: ["standard_lora"])
    method_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[Seed] = Field(default_factory=lambda: [0])
    benchmarks: list[str] = Field(default_factory=lambda: ["harmbench", "truthfulqa", "bbq"])
    training: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()
    threads_per_run: Int = Field(1, gt=0, le=MAX_THREADS)
    num_gpus_per_run: Real = Field(1.0, ge=0, le=MAX_GPUS)
    max_retries: Int = Field(1, ge=0, le=MAX_RETRIES)
    keep_models: bool = Field(False, description="also keep the full model after the last domain (adapters are always kept)")

    @field_validator("domains", "methods", "seeds", "benchmarks")
    @classmethod
    def _non_empty_unique(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"has duplicates: {value}")
        return value

    @model_validator(mode="after")
    def _bounded_job_graph(self) -> SuiteConfig:
        orderings = math.factorial(len(self.domains)) if self.orderings == "all" else 1
        jobs = len(self.methods) * orderings * len(self.seeds)
        if jobs > MAX_JOBS:
            raise ValueError(
                f"the suite has {jobs:,} runs ({len(self.methods)} methods x {orderings:,} orderings x "
                f"{len(self.seeds)} seeds), more than {MAX_JOBS:,}. Fix: use fewer domains with 'orderings: all', "
                f"or fewer methods or seeds"
            )
        return self

    def domain_orderings(self) -> list[list[str]]:
        if self.orderings == "all":
            return [list(p) for p in itertools.permutations(self.domains)]
        return [list(self.domains)]

    def config_hash(self, method: str) -> str:
        """Hash of everything that changes ``method``'s runs: the suite's settings and that method's
        whole config, its defaults included (a changed default is a new run, never a stale "done").
        Names, seeds and the other methods' configs are left out, so two suites that run a method
        alike share its runs (small.yaml and small-seeds.yaml share Standard LoRA's seed 0)."""
        from methods.registry import method_config

        relevant = self.model_dump(exclude={"name", "methods", "seeds", "orderings", "max_retries", "keep_models",
                                            "method_configs"})
        config = method_config(method, self.method_configs.get(method)).model_dump()
        relevant["method_configs"] = {method: config} if config else {}  # a method without fields: {}
        calibration = self.calibration_answers(method)
        if calibration != "templates":  # the templates' runs keep the hashes they had before this field
            relevant["calibration"] = calibration
        return stable_hash(relevant)

    def calibration_answers(self, method: str) -> str:
        """What ``method``'s calibration set answers benign requests with under this suite's model
        ("templates" for a method that never reads it)."""
        from harness.orchestration.presets import PRESETS
        from methods.registry import resolve_method

        return PRESETS[self.model].calibration if resolve_method(method).reads_calibration else "templates"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def shipped_names(*folders: Path) -> list[str]:
    """The names of the YAML files shipped in ``folders`` (default: the suites), sorted."""
    return sorted(p.stem for folder in folders or (SUITES_DIR,) for p in folder.glob("*.yaml"))


def find_suite(suite: str | Path) -> Path:
    """The suite file ``suite`` names: an existing path (a folder there is refused by the reader, with
    its reason), else a shipped suite by name (``micro``, ``micro.yaml`` or ``sequences/micro.yaml``,
    so the docs' commands work outside a checkout)."""
    path = Path(suite)
    if path.exists():
        return path
    by_name = len(path.parts) == 1 or (len(path.parts) == 2 and path.parts[0] == CHECKOUT_SUITES_FOLDER)
    shipped = SUITES_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if by_name and shipped.is_file():
        return shipped
    raise ConfigError(f"Suite file {path} does not exist, and {path.name!r} is no shipped suite. Fix: check the path, "
                      f"or name a shipped suite: {', '.join(shipped_names())}.")


def _resolve_include(name: str, relative_to: Path) -> Path:
    shipped = [folder / f for folder in (SUITES_DIR, PRESETS_DIR) for f in (name, f"{name}.yaml")]
    candidates = [relative_to.parent / name, *shipped]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        f"{relative_to}: key 'include' names {name!r}, which is neither a file next to it nor a "
        f"shipped suite or preset. Fix: give a path or one of: {', '.join(shipped_names(SUITES_DIR, PRESETS_DIR))}."
    )


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice."""


class _SuiteLoader(yaml.SafeLoader):
    """``yaml.safe_load`` with two fixes for hand-written suites: a key given twice is an error
    (PyYAML keeps the last silently), and ``2e-4`` is a number (YAML 1.1 reads it as a string)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *anchor' merges keys that the mapping may then override
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first_seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it with its position
            if earlier is not None:
                raise DuplicateKeyError(
                    None, None,
                    f"key {key!r} is given twice (first at line {earlier.line + 1}); YAML would keep only "
                    f"the last one", key_node.start_mark)
            first_seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_SuiteLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

_OPENERS = {"[": "'['", "{": "'{'", '"': "double quote", "'": "single quote"}


def _position(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _describe_yaml_error(err: yaml.YAMLError, text: str) -> str:
    """Where the mistake is, pointing at the bracket or quote that is never closed when that is it."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        return (f"at line {line}, column {column}: character #x{code:02x} is a control character that YAML "
                f"does not allow. Fix: delete it (inside double quotes, write it as an escape such as \\t)")
    problem_mark = getattr(err, "problem_mark", None)
    context_mark = getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if isinstance(err, DuplicateKeyError):
        return f"at {_position(problem_mark)}: {problem}. Fix: delete one of the two (or merge their values)"
    if problem.startswith("could not determine a constructor"):
        return (f"at {_position(problem_mark)}: {problem}. Fix: remove the tag; a suite holds plain values "
                f"(numbers, strings, lists and mappings)")
    opener = text[context_mark.index] if context_mark is not None and context_mark.index < len(text) else ""
    if opener in _OPENERS and problem_mark is not None:
        return (f"at {_position(context_mark)}: the {_OPENERS[opener]} opened here is never closed "
                f"({problem} at {_position(problem_mark)}). Fix: close it, or quote a value that contains "
                f"one of [ ] {{ }} , : #")
    where = f"at {_position(problem_mark)}" if problem_mark is not None else "(position unknown)"
    has_context = getattr(err, "context", None) and context_mark
    context = f" ({err.context} that starts at {_position(context_mark)})" if has_context else ""
    return (f"{where}: {problem}{context}. Fix: check indentation and that every 'key: value' pair is on its own "
            f"line (a YAML linter shows the exact spot)")


def _expanded_size(data: Any) -> int:
    """Nodes of ``data`` with every alias expanded, counted without expanding (stops past the cap)."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                break
        sizes[id(node)] = total
        return total

    return size(data)


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document of a suite (a file or a ``--set`` value); ``source`` names it in errors."""
    try:
        data = yaml.load(text, Loader=_SuiteLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: malformed YAML {_describe_yaml_error(err, text)}.") from None
    except RecursionError:
        raise ConfigError(f"{source}: malformed YAML: nested more deeply than Python can read. "
                          f"Fix: flatten the nesting.") from None
    if _expanded_size(data) > MAX_YAML_NODES:
        raise ConfigError(
            f"{source}: more than {MAX_YAML_NODES:,} values once its aliases (*name) are expanded. "
            f"Fix: write the values out; a suite needs a few hundred at most.")
    return data


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        if path.is_file() and path.stat().st_size > MAX_SUITE_BYTES:
            raise ConfigError(
                f"{path}: {path.stat().st_size:,} bytes, more than a suite file's {MAX_SUITE_BYTES:,}. "
                f"Fix: pass the suite YAML, not a data file.")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Suite file {path} does not exist. Fix: check the path, or name a shipped suite: "
                          f"{', '.join(shipped_names())}.") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"{path}: cannot be read as a YAML text file ({reason}). "
                          f"Fix: pass a readable UTF-8 .yaml file.") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (name:, domains:, ...), got {type(data).__name__}. "
                          f"Fix: write one 'key: value' per line (see sequences/micro.yaml).")
    return data


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML file and everything it includes, merged (includes first, file last)."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: include cycle ({' -> '.join(str(p) for p in _seen + (path,))}). Fix: remove one include.")
    data = read_yaml_mapping(path)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise ConfigError(f"{path}: key 'include' = {_short(includes)} must be a file/preset name or a list of them. "
                          f"Fix: e.g. 'include: scale-micro'.")
    merged: dict[str, Any] = {}
    for name in includes:
        merged = deep_merge(merged, load_raw(_resolve_include(name, path), _seen + (path,)))
    return deep_merge(merged, data)


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters: a message quotes a value, never a whole list of them."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Origin:
    """Which input a key came from: a ``--set`` override, or the suite file (with its includes)."""

    def __init__(self, path: Path, overrides: dict[str, Any] | None) -> None:
        self.path = path
        self.overridden = list(_leaf_keys(overrides or {}))

    def of(self, key: str) -> str:
        parts = tuple(key.split(".")) if key else ()
        for keys in self.overridden:
            if parts[: len(keys)] == keys:
                return f"--set {'.'.join(keys)} (on {self.path})"
        return str(self.path)


def _leaf_keys(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    for key, value in tree.items():
        path = prefix + (str(key),)
        keys += _leaf_keys(value, path) if isinstance(value, dict) and value else [path]
    return keys


def _explain(origin: Origin, err: ValidationError) -> ConfigError:
    """One paragraph for the first problem pydantic found (naming its source and key), the rest after it."""
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"])
        where = origin.of(key)
        shown = key or "(top level)"
        if problem["type"] == "extra_forbidden":
            valid = _valid_keys_at(problem["loc"][:-1])
            fix = f"remove it or use one of: {', '.join(valid)}" if valid else "remove it"
            lines.append(f"{where}: unknown key '{shown}'. Fix: {fix}")
        elif problem["type"] == "missing":
            lines.append(f"{where}: key '{shown}' is required. Fix: add it")
        elif not key:  # a rule over the whole suite: its message carries the fix
            lines.append(f"{where}: {problem['msg'].removeprefix('Value error, ')}")
        else:
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: key '{shown}' = {_short(problem.get('input'))}: {message}. Fix: change the value")
    return ConfigError("; ".join(lines) + ".")


def _valid_keys_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = SuiteConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def load_suite(path: str | Path, overrides: dict[str, Any] | None = None) -> SuiteConfig:
    """Load (``path``: a file or a shipped suite's name), merge includes, apply overrides, validate
    names against the registries."""
    path = find_suite(path)
    origin = Origin(path, overrides)
    raw = with_method_defaults(deep_merge(load_raw(path), overrides or {}), path)
    try:
        suite = SuiteConfig.model_validate(raw)
    except ValidationError as err:
        raise _explain(origin, err) from None
    validate_names(suite, origin)
    return suite


def with_method_defaults(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """``method_defaults`` (a scale preset's per-method settings, e.g. sequences/presets/scale-micro.yaml)
    become the ``method_configs`` of the methods the suite runs; the suite's own method_configs win.
    Methods the suite does not run take nothing from them (nor does the config hash). A variant row
    ``name[field=value, ...]`` takes the defaults of ``name``, then its own method_configs entry, then
    the fields its label names, so the stored method_config is the whole config the label runs."""
    from methods.registry import split_variant

    defaults = raw.pop("method_defaults", None) or {}
    if not isinstance(defaults, dict) or not all(isinstance(v, dict) for v in defaults.values()):
        raise ConfigError(f"{path}: key 'method_defaults' must map method names to their fields. "
                          f"Fix: e.g. method_defaults: {{vaccine: {{epochs: 8}}}}.")
    methods = raw.get("methods", SuiteConfig.model_fields["methods"].get_default(call_default_factory=True))
    configs = raw.get("method_configs") or {}
    if not (isinstance(methods, list) and isinstance(configs, dict)):
        return raw  # malformed: validation names the key
    configs = dict(configs)
    for name in methods:
        if not (isinstance(name, str) and isinstance(configs.get(name) or {}, dict)):
            continue
        base, label_fields = split_variant(name, f"{path}: key 'methods'")
        if base in defaults or label_fields:
            configs[name] = deep_merge(deep_merge(defaults.get(base, {}), configs.get(name) or {}), label_fields)
    if configs:
        raw["method_configs"] = configs
    return raw


def validate_names(suite: SuiteConfig, origin: Origin | Path) -> None:
    """Unknown method/benchmark/domain/model names fail at load time, not hours into a run."""
    from benchmarks import all_benchmarks, get_benchmark
    from benchmarks.judges import JUDGES
    from harness.core.domains import DOMAINS
    from harness.orchestration.presets import PRESETS
    from methods import resolve_method

    origin = origin if isinstance(origin, Origin) else Origin(origin, None)

    def check(kind: str, key: str, names: list[str], known: dict[str, Any]) -> None:
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"{origin.of(key)}: key '{key}' names unknown {kind} {name!r}. "
                    f"Fix: use one of: {', '.join(sorted(known))}."
                )

    check("model preset", "model", [suite.model], PRESETS)
    check("domain", "domains", suite.domains, DOMAINS)
    # Names, installed packages' entry points, and the suite's own 'package.module:Class' paths.
    benchmarks = {**all_benchmarks(), **{name: get_benchmark(name, where=f"{origin.of('benchmarks')}: key 'benchmarks'")
                                         for name in suite.benchmarks if ":" in name}}
    check("benchmark", "benchmarks", suite.benchmarks, benchmarks)
    for name in suite.eval.caps:
        check("benchmark", f"eval.caps.{name}", [name], benchmarks)
    check("judge", "eval.judge", [suite.eval.judge], JUDGES)
    check("benchmark", "eval.final_only", suite.eval.final_only, benchmarks)
    check_final_only(suite, origin)
    for name in suite.methods:
        resolve_method(name, where=f"{origin.of('methods')}: key 'methods'")
    for name, fields in suite.method_configs.items():
        where = origin.of(f"method_configs.{name}")
        if name not in suite.methods:
            raise ConfigError(f"{where}: key 'method_configs.{name}' configures a method that is not in 'methods'. "
                              f"Fix: add it to methods or remove the block.")
        resolve_method(name, where=where).make_config(fields, where=f"{where}: key 'method_configs.{name}'")


def check_final_only(suite: SuiteConfig, origin: Origin) -> None:
    """``eval.final_only`` names no benchmark that a composite is built from (a composite needs its
    parts at every step). A name the suite does not run is allowed: a preset's schedule applies to
    the suites that include it and run that benchmark."""
    from benchmarks.composite import COMPOSITE_PARTS

    parts = set().union(*COMPOSITE_PARTS.values())
    for name in suite.eval.final_only:
        if name in parts:
            raise ConfigError(f"{origin.of('eval.final_only')}: key 'eval.final_only' names {name!r}, a part of a composite, "
                              f"which needs it at every step. Fix: remove it from eval.final_only.")
