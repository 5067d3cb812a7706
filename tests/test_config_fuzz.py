"""Property: mutating a valid suite YAML either still loads or raises the project's ConfigError,
never another exception."""
from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import ConfigError
from harness.orchestration.config import load_suite

REPO = Path(__file__).resolve().parent.parent
BASE = yaml.safe_load((REPO / "sequences" / "micro.yaml").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=12))
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
paths = st.sampled_from([
    ("name",), ("domains",), ("methods",), ("seeds",), ("benchmarks",), ("orderings",), ("model",), ("include",),
    ("training",), ("training", "lr"), ("training", "max_steps"), ("training", "lora"), ("training", "lora", "r"),
    ("training", "lora", "target_modules"), ("eval",), ("eval", "caps"), ("method_configs",), ("threads_per_run",), ("surprise",),
])


def mutate(document: dict, path: tuple[str, ...], value: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(document))
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=paths, value=values)
def test_mutated_suites_load_or_raise_config_error(tmp_path: Path, path: tuple[str, ...], value: object) -> None:
    target = tmp_path / "fuzz.yaml"
    target.write_text(yaml.safe_dump(mutate(BASE, path, value)))
    try:
        load_suite(target)
    except ConfigError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_arbitrary_text_loads_or_raises_config_error(tmp_path: Path, text: str) -> None:
    target = tmp_path / "fuzz.yaml"
    target.write_text(text)
    try:
        load_suite(target)
    except ConfigError:
        pass
