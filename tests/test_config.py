"""Suite YAML loading: includes, orderings, and one clear error per kind of mistake."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.orchestration.config import load_suite

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "sequences").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_suite_loads(path: Path) -> None:
    suite = load_suite(path)
    assert suite.domains and suite.methods and suite.seeds


def test_include_merges_and_file_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "name: mine\ninclude: scale-micro\ndomains: [legal, code]\ntraining: {lr: 5.0e-4}\n")
    suite = load_suite(path)
    assert suite.training.lr == 5e-4
    assert suite.training.max_steps == 32  # from the included preset
    assert suite.training.lora.r == 16


def test_orderings_all_expands_to_every_permutation(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, "name: o\ndomains: [medical, legal, code]\norderings: all\n"))
    orders = suite.domain_orderings()
    assert len(orders) == 6 and len({tuple(o) for o in orders}) == 6


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ndomains: [medical, legal\nmethods: [standard_lora]\n")
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    message = str(err.value)
    assert str(path) in message and "line" in message and "Fix" in message


@pytest.mark.parametrize(
    "text, key",
    [
        ("name: x\ndomains: [medical]\ntraning: {lr: 1}\n", "traning"),
        ("name: x\ndomains: [medical]\ntraining: {max_steps: -3}\n", "training.max_steps"),
        ("name: x\ndomains: [medical]\ntraining: {lora: {target_modules: [q_proj, zz_proj]}}\n", "training.lora.target_modules"),
        ("name: x\ndomains: [medical]\nmethods: [no_such_method]\n", "methods"),
        ("name: x\ndomains: [astrology]\n", "domains"),
        ("name: x\ndomains: [medical]\nbenchmarks: [harmbench, nope]\n", "benchmarks"),
        ("name: x\ndomains: [medical]\nmodel: gpt-9\n", "model"),
        ("name: x\ndomains: []\n", "domains"),
        ("domains: [medical]\n", "name"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value) and "Fix" in str(err.value)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_suite(write(tmp_path, "- a\n- b\n"))


def test_config_hash_ignores_names_but_not_training(tmp_path: Path) -> None:
    a = load_suite(write(tmp_path, "name: a\ndomains: [medical]\n", "a.yaml"))
    b = load_suite(write(tmp_path, "name: b\ndomains: [medical]\nseeds: [3]\n", "b.yaml"))
    c = load_suite(write(tmp_path, "name: c\ndomains: [medical]\ntraining: {lr: 1.0e-3}\n", "c.yaml"))
    assert a.config_hash("standard_lora") == b.config_hash("standard_lora") != c.config_hash("standard_lora")


def test_config_hash_is_the_methods_whole_config_and_no_other_methods(tmp_path: Path) -> None:
    def suite(text: str, name: str):
        return load_suite(write(tmp_path, f"name: {name}\ndomains: [medical]\n{text}", f"{name}.yaml"))

    alone = suite("methods: [standard_lora]\n", "alone")
    board = suite("methods: [standard_lora, safeanchor]\nmethod_configs: {safeanchor: {lam: 0.4}}\n", "board")
    stated = suite("methods: [safeanchor]\nmethod_configs: {safeanchor: {lam: 0.5}}\n", "stated")
    implied = suite("methods: [safeanchor]\n", "implied")
    # Another method's config does not change Standard LoRA's run: two suites share it.
    assert board.config_hash("standard_lora") == alone.config_hash("standard_lora")
    # The whole config is hashed, defaults included: stating the default (lam 0.5) is the same run...
    assert stated.config_hash("safeanchor") == implied.config_hash("safeanchor")
    # ...and another value, or a variant row's label, is another run.
    assert board.config_hash("safeanchor") != implied.config_hash("safeanchor")
    assert implied.config_hash("safeanchor[lam=0.4]") != implied.config_hash("safeanchor")


def test_costliest_runs_start_first_and_the_plan_counts_their_cost() -> None:
    from harness.orchestration.plan import suite_cost
    from harness.orchestration.scheduler import job_graph, longest_first

    suite = load_suite(REPO / "sequences" / "micro.yaml")
    order = [job.method for job in longest_first(job_graph(suite))]
    # Vaccine (3.0), SafeAnchor (2.4), SafeGrad (1.15), EWC (1.1), the rest (1.0) in suite order, no_training (0.05).
    assert order == ["vaccine", "safeanchor", "safegrad", "ewc", "standard_lora", "olora", "safe_lora", "safety_interleaving",
                     "no_training"]
    # 4 x 1.0 + 1.1 + 1.15 + 3.0 + 2.4 + 0.05, by hand.
    assert suite_cost(job_graph(suite)) == pytest.approx(11.70)


def test_scale_preset_method_defaults_reach_only_the_methods_a_suite_runs(tmp_path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: x\ninclude: scale-micro\ndomains: [medical]\nmethods: [vaccine, ewc]\n"
                     "method_configs: {vaccine: {epochs: 2}}\n")
    loaded = load_suite(suite)
    assert loaded.method_configs["vaccine"] == {"examples": 1000, "epochs": 2, "batch_size": 8, "harmful_share": 0.5}
    assert set(loaded.method_configs) == {"vaccine"}  # no micro settings for ewc, none for methods not run
    alone = tmp_path / "alone.yaml"
    alone.write_text("name: y\ninclude: scale-micro\ndomains: [medical]\nmethods: [standard_lora]\n")
    assert load_suite(alone).method_configs == {}


def test_variant_rows_run_a_method_twice_under_two_configs(tmp_path) -> None:
    """``name[field=value, ...]`` is a method entry of its own: the scale's defaults of ``name``, then the
    label's fields, make its stored method_config; the label is the run's method (its row)."""
    from methods import build_method

    variant = "safeanchor[alpha_traces=relative, lam=2.5e-1]"
    text = f"name: x\ninclude: scale-micro\ndomains: [medical]\nmethods: [safeanchor, '{variant}']\n"
    loaded = load_suite(write(tmp_path, text))
    assert loaded.methods == ["safeanchor", variant]
    assert loaded.method_configs[variant] == {**loaded.method_configs["safeanchor"], "alpha_traces": "relative", "lam": 0.25}
    ours = build_method(variant, loaded.method_configs[variant])
    paper = build_method("safeanchor", loaded.method_configs["safeanchor"])
    assert (ours.config.alpha_traces, ours.config.lam, ours.config.calibration_size) == ("relative", 0.25, 200)
    assert (paper.config.alpha_traces, paper.config.lam) == ("raw", 0.5)
    assert build_method("safeanchor[lam=0.25]", {"lam": 0.75}).config.lam == 0.25  # the label wins
    for bad, message in (("safeanchor[lam]", "not one new field=value"), ("safeanchor[lam=-1]", "'lam' = -1"),
                         ("safeanchor[lam=1", "not of the form"), ("nosuch[lam=1]", "nosuch")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_suite(write(tmp_path, f"name: x\ndomains: [medical]\nmethods: ['{bad}']\n"))
