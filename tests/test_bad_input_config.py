"""The bad-input catalogue of docs/reliability.md for suites, ``--set``, method modules and command
flags, row by row: exit code 2, one paragraph naming the file (or flag), the key and the fix, no
traceback, nothing written. The CLI runs in this process (``harness.cli.main``), as a user's shell
would run it, so the whole catalogue takes seconds."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from cli_in_process import run_cli

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny-suite.yaml"
BASE = "name: x\ndomains: [medical]\n"


def erosion(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    result = run_cli(capsys, *args)
    return result.returncode, result.stderr


def assert_one_paragraph(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Fix" in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def alias_bomb() -> str:
    """Six levels of ten aliases: a million values once expanded, a few hundred bytes written."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    return "\n".join(levels) + "\n" + BASE


SUITE_MISTAKES = {
    # YAML itself
    "duplicate-key": (BASE + "name: y\n", ["line 3, column 1", "key 'name' is given twice (first at line 1)", "delete one"]),
    "duplicate-nested-key": (BASE + "training: {lr: 1.0e-3, lr: 2.0e-3}\n", ["key 'lr' is given twice"]),
    "unclosed-bracket": ("name: x\ndomains: [medical,\n  legal\nseeds: [0]\n",
                         ["line 2, column 10: the '[' opened here is never closed", "at line 4, column 6"]),
    "unclosed-quote": ('name: "x\ndomains: [medical]\n', ["line 1, column 7: the double quote opened here is never closed"]),
    "control-character": ("name: x\x07\ndomains: [medical]\n", ["line 1, column 8", "#x07", "control character"]),
    "yaml-tag": ("name: !!python/object:os.system x\ndomains: [medical]\n", ["python/object:os.system", "remove the tag"]),
    "alias-bomb": (alias_bomb(), ["more than 100,000 values once its aliases", "write the values out"]),
    "deep-nesting": ("name: x\ndomains: " + "[" * 3000 + "]" * 3000 + "\n", ["nested more deeply", "flatten"]),
    "not-a-mapping": ("- a\n- b\n", ["top level must be a mapping", "got list"]),
    # values accepted silently before
    "epochs-inf": (BASE + "training: {epochs: .inf}\n", ["'training.epochs' = inf", "finite number"]),
    "lr-inf": (BASE + "training: {lr: .inf}\n", ["'training.lr' = inf", "finite number"]),
    "lr-too-large": (BASE + "training: {lr: 5}\n", ["'training.lr' = 5", "less than or equal to 1"]),
    "lr-a-word": (BASE + "training: {lr: fast}\n", ["'training.lr' = 'fast'", "valid number"]),
    "betas-nan-and-7": (BASE + "training: {betas: [.nan, 7]}\n",
                        ["'training.betas.0' = nan", "finite number", "'training.betas.1' = 7", "less than 1"]),
    "cap-zero": (BASE + "eval: {caps: {harmbench: 0}}\n", ["'eval.caps.harmbench' = 0", "greater than 0"]),
    "cap-negative": (BASE + "eval: {caps: {bbq: -1}}\n", ["'eval.caps.bbq' = -1", "greater than 0"]),
    "cap-misspelled-benchmark": (BASE + "eval: {caps: {harmbnch: 5}}\n",
                                 ["'eval.caps.harmbnch'", "unknown benchmark 'harmbnch'", "harmbench"]),
    "seed-huge": (BASE + "seeds: [100000000000000000000000000000]\n", ["'seeds.0'", "less than or equal to 2147483647"]),
    "seed-float": (BASE + "seeds: [1.0e+29]\n", ["'seeds.0' = 1e+29", "valid integer"]),
    "seed-negative": (BASE + "seeds: [-1]\n", ["'seeds.0' = -1", "greater than or equal to 0"]),
    "seed-quoted": (BASE + "seeds: ['3']\n", ["'seeds.0' = '3'", "valid integer"]),
    "max-steps-boolean": (BASE + "training: {max_steps: true}\n", ["'training.max_steps' = True", "valid integer"]),
    "max-new-tokens-huge": (BASE + "eval: {max_new_tokens: 100000000}\n",
                            ["'eval.max_new_tokens'", "less than or equal to 8192"]),
    "threads-per-run-huge": (BASE + "threads_per_run: 100000\n", ["'threads_per_run'", "less than or equal to 256"]),
    "lora-r-huge": (BASE + "training: {lora: {r: 1000000}}\n", ["'training.lora.r'", "less than or equal to 1024"]),
    "max-seq-len-huge": (BASE + "training: {max_seq_len: 10000000}\n", ["'training.max_seq_len'", "less than or equal to 32768"]),
    "too-many-runs": ("name: x\ndomains: [medical, legal, code, finance, math]\norderings: all\nseeds: ["
                      + ", ".join(map(str, range(100))) + "]\n", ["12,000 runs", "more than 10,000", "fewer domains"]),
    "empty-name": ('name: ""\ndomains: [medical]\n', ["'name' = ''", "at least 1 character"]),
    "domains-not-a-list": ("name: x\ndomains: medical\n", ["'domains' = 'medical'", "valid list"]),
    "method-config-nan": (BASE + "methods: [safeanchor]\nmethod_configs: {safeanchor: {rho: .nan}}\n",
                          ["method_configs.safeanchor", "'rho' = nan", "finite number"]),
    "method-config-for-absent-method": (BASE + "method_configs: {ewc: {}}\n", ["'method_configs.ewc'", "not in 'methods'"]),
    "include-not-a-name": (BASE + "include: [5]\n", ["key 'include' = [5]", "scale-micro"]),
    "include-missing": (BASE + "include: nothere\n", ["'nothere'", "neither a file"]),
    # method names
    "method-empty-module": (BASE + "methods: [':Foo']\n", ["':Foo'", "package.module:Class"]),
    "method-not-a-method": (BASE + "methods: ['os:sep']\n", ["'os:sep' is not a subclass of methods.base.Method"]),
    "method-module-missing": (BASE + "methods: ['no_such_pkg_zz:Foo']\n", ["cannot import method", "no_such_pkg_zz"]),
}


