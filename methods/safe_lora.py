"""Safe LoRA: project LoRA updates onto the alignment subspace after each domain."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from harness.core.errors import ConfigError
from methods.base import Method, MethodConfig
from methods.lora_utils import lora_pairs
from methods.registry import register


class SafeLoRAConfig(MethodConfig):
    mode: Literal["threshold", "number"] = Field(
        "number", description="number: the num_layers lowest-cos layers (IBM's default); threshold: layers with cos <= threshold")
    threshold: float = Field(0.5, ge=-1, le=1, description="cosine threshold of the threshold mode")
    num_layers: int = Field(10, gt=0, description="layers projected in the number mode (IBM's num_proj_layers)")


def safe_lora_project(v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """C B with C = V V^T / ||V||_F, applied as V (V^T B) / ||V||_F (C is never formed)."""
    return v @ (v.T @ b) / torch.linalg.matrix_norm(v)


def projection_cosine(v: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float | None:
    """cos(vec(C B A), vec(B A)) from r x r matrices only: <X A, Y A>_F = sum((X^T Y) * (A A^T)).
    None when B A = 0 or V = 0 (nothing to compare)."""
    if torch.linalg.matrix_norm(v) == 0:
        return None
    projected = safe_lora_project(v, b)
    gram_a = a @ a.T

    def inner(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x.T @ y * gram_a).sum())

    norm_delta, norm_projected = inner(b, b), inner(projected, projected)
    if norm_delta <= 0:
        return None
    if norm_projected <= 0:
        return 0.0
    return inner(projected, b) / (norm_delta * norm_projected) ** 0.5


def select_layers(cosines: dict[str, float], mode: str, threshold: float, num_layers: int) -> list[str]:
    """The layers Safe LoRA projects: cos <= threshold, or the num_layers lowest cosines."""
    if mode == "threshold":
        return sorted(layer for layer, cos in cosines.items() if cos <= threshold)
    return sorted(sorted(cosines, key=cosines.__getitem__)[:num_layers])


def checkpoint_dir(ref: str | Path) -> Path:
    """A model folder, or a hub id resolved from the local hub cache (offline-safe)."""
    path = Path(ref)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    from harness.core.models import split_ref

    repo, revision = split_ref(str(ref))
    return Path(snapshot_download(repo, revision=revision, allow_patterns=["*.safetensors", "*.json"]))


@contextmanager
def open_weights(ref: str | Path) -> Iterator[dict[str, Any]]:
    """Tensor name -> open safetensors file of a checkpoint; tensors are read one at a time."""
    from safetensors import safe_open

    folder = checkpoint_dir(ref)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"Safe LoRA needs safetensors weights, but {folder} has none. "
                          "Fix: save the base and aligned models with safetensors.")
    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
        yield {key: handle for handle in handles for key in handle.keys()}


def weight_key(layer: str, keys: dict[str, Any]) -> str:
    """Checkpoint name of a LoRA-wrapped module's weight (PEFT prefixes such as base_model.model. dropped)."""
    parts = layer.split(".")
    for start in range(len(parts)):
        candidate = ".".join(parts[start:]) + ".weight"
        if candidate in keys:
            return candidate
    raise KeyError(f"no checkpoint weight matches LoRA layer {layer}")


@register
class SafeLoRA(Method):
    """Safe LoRA: after each domain, for every LoRA layer with V = W_aligned - W_base and
    C = V V^T / ||V||_F, compute cos(vec(C B A), vec(B A)); in the num_layers = 10 layers of lowest
    cosine replace B by C B, projecting the update Delta W = B A onto the alignment subspace (IBM's
    default ``number`` mode; ``mode: threshold`` projects every layer with cos <= 0.5). V comes from the base and aligned
    checkpoints (target weights only, one layer at a time); C is applied as V (V^T B) / ||V||_F.
    """

    name = "safe_lora"
    Config = SafeLoRAConfig

    def __init__(self, config: SafeLoRAConfig | None = None) -> None:
        super().__init__(config)
        self.last_edit: dict[str, Any] = {}

    def edit_weights(self, ctx) -> dict[str, torch.Tensor] | None:
        params = ctx.trainable()
        pairs = lora_pairs(params)
        cosines: dict[str, float] = {}
        projected: dict[str, torch.Tensor] = {}
        with open_weights(ctx.checkpoints["aligned"]) as aligned, open_weights(ctx.checkpoints["base"]) as base:
            for layer, pair in pairs.items():
                b, a = params[pair.b].detach().float(), params[pair.a].detach().float()
                key = weight_key(layer, aligned)
                v = (aligned[key].get_tensor(key).float() - base[key].get_tensor(key).float()).to(b.device)
                cos = projection_cosine(v, a, b)
                if cos is not None:
                    cosines[layer], projected[layer] = cos, safe_lora_project(v, b)
        chosen = select_layers(cosines, self.config.mode, self.config.threshold, self.config.num_layers)
        self.last_edit = {"cosine": cosines, "projected": chosen}
        return {pairs[layer].b: projected[layer].to(params[pairs[layer].b].dtype) for layer in chosen} or None

    def domain_report(self, ctx) -> dict[str, Any]:
        return {"safe_lora": self.last_edit}
