"""The GPU check's code on CPU (``--tiny``): every section runs through the harness's own code,
without Ray, lm-eval or datasets (the device machine has none), and its figures add up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BLOCKED = ["ray", "lm_eval", "datasets"]
# A module set to None in sys.modules cannot be imported: any import of one fails the check.
RUN_WITHOUT_HEAVY_MODULES = (f"import sys; sys.modules.update(dict.fromkeys({BLOCKED!r})); "
                             "from bench.gpu_check import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory: pytest.TempPathFactory, tiny_world) -> dict:
    out = tmp_path_factory.mktemp("gpu-check")
    result = subprocess.run([sys.executable, "-c", RUN_WITHOUT_HEAVY_MODULES, "--tiny", "--out", str(out)], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "gpu-check-tiny.md").read_text().startswith("# GPU check (tiny")
    return json.loads((out / "gpu-check-tiny.json").read_text())


@pytest.mark.slow
def test_every_section_runs_without_the_heavy_modules(tiny_check: dict) -> None:
    sections = tiny_check["sections"]
    assert tiny_check["tiny"] and tiny_check["heavy_modules_imported"] == []
    assert not [name for name, section in sections.items() if "error" in section]
    policy = sections["policy"]
    assert policy["lora_layers"] == 2 * 4  # two blocks x q/k/v/o
    assert policy["ssi"]["lora_layers"] == 8 and policy["ssi"]["n"] == 12 and policy["ssi"]["rank_k"]["min"] >= 1
    assert sections["e2e"]["status"] == "done" and sections["e2e"]["evaluation_points"] == 3  # start + 2 domains
    assert set(tiny_check["throughput"]) == {"train_tokens_per_s", "generated_tokens_per_s"}


@pytest.mark.slow
def test_figures_follow_their_formulas(tiny_check: dict) -> None:
    policy, peak = tiny_check["sections"]["policy"], tiny_check["peak_matmul_flops"]
    steps, shape = policy["steps"], policy["shape"]
    assert steps["tokens_per_step"] == 2 * 2 * 64  # batch 2 x accum 2 x sequence 64
    # A LoRA step: two forward passes per token of 2 x params + 4 x layers x context x hidden FLOPs.
    per_token = 2 * policy["parameters"] + 4 * shape["num_hidden_layers"] * 64 * shape["hidden_size"]
    standard = steps["standard_lora"]
    assert standard["flops"] == 2 * 256 * per_token
    assert standard["compute_bound_s"] == pytest.approx(standard["flops"] / peak)
    assert standard["tokens_per_s"] == pytest.approx(256 / standard["step_s"])
    assert steps["safeanchor_over_standard"] == pytest.approx(steps["safeanchor"]["step_s"] / standard["step_s"])
    assert steps["safeanchor"]["flops"] > standard["flops"]  # the anchor KL's passes on top
    generation = policy["generation"]
    assert generation["tokens_per_s"] == pytest.approx(4 * 16 / generation["seconds"])  # every row to 16 new tokens
    assert generation["harmbench_240_s"] == pytest.approx(60 * generation["seconds"])  # 240 behaviours / batch 4
    assert tiny_check["throughput"]["train_tokens_per_s"] == standard["tokens_per_s"]

