"""Target 2: SafeAnchor's SSI at the paper's size, and how it grows.

``methods.lora_utils.fisher_subspace`` on an N x p per-example gradient matrix G (one LoRA layer:
p = 2 r d; the paper's r = 16, d = 4096 gives p = 131,072, N = 500): time, peak resident memory above
G itself, and the largest tensor any torch call creates (a p x p matrix would be 64 GiB there).
G is synthetic with a decaying spectrum (eigenvalues ~ 1/j^2, like a concentrated safety Fisher);
one isotropic G at the paper's size is the worst case for the kept rank k (the basis is p x k).
Separately, on the bench world's model: per-example gradients from one batched backward pass
(``collect_grads``: hooks on the LoRA inputs and output gradients) against one backward per example.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from bench.common import (
    Options,
    Target,
    bench_world,
    micro_training_settings,
    paired_ratio,
    peak_memory,
    pin_mmap_threshold,
    side_by_side,
    summary,
    timed,
)
from harness.core.adapters import attach_adapter
from harness.core.data import Example
from harness.core.losses import lm_loss
from harness.core.models import load_model, load_tokenizer
from harness.core.safety_data import calibration_set
from methods.lora_utils import LoraPair, collect_grads, eval_mode, fisher_subspace, fixed_batches, flatten_pair, lora_pairs
from methods.safeanchor import SafeAnchorConfig

PAPER_N, PAPER_P = 500, 131_072  # r = 16, d = 4096: B is 4096 x 16, A is 16 x 4096
PAPER_LORA_LAYERS = 32 * 4  # a 7B Llama's 32 blocks x q/k/v/o
RHO = SafeAnchorConfig().rho


class LargestTensor(TorchFunctionMode):
    """Records the largest tensor returned by any torch function or method inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.numel, self.shape = 0, ()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's protocol)
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.numel() > self.numel:
                self.numel, self.shape = tensor.numel(), tuple(tensor.shape)
        return out


def synthetic_grads(n: int, p: int, isotropic: bool = False) -> torch.Tensor:
    """N x p rows, nearly orthogonal (p >> N), row j scaled by 1/j so the Fisher's eigenvalues decay
    like 1/j^2 (isotropic: all alike, so nearly every direction is needed for rho of the trace)."""
    generator = torch.Generator().manual_seed(n * 7 + p)
    grads = torch.randn(n, p, generator=generator) / math.sqrt(p)
    return grads if isotropic else grads / torch.arange(1, n + 1, dtype=torch.float32)[:, None]


