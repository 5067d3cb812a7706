"""SSI's memory by construction (issue 24): the accelerator holds one layer's per-example gradients
G (N x p) and its N x N Gram matrix at a time, never a p x p matrix, and across layers only the kept
bases (p x k) accumulate; every layer's G lives in host memory, concatenated layer by layer.

How memory is measured without CUDA: :class:`LiveTensorBytes` is a ``TorchDispatchMode`` that sees
every tensor an aten operation returns inside the block, counts each new storage's bytes once (a
view or in-place result shares an input's storage and counts nothing), and uncounts them when the
storage is freed (``weakref.finalize`` on the storage, which lives as long as
anything, autograd's saved tensors included, holds it). Its peak is the most bytes that tensors
made inside the block held at once; tensors that existed before the block (the model, the inputs)
are not counted. On CPU, host and device are one memory, so each phase is measured on its own: the
subspace phase (what runs on the accelerator) and the gradient collection (what stays on the host).
"""
from __future__ import annotations

import weakref

import pytest
import torch
from test_methods_support import sgd_step, tiny_context
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from methods.lora_utils import collect_grads, layer_subspaces, lora_pairs

RHO = 0.9


class LiveTensorBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.current = self.peak = 0

    def _freed(self, key: int) -> None:
        self.current -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's protocol)
        out = func(*args, **(kwargs or {}))
        # A view or an in-place result shares an input's storage: no new memory.
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = id(storage)
                if storage.nbytes() and key not in self.sizes and storage.data_ptr() not in inputs:
                    self.sizes[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    weakref.finalize(storage, self._freed, key)
        self.peak = max(self.peak, self.current)
        return out


def layer_grads(layers: int, n: int, p: int) -> dict[str, torch.Tensor]:
    """Host G per layer: N x p rows with a decaying spectrum (row j scaled by 1/j), like a safety Fisher."""
    generator = torch.Generator().manual_seed(layers)
    scale = 1 / torch.arange(1, n + 1, dtype=torch.float32)[:, None]
    return {f"layer{i}": torch.randn(n, p, generator=generator) * scale for i in range(layers)}


def subspace_phase(layers: int, n: int = 48, p: int = 512) -> tuple[int, int, int]:
    """(peak bytes, bytes alive at the end, bytes of the kept subspaces) of ``layer_subspaces``."""
    grads = layer_grads(layers, n, p)
    with LiveTensorBytes() as memory:
        spaces = layer_subspaces(grads, "cpu", RHO)
    kept = sum((s.basis.numel() + s.eigenvalues.numel()) * 4 for s in spaces.values())
    assert not grads  # every layer's G was handed over (popped), none kept
    return memory.peak, memory.current, kept


def test_subspace_phase_grows_with_layers_only_through_the_kept_bases() -> None:
    n, p = 48, 512
    one_peak, one_end, one_kept = subspace_phase(1, n, p)
    assert one_end == one_kept  # what survives is exactly the basis and the eigenvalues
    working_set = one_peak - one_kept  # one layer's transient: G's copies, its Gram matrix, the eigenvectors
    assert working_set < 4 * n * p * 8  # a few N x p copies in float64, far from a p x p matrix
    assert p * p * 4 > working_set  # (at 7B, p x p in float32 is 64 GiB; N x p is 256 MiB)
    for layers in (2, 4, 8):
        peak, end, kept = subspace_phase(layers, n, p)
        assert end == kept and kept > (layers - 1) * one_kept * 0.5  # the bases do accumulate, one per layer
        # Above what is kept, the peak is one layer's working set, whatever the number of layers.
        assert peak - kept <= working_set * 1.02, (layers, peak - kept, working_set)


def collection_working_set(tiny_world, n: int) -> tuple[int, int]:
    """(peak bytes above the G that collect_grads returns, bytes of that G) over N calibration examples."""
    ctx = tiny_context(tiny_world)
    sgd_step(ctx)  # B != 0, as after a domain's first step
    pairs = lora_pairs(ctx.trainable())
    examples = list(ctx.calibration.harmful[:n])
    with LiveTensorBytes() as memory:
        # Batches of 2 keep one batch's activations (~2 MB here) below G, so a second G would show.
        grads = collect_grads(ctx.model, ctx.tokenizer, examples, pairs, 2, ctx.settings.max_seq_len)
    g_bytes = sum(g.numel() * 4 for g in grads.values())
    return memory.peak - g_bytes, g_bytes


@pytest.mark.slow
def test_gradient_collection_holds_one_batch_beyond_G(tiny_world) -> None:
    small, small_g = collection_working_set(tiny_world, 16)
    large, large_g = collection_working_set(tiny_world, 200)
    assert large_g * 16 == small_g * 200  # G is N x p per layer
    # Beyond G itself the collection needs one batch's activations and gradients, not N rows more
    # (concatenating every layer's chunks at once would hold a second G).
    assert abs(large - small) < 0.1 * large_g, (small, large, large_g)
