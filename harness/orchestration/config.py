"""Suite configuration: YAML files in ``sequences/``, validated on load.

A suite names a model preset, an ordered list of domains, the methods, seeds and benchmarks, and
the training/evaluation settings. ``include:`` pulls in other YAML files (a preset name such as
``micro`` means ``sequences/micro.yaml``); later keys override earlier ones, dictionaries merge
key by key. ``orderings: all`` expands the domain list into every permutation (3! = 6 for three
domains) so no user copies six files.

Every error names the file, the key and the fix, and is raised as :class:`ConfigError`.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from harness.core.errors import ConfigError
from harness.core.hashing import stable_hash
from harness.core.settings import EvalSettings, Strict, TrainSettings

SEQUENCES_DIR = Path(__file__).resolve().parents[2] / "sequences"
PRESETS_DIR = SEQUENCES_DIR / "presets"  # fragments to include (scale settings), not suites
class SuiteConfig(Strict):
    name: str
    model: str = "micro"
    domains: list[str]
    orderings: Literal["given", "all"] = "given"
    methods: list[str] = Field(default_factory=lambda: ["standard_lora"])
    method_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0])
    benchmarks: list[str] = Field(default_factory=lambda: ["harmbench", "truthfulqa", "bbq"])
    training: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()
    threads_per_run: int = Field(1, gt=0)
    num_gpus_per_run: float = Field(1.0, ge=0)
    max_retries: int = Field(1, ge=0)
    keep_models: bool = Field(False, description="also keep the full model after the last domain (adapters are always kept)")

    @field_validator("domains", "methods", "seeds", "benchmarks")
    @classmethod
    def _non_empty_unique(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("must not be empty")
        if len(set(value)) != len(value):
            raise ValueError(f"has duplicates: {value}")
        return value

    def domain_orderings(self) -> list[list[str]]:
        if self.orderings == "all":
            return [list(p) for p in itertools.permutations(self.domains)]
        return [list(self.domains)]

    def config_hash(self) -> str:
        """Hash of everything that changes a run's numbers (names of methods/seeds excluded)."""
        relevant = self.model_dump(exclude={"name", "methods", "seeds", "orderings", "max_retries", "keep_models"})
        return stable_hash(relevant)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_include(name: str, relative_to: Path) -> Path:
    candidates = [relative_to.parent / name] + [folder / f for folder in (SEQUENCES_DIR, PRESETS_DIR) for f in (name, f"{name}.yaml")]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        f"{relative_to}: key 'include' names {name!r}, which is neither a file next to it nor a "
        f"suite or preset in {SEQUENCES_DIR}. Fix: give a path or one of: "
        f"{', '.join(sorted(p.stem for folder in (SEQUENCES_DIR, PRESETS_DIR) for p in folder.glob('*.yaml')))}."
    )


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Suite file {path} does not exist. Fix: check the path (shipped suites are in sequences/).") from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read as a YAML text file ({err}). Fix: pass a .yaml file.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"{path}: malformed YAML{where}: {problem}. Fix: check indentation and that every "
            f"'key: value' pair is on its own line (a YAML linter shows the exact spot)."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (name:, domains:, ...), got {type(data).__name__}.")
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
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: key 'include' must be a file/preset name or a list of them.")
    merged: dict[str, Any] = {}
    for name in includes:
        merged = deep_merge(merged, load_raw(_resolve_include(name, path), _seen + (path,)))
    return deep_merge(merged, data)


def _explain(path: Path, err: ValidationError) -> ConfigError:
    lines = []
    for problem in err.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        if problem["type"] == "extra_forbidden":
            valid = _valid_keys_at(problem["loc"][:-1])
            lines.append(f"unknown key '{key}'. Fix: remove it or use one of: {', '.join(valid)}")
        elif problem["type"] == "missing":
            lines.append(f"key '{key}' is required. Fix: add it")
        else:
            value = problem.get("input")
            lines.append(f"key '{key}' = {value!r}: {problem['msg']}. Fix: change the value")
    return ConfigError(f"{path}: " + "; ".join(lines) + ".")


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
    """Load, merge includes, apply overrides, validate names against the registries."""
    path = Path(path)
    raw = deep_merge(load_raw(path), overrides or {})
    try:
        suite = SuiteConfig.model_validate(raw)
    except ValidationError as err:
        raise _explain(path, err) from None
    validate_names(suite, path)
    return suite


def validate_names(suite: SuiteConfig, path: Path) -> None:
    """Unknown method/benchmark/domain/model names fail at load time, not hours into a run."""
    from benchmarks import BENCHMARKS
    from benchmarks.judges import JUDGES
    from harness.core.domains import DOMAINS
    from harness.orchestration.presets import PRESETS
    from methods import resolve_method

    def check(kind: str, key: str, names: list[str], known: dict[str, Any]) -> None:
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"{path}: key '{key}' names unknown {kind} {name!r}. "
                    f"Fix: use one of: {', '.join(sorted(known))}."
                )

    check("model preset", "model", [suite.model], PRESETS)
    check("domain", "domains", suite.domains, DOMAINS)
    check("benchmark", "benchmarks", suite.benchmarks, BENCHMARKS)
    check("judge", "eval.judge", [suite.eval.judge], JUDGES)
    for name in suite.methods:
        resolve_method(name, where=f"{path}: key 'methods'")
    for name, fields in suite.method_configs.items():
        if name not in suite.methods:
            raise ConfigError(f"{path}: key 'method_configs.{name}' configures a method that is not in 'methods'. Fix: add it to methods or remove the block.")
        resolve_method(name, where=f"{path}").make_config(fields, where=f"{path}: key 'method_configs.{name}'")