@pytest.mark.parametrize("name", list(SUITE_MISTAKES))
def test_suite_mistake(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, needles = SUITE_MISTAKES[name]
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    code, err = erosion(capsys, "run", str(path), "--results", str(tmp_path / "r"))
    assert_one_paragraph(code, err, str(path), *needles)
    assert not (tmp_path / "r").exists()


def test_include_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("include: b.yaml\n" + BASE)
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    code, err = erosion(capsys, "plan", str(tmp_path / "a.yaml"))
    assert_one_paragraph(code, err, "include cycle", "a.yaml -> ", "b.yaml")


def test_suite_file_that_cannot_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_paragraph(*erosion(capsys, "plan", str(tmp_path)), str(tmp_path), "cannot be read as a YAML text file")
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    assert_one_paragraph(*erosion(capsys, "plan", str(binary)), str(binary), "cannot be read as a YAML text file")
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "#" * 1_100_000 + "\n")
    assert_one_paragraph(*erosion(capsys, "plan", str(big)), str(big), "more than a suite file's 1,000,000")


def test_numbers_in_exponent_form_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 2e-4 as the string '2e-4'; now that strings are refused it must be a float."""
    from harness.orchestration.config import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text(BASE + "training: {lr: 2e-4, betas: [0.9, 9.99e-1]}\n")
    assert load_suite(path).training.lr == pytest.approx(2e-4)
    assert load_suite(path).training.betas == (0.9, pytest.approx(0.999))


# ---- --set ----------------------------------------------------------------------------------------
SET_MISTAKES = {
    "set-unclosed-bracket": ("training.max_steps=[1",
                             ["--set training.max_steps: the value '[1'", "'[' opened here is never closed"]),
    "set-yaml-tag": ("training.max_steps=!!python/object:os.system x", ["--set training.max_steps", "remove the tag"]),
    "set-empty-value": ("training.max_steps=", ["no value after '='", "training.max_steps=null"]),
    "set-no-equals": ("training.max_steps", ["expected KEY=VALUE"]),
    "set-empty-key-part": ("training..lr=1", ["expected KEY=VALUE with a dotted KEY"]),
    "set-bad-value": ("training.lr=abc", ["error: --set training.lr (on ", "'training.lr' = 'abc'", "valid number"]),
    "set-unknown-key": ("training.nope=1", ["error: --set training.nope (on ", "unknown key 'training.nope'", "max_steps"]),
    "set-unknown-method": ("methods=[nope]", ["--set methods (on ", "Unknown method 'nope'", "standard_lora"]),
    "set-duplicate-key": ("eval={judge: refusal, judge: gpt4}", ["--set eval", "key 'judge' is given twice"]),
}


@pytest.mark.parametrize("name", list(SET_MISTAKES))
def test_set_mistake(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pair, needles = SET_MISTAKES[name]
    code, err = erosion(capsys, "run", str(TINY), "--set", pair, "--results", str(tmp_path / "r"))
    assert_one_paragraph(code, err, *needles)
    assert not (tmp_path / "r").exists()


def test_set_on_a_key_an_earlier_set_gave_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = erosion(capsys, "plan", str(TINY), "--set", "training=5", "--set", "training.lr=1")
    assert_one_paragraph(code, err, "--set 'training.lr=1'", "an earlier --set gave 'training' a value")


def test_set_null_is_the_explicit_way_to_unset(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import parse_overrides

    assert parse_overrides(["training.max_steps=null"]) == {"training": {"max_steps": None}}
    assert parse_overrides(["training.lr=2e-4"]) == {"training": {"lr": 2e-4}}


# ---- user method modules ----------------------------------------------------------------------
METHOD_MODULES = {
    "method-module-raises": ("raise RuntimeError('no GPU here')\n",
                             ["raised RuntimeError: no GPU here", 'python -c "import {module}"']),
    "method-module-syntax-error": ("def broken(:\n", ["SyntaxError", "{module}.py, line 1", "correct that line"]),
    "method-module-exits-0": ("import sys\nsys.exit(0)\n", ["called sys.exit(0)", "__main__"]),
    "method-module-exits-3": ("raise SystemExit(3)\n", ["called sys.exit(3)"]),
}


@pytest.mark.parametrize("name", list(METHOD_MODULES))
def test_method_module_that_fails_on_import(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source, needles = METHOD_MODULES[name]
    module = f"user_method_{name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = tmp_path / "suite.yaml"
    suite.write_text(BASE + f"methods: ['{module}:Mine']\n")
    code, err = erosion(capsys, "run", str(suite), "--results", str(tmp_path / "r"))
    assert_one_paragraph(code, err, str(suite), "key 'methods'", *(n.format(module=module) for n in needles))
    assert not (tmp_path / "r").exists()


# ---- command flags ----------------------------------------------------------------------------
def test_prefetch_into_a_file_or_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_paragraph(*erosion(capsys, "prefetch", "--data-dir", str(afile), "--mirror", str(data_dir)),
                         f"--data-dir {afile}", "is a file, not a folder")
    assert_one_paragraph(*erosion(capsys, "prefetch", "--data-dir", str(afile / "sub"), "--mirror", str(data_dir)),
                         f"--data-dir {afile / 'sub'}", "is a file, not a folder")
    assert_one_paragraph(*erosion(capsys, "prefetch", "--data-dir", str(tmp_path / "d"), "--mirror", str(afile)),
                         f"--mirror {afile}", "not a folder")
    assert_one_paragraph(*erosion(capsys, "prefetch", "nope", "--data-dir", str(tmp_path / "d"), "--mirror", str(data_dir)),
                         "unknown dataset 'nope'", "harmbench")
    assert afile.read_text() == "x" and not (tmp_path / "d").exists()


@pytest.mark.parametrize("flag, value, needle", [
    ("--cap", "0", "argument --cap: 0 is outside 1..10,000,000"),
    ("--cap", "-5", "argument --cap: -5 is outside 1..10,000,000"),
    ("--max-new-tokens", "100000000", "argument --max-new-tokens: 100000000 is outside 1..8,192"),
    ("--max-new-tokens", "many", "argument --max-new-tokens: 'many' is not an integer"),
], ids=["cap-zero", "cap-negative", "max-new-tokens-huge", "max-new-tokens-a-word"])
def test_evaluate_flag_out_of_range(flag: str, value: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = erosion(capsys, "evaluate", flag, value)
    assert code == 2 and needle in err and "Traceback" not in err


def unused_port() -> int:
    """A port nothing listens on: bound, read, released (nothing else on this machine takes it back in a second)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"], ids=["gcs-address", "ray-client"])