def subspace_point(n: int, p: int, repeats: int, isotropic: bool = False) -> dict[str, Any]:
    """Seconds, peak memory above G and the largest tensor of ``fisher_subspace`` at one size."""
    grads = synthetic_grads(n, p, isotropic)
    times, extra, peak, largest = [], 0.0, 0.0, LargestTensor()
    for _ in range(repeats):
        with peak_memory() as memory, largest:
            seconds, space = timed(partial(fisher_subspace, grads, RHO))
        times.append(seconds)
        extra, peak = max(extra, memory["extra_mib"]), max(peak, memory["peak_rss_mib"])
    g_mib = grads.numel() * 4 / 2**20
    return {"n": n, "p": p, "isotropic": isotropic, "rank_k": space.rank, "seconds": summary(times),
            "g_mib": g_mib, "extra_mib": extra, "extra_over_g": extra / g_mib, "peak_rss_mib": peak, "memory_how": memory["how"],
            "largest_tensor": list(largest.shape), "largest_over_np": largest.numel / (n * p),
            "p_squared_float32_gib": p * p * 4 / 2**30}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares exponent b of y ~ x^b (1 = linear growth), over the points with y > 0: a
    small size's extra memory can read 0 (freed pages reused, below what RSS resolves), and its
    log would dominate the fit (seen: slope 9.5 from 0 MiB at p = 8,192, then 250/1000/2000 MiB)."""
    measured = [(x, y) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(measured) < 2:
        return float("nan")
    lx, ly = [math.log(x) for x, _ in measured], [math.log(y) for _, y in measured]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


# ---- per-example gradients: batched vs one backward each --------------------------------------
def looped_grads(model: torch.nn.Module, tokenizer: Any, examples: Sequence[Example], pairs: Mapping[str, LoraPair],
                 max_len: int) -> dict[str, torch.Tensor]:
    """The reference the batched hooks replace: one backward pass per example, same order as
    ``collect_grads`` (both take ``fixed_batches``' length order)."""
    params = dict(model.named_parameters())
    names = [name for pair in pairs.values() for name in (pair.b, pair.a)]
    rows: dict[str, list[torch.Tensor]] = {layer: [] for layer in pairs}
    with eval_mode(model):
        for batch in fixed_batches(tokenizer, examples, 1, max_len):
            grads = dict(zip(names, torch.autograd.grad(lm_loss(model, batch), [params[n] for n in names]), strict=True))
            for layer, pair in pairs.items():
                rows[layer].append(flatten_pair(pair, grads))
    return {layer: torch.stack(chunks) for layer, chunks in rows.items()}


def per_example_comparison(options: Options) -> dict[str, Any]:
    handle = bench_world(options.quick)
    settings = micro_training_settings(handle.name)
    torch.manual_seed(0)
    model = attach_adapter(load_model(handle.chat), settings, 1)
    with torch.no_grad():  # B != 0, so lora_A's gradients are not all zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    tokenizer = load_tokenizer(handle.tokenizer)
    examples = list(calibration_set(0).harmful[: options.pick(64, 8)])
    pairs = lora_pairs(n for n, p in model.named_parameters() if p.requires_grad)
    batch_size = SafeAnchorConfig().fisher_batch_size
    batched = partial(collect_grads, model, tokenizer, examples, pairs, batch_size, settings.max_seq_len)
    looped = partial(looped_grads, model, tokenizer, examples, pairs, settings.max_seq_len)
    times = side_by_side({"batched": batched, "looped": looped}, options.pick(3, 1))
    reference, fast = looped(), batched()
    difference = max(float((fast[layer] - reference[layer]).abs().max() / reference[layer].abs().max().clamp(min=1e-30))
                     for layer in pairs)
    return {"world": handle.name, "n_examples": len(examples), "batch_size": batch_size, "lora_layers": len(pairs),
            "p_per_layer": next(iter(fast.values())).shape[1], "batched_s": summary(times["batched"]),
            "looped_s": summary(times["looped"]), "speedup": paired_ratio(times["looped"], times["batched"]),
            "max_relative_difference": difference}


def measure(options: Options) -> tuple[dict[str, Any], list[Target]]:
    pinned = pin_mmap_threshold()
    repeats = options.pick(3, 1)
    paper_n, paper_p = options.pick((PAPER_N, PAPER_P), (64, 8192))
    n_sweep = options.pick((100, 250, 500, 1000), (32, 64))
    p_sweep = options.pick((8192, 32768, 131_072, 262_144), (4096, 8192))
    paper = subspace_point(paper_n, paper_p, repeats)
    known = {(paper_n, paper_p): paper}
    by_n = [known.get((n, paper_p)) or subspace_point(n, paper_p, repeats) for n in n_sweep]
    by_p = [known.get((paper_n, p)) or subspace_point(paper_n, p, repeats) for p in p_sweep]
    growth = {
        "time_vs_p": loglog_slope(p_sweep, [pt["seconds"]["median"] for pt in by_p]),
        "memory_vs_p": loglog_slope(p_sweep, [pt["extra_mib"] for pt in by_p]),
        "time_vs_n": loglog_slope(n_sweep, [pt["seconds"]["median"] for pt in by_n]),
        "memory_vs_n": loglog_slope(n_sweep, [pt["extra_mib"] for pt in by_n]),
    }
    section = {
        "rho": RHO, "mmap_threshold_pinned": pinned, "paper": paper,
        "isotropic_paper": subspace_point(paper_n, paper_p, 1, isotropic=True),
        "by_n": by_n, "by_p": by_p, "loglog_slopes": growth,
        # collect_grads keeps every layer's G in host memory: at the paper's shape that is this much.
        "all_layers_g_gib_7b": PAPER_LORA_LAYERS * PAPER_N * PAPER_P * 4 / 2**30,
        "per_example_grads": per_example_comparison(options),
    }
    return section, targets(section)


def targets(section: dict[str, Any]) -> list[Target]:
    paper, worst = section["paper"], section["isotropic_paper"]
    growth, grads = section["loglog_slopes"], section["per_example_grads"]
    size = f"N={paper['n']}, p={paper['p']}"
    no_pxp = max(paper["largest_over_np"], worst["largest_over_np"]) <= 1
    bounded = (f"{paper['seconds']['median']:.2f} s, +{paper['extra_mib']:.0f} MiB over G's {paper['g_mib']:.0f} MiB; "
               f"worst case +{worst['extra_mib']:.0f} MiB")
    linear = max(growth["time_vs_p"], growth["memory_vs_p"])
    return [
        Target("2a", f"SSI Fisher subspace at {size}: peak memory above G", paper["extra_mib"], "MiB",
               "bounded: largest tensor <= N x p (p x p would be "
               f"{paper['p_squared_float32_gib']:.0f} GiB)", no_pxp, bounded),
        Target("2b", "SSI growth in p: max log-log slope (time, memory)", linear, "", "<= 1.15 (linear in p)", linear <= 1.15,
               f"time ~ p^{growth['time_vs_p']:.2f}, memory ~ p^{growth['memory_vs_p']:.2f}; time ~ N^{growth['time_vs_n']:.2f}"),
        Target("2c", f"per-example gradients, batched vs one backward each ({grads['world']})", grads["speedup"], "x faster",
               "batched faster and equal (rel. diff < 1e-4)", grads["speedup"] > 1 and grads["max_relative_difference"] < 1e-4,
               f"max relative difference {grads['max_relative_difference']:.1e}"),
    ]
