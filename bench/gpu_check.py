"""GPU check: does the paper-scale path run, fit memory, and what does it cost, in minutes on one GPU.

``python -m bench.gpu_check`` (``make gpu-check``) measures, on a Llama-2-7B-shaped model built from
its config with random weights (no download) in bf16, through the harness's own code:

- ``steps``: a Standard LoRA and a SafeAnchor optimizer step of the one training loop
  (``harness.training.run_block``) at the paper's settings (r=16, alpha=32 on q/k/v/o, batch 8 x
  accum 2, sequence 512): seconds and peak GPU memory of each, and their ratio. SafeAnchor's step
  has its anchor KL and both projections; its in-domain SSI recomputes are off in the timed steps
  (they are the ``ssi`` figure).
- ``ssi``: ``SafeAnchor.before_domain`` (SSI of all 128 LoRA layers at N = 500, then the anchor
  stream): seconds, peak GPU memory and peak host memory (per-example gradients G live on the host,
  one layer at a time moves to the GPU).
- ``generation``: batched greedy decoding with a KV cache, 512 new tokens per prompt: tokens/s and
  the time one HarmBench evaluation (240 behaviours) takes at the suite's batch size; ``judge``:
  the same model shape as HarmBench's 13B classifier reading a behaviour + response (~1,024
  tokens) and writing its one-token verdict, for 240 responses.
- ``e2e``: the default suite (sequences/micro.yaml) end to end for one method with a few steps on
  the bench world (micro when cached, else tiny), so that every device and dtype path runs.

Every timing sits beside its compute bound: the step's FLOPs over the GPU's peak matrix FLOP/s
(measured here on an 8192^3 bf16 matrix product). FLOPs per token of a forward pass are
2 x (parameters) + 4 x layers x context x hidden (attention scores and values); a LoRA training
step is two forward passes' worth (the backward pass computes activation gradients only, the
frozen weights get none), SafeAnchor's adds its anchor KL (two more forward passes and a backward
on a half-size batch).

``--tiny`` runs the same code on CPU with tiny configs in well under a minute (tests/test_gpu_check.py).
The code path imports neither Ray, lm-eval nor datasets (the device machine has none of them);
pydantic, which the harness's settings need, travels as a wheel (docs/paper-scale.md).
Writes ``gpu-results.json`` and ``.md`` (``--tiny``: ``gpu-check-tiny.*``) into ``--out`` (bench/).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.common import REPO, peak_memory

HEAVY_MODULES = ("ray", "lm_eval", "datasets")  # absent on the device machine: never imported here

LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096}
LLAMA2_13B = {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40,
              "num_key_value_heads": 40, "vocab_size": 32000, "max_position_embeddings": 4096}
TINY_POLICY = {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 2, "vocab_size": 600, "max_position_embeddings": 512}
TINY_JUDGE = {**TINY_POLICY, "hidden_size": 96, "intermediate_size": 256, "num_hidden_layers": 3}
HARMBENCH_BEHAVIOURS = 240


@dataclass(frozen=True)
class Sizes:
    """How big to measure: the paper's sizes on a GPU, tiny ones on CPU (``--tiny``)."""

    policy: dict[str, int]
    judge: dict[str, int]
    batch_size: int = 8
    grad_accum: int = 2
    seq_len: int = 512
    timed_steps: int = 3
    ssi_n: int = 500
    ssi_seq_len: int = 128  # calibration turns (harmful request + refusal) are short
    eval_batch: int = 16  # sequences/paper.yaml's eval.batch_size
    prompt_len: int = 128
    new_tokens: int = 512
    judge_len: int = 1024
    matmul: int = 8192
    e2e_method: str = "safeanchor"
    e2e_steps: int = 4
    e2e_domains: tuple[str, ...] = ("medical", "legal", "code")  # the default suite's

    @classmethod
    def for_mode(cls, tiny: bool) -> Sizes:
        if not tiny:
            return cls(LLAMA2_7B, LLAMA2_13B)
        return cls(TINY_POLICY, TINY_JUDGE, batch_size=2, seq_len=64, timed_steps=2, ssi_n=12, ssi_seq_len=32,
                   eval_batch=4, prompt_len=16, new_tokens=16, judge_len=64, matmul=256,
                   e2e_method="standard_lora", e2e_steps=2, e2e_domains=("medical", "legal"))