def test_address_with_nothing_listening_fails_fast_and_writes_nothing(
        scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"{scheme}127.0.0.1:{unused_port()}"
    started = time.monotonic()
    code, err = erosion(capsys, "run", str(TINY), "--results", str(tmp_path / "r"), "--address", address)
    assert time.monotonic() - started < 30
    assert_one_paragraph(code, err, f"--address '{address}'", "no Ray cluster answers", "ray start --head")
    assert not (tmp_path / "r").exists()


def test_address_that_is_not_an_address(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, err = erosion(capsys, "run", str(TINY), "--results", str(tmp_path / "r"), "--address", "headnode")
    assert_one_paragraph(code, err, "--address 'headnode'", "expected ray://HOST:PORT")
    assert not (tmp_path / "r").exists()


def test_evaluate_checks_names_and_output_before_any_model_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = erosion(capsys, "evaluate", "--benchmarks", "harmbench", "nope", "--out", str(tmp_path / "e"))
    assert_one_paragraph(code, err, "Unknown benchmark 'nope'", "truthfulqa")
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = erosion(capsys, "evaluate", "--benchmarks", "harmbench", "--out", str(afile))
    assert_one_paragraph(code, err, f"--out {afile}", "is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_data_file_with_a_control_character_names_line_and_column(tmp_path: Path) -> None:
    from harness.core.data import read_jsonl
    from harness.core.errors import DataError

    path = tmp_path / "test.jsonl"
    path.write_text('{"q": "fine"}\n{"q": "bell\x07"}\n')
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert str(err.value) == (f"{path}: line 2 is not valid JSON (Invalid control character at column 12). "
                              f"Fix: re-run `erosion prefetch --force`.")
