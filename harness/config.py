"""Suite configuration: YAML files in ``sequences/``, validated on load.

A suite names a model preset, an ordered list of domains, the methods, seeds and benchmarks, and
the training/evaluation settings. ``include:`` pulls in other YAML files (a preset name such as
``micro`` means ``sequences/micro.yaml``); later keys override earlier ones, dictionaries merge
key by key. ``orderings: all`` expands the domain list into every permutation (3! = 6 for three
domains) so no user copies six files.

Every error names the file, the key and the fix, and is raised as :class:`ConfigError`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError

SEQUENCES_DIR = Path(__file__).resolve().parent.parent / "sequences"
PRESETS_DIR = SEQUENCES_DIR / "presets"  # fragments to include (scale settings), not suites
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSettings(Strict):
    """PEFT LoraConfig fields we expose (the paper: r=16, alpha=32 on q/k/v/o)."""

    r: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @field_validator("target_modules")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in LORA_TARGETS]
        if unknown or not value:
            raise ValueError(f"unknown target module(s) {unknown}; choose from {list(LORA_TARGETS)}")
        return value


class TrainSettings(Strict):
    """One domain's LoRA fine-tuning (paper: AdamW(0.9, 0.999, wd 0.01), 2e-4 cosine, 8 x 2)."""

    lora: LoraSettings = LoraSettings()
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(2, gt=0)
    examples_per_domain: int = Field(5000, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="cap on optimizer steps per domain (micro scale)")
    max_seq_len: int = Field(512, ge=16)
    grad_clip: float | None = Field(1.0, gt=0)
    adapter_policy: Literal["merge_per_domain", "persistent"] = "merge_per_domain"


class EvalSettings(Strict):
    """Evaluation sizes: micro scale evaluates fixed subsets, paper scale full sets (cap None)."""

    caps: dict[str, int | None] = Field(default_factory=dict)
    max_new_tokens: int = Field(512, gt=0)
    batch_size: int = Field(16, gt=0)
    judge: str = Field("refusal", description="judge of responses to harmful requests: refusal, harmbench-cls, llama-guard")
    judge_model: str | None = Field(None, description="local folder or hub id of a classifier judge's weights (default: the judge's own)")


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
        relevant = self.model_dump(exclude={"name", "methods", "seeds", "orderings", "max_retries"})
        return stable_hash(relevant)


def stable_hash(payload: Any, length: int = 12) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


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
    raw = with_method_defaults(deep_merge(load_raw(path), overrides or {}), path)
    try:
        suite = SuiteConfig.model_validate(raw)
    except ValidationError as err:
        raise _explain(path, err) from None
    validate_names(suite, path)
    return suite


def with_method_defaults(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """``method_defaults`` (a scale preset's per-method settings, e.g. sequences/presets/scale-micro.yaml)
    become the ``method_configs`` of the methods the suite runs; the suite's own method_configs win.
    Methods the suite does not run take nothing from them (nor does the config hash)."""
    defaults = raw.pop("method_defaults", None) or {}
    if not isinstance(defaults, dict) or not all(isinstance(v, dict) for v in defaults.values()):
        raise ConfigError(f"{path}: key 'method_defaults' must map method names to their fields. Fix: e.g. method_defaults: {{vaccine: {{epochs: 8}}}}.")
    methods = raw.get("methods", SuiteConfig.model_fields["methods"].get_default(call_default_factory=True))
    configs = raw.get("method_configs") or {}
    if not (isinstance(methods, list) and isinstance(configs, dict)):
        return raw  # malformed: validation names the key
    configs = dict(configs)
    for name in methods:
        if isinstance(name, str) and name in defaults and isinstance(configs.get(name) or {}, dict):
            configs[name] = deep_merge(defaults[name], configs.get(name) or {})
    if configs:
        raw["method_configs"] = configs
    return raw


def validate_names(suite: SuiteConfig, path: Path) -> None:
    """Unknown method/benchmark/domain/model names fail at load time, not hours into a run."""
    from benchmarks import BENCHMARKS
    from benchmarks.judges import JUDGES
    from harness.domains import DOMAINS
    from harness.models import PRESETS
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