# ---- device ----------------------------------------------------------------------------------------
def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable[[], Any]) -> tuple[float, Any]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, out


def reset_gpu_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def peak_flops(device: str, dtype: torch.dtype, n: int) -> float:
    """Matrix-product FLOP/s measured on an n^3 product (median of 5 after 2 warm-ups): the bound
    every figure is set beside."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    seconds = sorted(timed(device, lambda: a @ b)[0] for _ in range(5))[2]
    return 2 * n**3 / seconds


# ---- FLOPs -------------------------------------------------------------------------------------------
def forward_flops_per_token(shape: dict[str, int], params: int, context: int) -> float:
    return 2 * params + 4 * shape["num_hidden_layers"] * context * shape["hidden_size"]


def bound(flops: float, peak: float) -> dict[str, float]:
    return {"flops": flops, "compute_bound_s": flops / peak}


# ---- a synthetic tokenizer and synthetic chat turns --------------------------------------------------
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<user> {{ m['content'] }}"
                 "{% else %}<assistant> {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def word_tokenizer(vocab: int):
    """A real (fast) word-level tokenizer over ``vocab`` words w0, w1, ...: random weights need no
    real text, but the harness's batching needs a tokenizer with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>", "<user>", "<assistant>"]
    words = {token: i for i, token in enumerate(specials + [f"w{i}" for i in range(vocab - len(specials))])}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                        unk_token="<unk>", additional_special_tokens=["<user>", "<assistant>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def synthetic_turns(n: int, tokens: int, vocab: int, seed: int):
    """n chat turns of exactly ``tokens`` tokens each (prompt a quarter, response the rest)."""
    from harness.core.data import Example

    generator = torch.Generator().manual_seed(seed)
    words = torch.randint(6, vocab, (n, tokens), generator=generator).tolist()
    prompt_words = max(1, tokens // 4) - 3  # <bos> <user> ... <assistant>
    response_words = tokens - prompt_words - 4  # ... <eos>
    return [Example(" ".join(f"w{w - 6}" for w in row[:prompt_words]),
                    " ".join(f"w{w - 6}" for w in row[prompt_words : prompt_words + response_words]), "synthetic")
            for row in words]


# ---- models ----------------------------------------------------------------------------------------
def random_llama(shape: dict[str, int], device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A Llama of this shape with random weights, built on the device in ``dtype`` (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**shape, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def paper_settings(sizes: Sizes):
    from harness.core.settings import TrainSettings

    return TrainSettings(batch_size=sizes.batch_size, grad_accum=sizes.grad_accum, max_seq_len=sizes.seq_len,
                         lr=2e-4, schedule="constant", grad_clip=1.0)


def training_context(model: torch.nn.Module, tokenizer: Any, sizes: Sizes):
    from harness.core.context import TrainContext
    from harness.core.safety_data import CalibrationSet

    vocab = len(tokenizer)
    domain = synthetic_turns(4 * sizes.batch_size * sizes.grad_accum, sizes.seq_len, vocab, seed=1)
    calibration = CalibrationSet(tuple(synthetic_turns(sizes.ssi_n, sizes.ssi_seq_len, vocab, seed=2)),
                                 tuple(synthetic_turns(sizes.ssi_n, sizes.ssi_seq_len, vocab, seed=3)))
    return TrainContext(model, tokenizer, paper_settings(sizes), calibration, seed=0, domains=["synthetic"],
                        domain="synthetic", domain_index=0, domain_examples=domain)


# ---- sections --------------------------------------------------------------------------------------
def step_figures(ctx, method, sizes: Sizes, device: str) -> dict[str, Any]:
    """Seconds per optimizer step (after one warm-up step) and the peak GPU memory of the timed steps."""
    from harness.training import run_block

    run_block(ctx, method, ctx.domain_examples, 1, "warm-up")
    reset_gpu_peak(device)
    seconds, stats = timed(device, lambda: run_block(ctx, method, ctx.domain_examples, sizes.timed_steps, method.name))
    return {"step_s": seconds / sizes.timed_steps, "peak_gpu_gib": gpu_peak_gib(device), "loss_last": stats["loss_last"]}


def safeanchor_for_check(sizes: Sizes):
    from methods.safeanchor import SafeAnchor, SafeAnchorConfig

    # CSM needs a refusal probe (generation), measured in `generation`; the report's domain spectra
    # are an after-domain extra. In-domain recomputes are SSI, timed in `ssi`.
    return SafeAnchor(SafeAnchorConfig(calibration_size=sizes.ssi_n, recompute_first=0, recompute_every=0,
                                       report_spectrum=False))


def measure_policy(sizes: Sizes, device: str, dtype: torch.dtype, peak: float) -> dict[str, Any]:
    """Training steps, SSI and generation on the policy-shaped model (built once)."""
    from harness.core.adapters import attach_adapter
    from methods.standard_lora import StandardLoRA

    tokenizer = word_tokenizer(min(sizes.policy["vocab_size"], 30000))
    model = random_llama(sizes.policy, device, dtype)
    base_params = parameter_count(model)
    model = attach_adapter(model, paper_settings(sizes), seed=0)
    ctx = training_context(model, tokenizer, sizes)
    lora_layers = sum(1 for n, p in model.named_parameters() if p.requires_grad and "lora_A" in n)
    tokens_per_step = sizes.batch_size * sizes.grad_accum * sizes.seq_len
    train_flops = 2 * tokens_per_step * forward_flops_per_token(sizes.policy, base_params, sizes.seq_len)
    out: dict[str, Any] = {"shape": sizes.policy, "parameters": base_params, "lora_layers": lora_layers,
                           "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}

    standard = step_figures(ctx, StandardLoRA(), sizes, device)
    standard.update(bound(train_flops, peak), tokens_per_s=tokens_per_step / standard["step_s"])
    method = safeanchor_for_check(sizes)
    with torch.no_grad():  # as after a domain's first update: B != 0, so lora_A's gradients are not all zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=1e-3)
    out["ssi"] = ssi_figures(ctx, method, sizes, device, base_params, peak)
    anchor_tokens = method.anchor_batch_size(ctx.settings) * sizes.ssi_seq_len * sizes.grad_accum
    safeanchor = step_figures(ctx, method, sizes, device)
    anchor_flops = 3 * anchor_tokens * forward_flops_per_token(sizes.policy, base_params, sizes.ssi_seq_len)
    safeanchor.update(bound(train_flops + anchor_flops, peak),
                      tokens_per_s=tokens_per_step / safeanchor["step_s"])
    out["steps"] = {"tokens_per_step": tokens_per_step, "standard_lora": standard, "safeanchor": safeanchor,
                    "safeanchor_over_standard": safeanchor["step_s"] / standard["step_s"],
                    "peak_gpu_ratio": (safeanchor["peak_gpu_gib"] / standard["peak_gpu_gib"]) if device == "cuda" else None}
    out["generation"] = generation_figures(model, sizes, sizes.policy, base_params, sizes.prompt_len, sizes.new_tokens,
                                           device, peak)
    return out


def ssi_figures(ctx, method, sizes: Sizes, device: str, params: int, peak: float) -> dict[str, Any]:
    reset_gpu_peak(device)
    with peak_memory() as host:
        seconds, _ = timed(device, lambda: method.before_domain(ctx))
    ranks = [space.rank for space in method.current.values()]
    # Each example: a forward pass and a backward pass for activation gradients (~2 forward passes).
    flops = 2 * sizes.ssi_n * sizes.ssi_seq_len * forward_flops_per_token(sizes.policy, params, sizes.ssi_seq_len)
    p = 2 * sizes.policy["hidden_size"] * ctx.settings.lora.r
    return {"n": sizes.ssi_n, "lora_layers": len(ranks), "p_per_layer": p, "seconds": seconds,
            "peak_gpu_gib": gpu_peak_gib(device), "peak_host_extra_gib": host["extra_mib"] / 1024,
            "host_memory_how": host["how"], "g_all_layers_gib": len(ranks) * sizes.ssi_n * p * 4 / 2**30,
            "rank_k": {"min": min(ranks), "max": max(ranks), "mean": sum(ranks) / len(ranks)}, **bound(flops, peak)}


def generation_figures(model: torch.nn.Module, sizes: Sizes, shape: dict[str, int], params: int, prompt_len: int,
                       new_tokens: int, device: str, peak: float) -> dict[str, Any]:
    """One batch of ``eval_batch`` prompts, greedy with a KV cache; every row runs to ``new_tokens``
    (random weights would stop at a random EOS otherwise)."""
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(6, shape["vocab_size"], (sizes.eval_batch, prompt_len), generator=generator).to(device)
    mask = torch.ones_like(ids)

    def generate() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  do_sample=False, use_cache=True, pad_token_id=0)

    with torch.no_grad():  # kernel selection before the timed batch
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=0)
    reset_gpu_peak(device)
    seconds, out = timed(device, generate)
    generated = (out.shape[1] - prompt_len) * sizes.eval_batch
    context = prompt_len + new_tokens // 2  # mean context while decoding
    flops = sizes.eval_batch * (prompt_len + new_tokens) * forward_flops_per_token(shape, params, context)
    batches = math.ceil(HARMBENCH_BEHAVIOURS / sizes.eval_batch)
    return {"batch": sizes.eval_batch, "prompt_len": prompt_len, "new_tokens": new_tokens, "seconds": seconds,
            "tokens_per_s": generated / seconds, "peak_gpu_gib": gpu_peak_gib(device),
            "harmbench_240_s": batches * seconds, **bound(flops, peak),
            "harmbench_240_compute_bound_s": batches * flops / peak}


def measure_judge(sizes: Sizes, device: str, dtype: torch.dtype, peak: float) -> dict[str, Any]:
    """A 13B-shaped classifier reading one behaviour + response and writing its one-token verdict."""
    model = random_llama(sizes.judge, device, dtype)
    params = parameter_count(model)
    figures = generation_figures(model, sizes, sizes.judge, params, sizes.judge_len, 1, device, peak)
    figures["tokens_read_per_s"] = sizes.eval_batch * sizes.judge_len / figures["seconds"]
    del model
    return {"shape": sizes.judge, "parameters": params, **figures}


def measure_e2e(sizes: Sizes, tiny: bool) -> dict[str, Any]:
    """The default suite for one method, a few steps per domain, HarmBench only, into a temporary
    results folder: every device and dtype path of a run."""
    from bench.common import bench_world
    from harness.core.store import ResultStore
    from harness.orchestration.config import load_suite
    from harness.orchestration.scheduler import execute_job, job_graph

    handle = bench_world(tiny)
    overrides = {"model": handle.name, "methods": [sizes.e2e_method], "benchmarks": ["harmbench"],
                 "domains": list(sizes.e2e_domains), "training": {"max_steps": sizes.e2e_steps},
                 "eval": {"caps": {"harmbench": 16}}}
    if sizes.e2e_method == "safeanchor":
        overrides["method_configs"] = {
            "safeanchor": {"calibration_size": 64, "probe_size": 16, "repair_steps": 2, "spectrum_top": 4}}
    suite = load_suite(REPO / "sequences" / "micro.yaml", overrides)
    with tempfile.TemporaryDirectory() as results:
        seconds, outcome = timed("cpu", lambda: execute_job(suite, handle, job_graph(suite)[0], results))
        points = len(ResultStore(results, create=False).step_extras(outcome["run_id"]))
    if outcome["status"] != "done":
        raise RuntimeError(f"the end-to-end run failed: {outcome['error']}")
    return {"world": handle.name, "method": sizes.e2e_method, "domains": suite.domains, "steps_per_domain": sizes.e2e_steps,
            "seconds": seconds, "status": outcome["status"], "evaluation_points": points}


# ---- the check -------------------------------------------------------------------------------------
def throughput(sections: dict[str, Any]) -> dict[str, float] | None:
    """What `erosion plan` reads (harness/orchestration/plan.py): Standard LoRA training tokens/s and
    batched greedy generated tokens/s of the 7B shape."""
    policy = sections.get("policy", {})
    if "steps" not in policy:
        return None
    return {"train_tokens_per_s": policy["steps"]["standard_lora"]["tokens_per_s"],
            "generated_tokens_per_s": policy["generation"]["tokens_per_s"]}


def run_check(tiny: bool) -> dict[str, Any]:
    device = "cpu" if tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu_check: no CUDA device. "
                         "Fix: run it on a machine with a GPU, or pass --tiny for the CPU check.")
    dtype = torch.float32 if tiny else torch.bfloat16
    sizes = Sizes.for_mode(tiny)
    started = time.time()
    peak = peak_flops(device, dtype, sizes.matmul)
    sections: dict[str, Any] = {}
    for name, measure in (("policy", lambda: measure_policy(sizes, device, dtype, peak)),
                          ("judge", lambda: measure_judge(sizes, device, dtype, peak)),
                          ("e2e", lambda: measure_e2e(sizes, tiny))):
        start = time.time()
        try:
            sections[name] = measure()
        except Exception:  # one failing part is recorded; the others still run
            sections[name] = {"error": traceback.format_exc()}
        sections[name]["wall_s"] = time.time() - start
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    import transformers

    return {"tiny": tiny, "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "dtype": str(dtype),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": time.time() - started,
            "peak_matmul_flops": peak, "sizes": asdict(sizes), "sections": sections, "throughput": throughput(sections),
            "heavy_modules_imported": sorted(m for m in HEAVY_MODULES if sys.modules.get(m) is not None)}


def _row(what: str, value: str, figures: dict[str, Any], seconds_key: str) -> str:
    bound_s = figures.get("compute_bound_s")
    share = f"{bound_s / figures[seconds_key]:.0%} of bound" if bound_s and figures.get(seconds_key) else ""
    return f"| {what} | {value} | {bound_s:.3g} s | {share} |" if bound_s else f"| {what} | {value} | | |"


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# GPU check ({'tiny, CPU: numbers mean nothing' if results['tiny'] else results['device']})", "",
             f"{results['finished_at']}, torch {results['torch']}, transformers {results['transformers']}, {results['dtype']}, "
             f"wall {results['wall_s']:.0f} s, peak matrix product {results['peak_matmul_flops'] / 1e12:.1f} TFLOP/s", "",
             "| figure | value | compute bound | achieved |", "|---|---|---|---|"]
    sections = results["sections"]
    policy, judge, e2e = sections.get("policy", {}), sections.get("judge", {}), sections.get("e2e", {})
    if "steps" in policy:
        steps, ssi, gen = policy["steps"], policy["ssi"], policy["generation"]
        for name in ("standard_lora", "safeanchor"):
            fig = steps[name]
            memory = f", peak {fig['peak_gpu_gib']:.1f} GiB" if fig["peak_gpu_gib"] is not None else ""
            lines.append(_row(f"{name} step (batch {results['sizes']['batch_size']} x accum {results['sizes']['grad_accum']} x "
                              f"{results['sizes']['seq_len']})", f"{fig['step_s']:.3f} s{memory}", fig, "step_s"))
        lines.append(f"| SafeAnchor / Standard LoRA step | {steps['safeanchor_over_standard']:.2f}x time"
                     + (f", {steps['peak_gpu_ratio']:.2f}x memory" if steps["peak_gpu_ratio"] else "") + " | | |")
        gpu = f", peak GPU {ssi['peak_gpu_gib']:.1f} GiB" if ssi["peak_gpu_gib"] is not None else ""
        lines.append(_row(f"SSI, {ssi['lora_layers']} LoRA layers, N={ssi['n']}",
                          f"{ssi['seconds']:.1f} s{gpu}, host +{ssi['peak_host_extra_gib']:.1f} GiB", ssi, "seconds"))
        lines.append(_row(f"generation, batch {gen['batch']} x {gen['new_tokens']} new tokens",
                          f"{gen['tokens_per_s']:.0f} tokens/s; HarmBench (240): {gen['harmbench_240_s']:.0f} s", gen, "seconds"))
    if "seconds" in judge:
        lines.append(_row(f"judge (13B shape), batch {judge['batch']} x {judge['prompt_len']} tokens read",
                          f"{judge['tokens_read_per_s']:.0f} tokens/s read; HarmBench (240): {judge['harmbench_240_s']:.0f} s",
                          judge, "seconds"))
    if "seconds" in e2e:
        lines.append(f"| end to end: {e2e['method']} on {e2e['world']}, {e2e['steps_per_domain']} steps x "
                     f"{len(e2e['domains'])} domains | {e2e['seconds']:.0f} s, {e2e['status']} | | |")
    for name, section in sections.items():
        if "error" in section:
            lines += ["", f"**{name} failed**:", "```", section["error"].strip(), "```"]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    from harness.core.store import atomic_write_text

    stem = "gpu-check-tiny" if results["tiny"] else "gpu-results"
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
    atomic_write_text(md_path, markdown(results))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="the same code on CPU with tiny configs (seconds; numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=REPO / "bench", help="folder for the .json and .md (default: bench/)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    results = run_check(args.tiny)
    json_path, md_path = write(results, args.out)
    print(markdown(results))
    print(f"wrote {json_path} and {md_path}")
    return 1 if any("error" in s for s in results["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
