"""Target 6: on a GPU, the training step of a 7B-shaped LoRA layer stack in bf16.

A Llama with a 7B model's layer shapes (hidden 4096, MLP 11008, 32 heads; fewer blocks so it fits
any card) gets the harness's adapter (``attach_adapter``: r=16, alpha=32 on q/k/v/o) and steps
with ``lm_loss`` + AdamW on random token batches: step time and tokens/s. Without CUDA nothing is
measured and the target says so.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import Options, Target, summary
from harness.core.adapters import attach_adapter
from harness.core.losses import lm_loss
from harness.core.settings import TrainSettings

SHAPE_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_key_value_heads": 32,
            "vocab_size": 32000}


def lora_stack(shape: dict[str, int], layers: int, device: str, dtype: torch.dtype) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**shape, num_hidden_layers=layers, max_position_embeddings=4096)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    return attach_adapter(model, TrainSettings(), seed=0)


def step_times(model: torch.nn.Module, batch_size: int, seq_len: int, steps: int, device: str) -> list[float]:
    """Seconds per optimizer step (forward, backward, AdamW) on random tokens; the first step is
    dropped (kernel selection, allocator warm-up)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch_size, seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    model.train()
    times = []
    for _ in range(steps + 1):
        _synchronize(device)
        start = time.perf_counter()
        lm_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times[1:]


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def stack_throughput(shape: dict[str, int], layers: int, batch_size: int, seq_len: int, steps: int,
                     device: str, dtype: torch.dtype) -> dict[str, Any]:
    model = lora_stack(shape, layers, device, dtype)
    times = step_times(model, batch_size, seq_len, steps, device)
    median = summary(times)["median"]
    return {"shape": shape, "layers": layers, "batch_size": batch_size, "seq_len": seq_len, "dtype": str(dtype),
            "step_s": summary(times), "tokens_per_s": batch_size * seq_len / median,
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    what = "bf16 7B-shaped LoRA layer stack: training tokens/s"
    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no GPU"}, [Target("6", what, None, "tokens/s", "measured on a GPU", None, "no GPU")]
    section = {"measured": True, "device": torch.cuda.get_device_name(0),
               **stack_throughput(SHAPE_7B, options.pick(4, 1), options.pick(8, 1), options.pick(512, 64),
                                  options.pick(10, 2), "cuda", torch.bfloat16)}
    note = (f"{section['step_s']['median']:.3f} s/step, {section['layers']} blocks, "
            f"batch {section['batch_size']} x {section['seq_len']}")
    return section, [Target("6", what, section["tokens_per_s"], "tokens/s", "measured on a GPU", True, note)]
